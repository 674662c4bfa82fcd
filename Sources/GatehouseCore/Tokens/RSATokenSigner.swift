import Crypto
import CryptoExtras
import Foundation
import JWTKit

/// RS256 tokens under a key pair given in PEM (the dgp-oauth2 profile's `PRIVATE_KEY`/`PUBLIC_KEY`), apart
/// from the server's own signing keys: services that trust that legacy public key keep working.
public final class RSATokenSigner: Sendable {
    let keys: JWTKeyCollection
    public let publicPEM: String

    /// `privatePEM` nil: a new 2048-bit key for this process (tokens then do not survive a restart).
    public init(privatePEM: String?, publicPEM: String?) async throws {
        let key: JWTKit.Insecure.RSA.PrivateKey
        if let privatePEM {
            key = try JWTKit.Insecure.RSA.PrivateKey(pem: privatePEM)
        } else {
            key = try JWTKit.Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        }
        let derived = key.publicKey.pemRepresentation
        if let publicPEM {
            // The pair must match, or services would be told to trust a key that did not sign.
            guard (try? JWTKit.Insecure.RSA.PublicKey(pem: publicPEM))?.pemRepresentation == derived else {
                throw Administration.ValidationError("PUBLIC_KEY is not the public half of PRIVATE_KEY")
            }
        }
        self.publicPEM = publicPEM ?? derived
        self.keys = JWTKeyCollection()
        await keys.add(rsa: key, digestAlgorithm: .sha256, parser: JWTCoding.parser, serializer: JWTCoding.serializer)
    }

    public func sign<P: JWTPayload>(_ payload: P) async throws -> String {
        try await keys.sign(payload)
    }

    /// The payload when the signature is ours; expiry is the caller's check (with its clock).
    public func verify<P: JWTPayload>(_ token: String, as type: P.Type) async -> P? {
        guard token.utf8.count < 16_384 else { return nil }
        return try? await keys.verify(token, as: type)
    }
}
