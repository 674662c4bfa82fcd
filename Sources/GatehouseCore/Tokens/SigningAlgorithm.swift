import Crypto
import CryptoExtras
import Foundation
import JWTKit

/// The JWS algorithms Gatehouse signs with (RFC 7518 §3, RFC 8037 for EdDSA).
public enum SigningAlgorithm: String, Sendable, CaseIterable, Codable {
    case es256 = "ES256"
    case es384 = "ES384"
    case rs256 = "RS256"
    case ps256 = "PS256"
    case edDSA = "EdDSA"

    /// Parses a name case-insensitively (`es256`, `EdDSA`, …).
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else {
            return nil
        }
        self = match
    }

    public static let `default` = SigningAlgorithm.es256
}

/// A private signing key: generated, read from and written to PEM, added to a jwt-kit key collection and
/// exported as a public JWK.
public struct SigningKey: Sendable {
    public let kid: String
    public let algorithm: SigningAlgorithm
    fileprivate enum Material: Sendable {
        case es256(ES256PrivateKey)
        case es384(ES384PrivateKey)
        case rsa(JWTKit.Insecure.RSA.PrivateKey)
        case edDSA(EdDSA.PrivateKey)
    }
    fileprivate let material: Material

    /// Generates a fresh key. RSA keys are 2048 bits.
    public static func generate(_ algorithm: SigningAlgorithm, kid: String = Secrets.identifier()) throws -> SigningKey {
        let material: Material
        switch algorithm {
        case .es256: material = .es256(ES256PrivateKey())
        case .es384: material = .es384(ES384PrivateKey())
        case .rs256, .ps256:
            material = .rsa(try JWTKit.Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048)))
        case .edDSA: material = .edDSA(try EdDSA.PrivateKey(curve: .ed25519))
        }
        return SigningKey(kid: kid, algorithm: algorithm, material: material)
    }

    /// Reads a PEM private key of the given algorithm.
    public init(kid: String, algorithm: SigningAlgorithm, pem: String) throws {
        self.kid = kid
        self.algorithm = algorithm
        switch algorithm {
        case .es256: material = .es256(try ES256PrivateKey(pem: pem))
        case .es384: material = .es384(try ES384PrivateKey(pem: pem))
        case .rs256, .ps256: material = .rsa(try JWTKit.Insecure.RSA.PrivateKey(pem: pem))
        case .edDSA: material = .edDSA(try EdDSA.PrivateKey(pem: pem))
        }
    }

    fileprivate init(kid: String, algorithm: SigningAlgorithm, material: Material) {
        self.kid = kid
        self.algorithm = algorithm
        self.material = material
    }

    public var pemRepresentation: String {
        switch material {
        case .es256(let k): return k.pemRepresentation
        case .es384(let k): return k.pemRepresentation
        case .rsa(let k): return k.pemRepresentation
        case .edDSA(let k): return k.pemRepresentation
        }
    }

    /// Adds the key to `collection` under its `kid`, writing NumericDates as whole seconds (how Gatehouse
    /// signs; test issuers use it to sign as Gatehouse would).
    public func add(to collection: JWTKeyCollection) async {
        let id = JWKIdentifier(string: kid)
        let serializer = JWTCoding.serializer
        let parser = JWTCoding.parser
        switch material {
        case .es256(let k): await collection.add(ecdsa: k, kid: id, parser: parser, serializer: serializer)
        case .es384(let k): await collection.add(ecdsa: k, kid: id, parser: parser, serializer: serializer)
        case .rsa(let k):
            if algorithm == .ps256 {
                await collection.add(pss: k, digestAlgorithm: .sha256, kid: id, parser: parser, serializer: serializer)
            } else {
                await collection.add(rsa: k, digestAlgorithm: .sha256, kid: id, parser: parser, serializer: serializer)
            }
        case .edDSA(let k): await collection.add(eddsa: k, kid: id, parser: parser, serializer: serializer)
        }
    }

    /// The public half as a JWK (RFC 7517) with `kid`, `alg` and `use: sig`.
    public func publicJWK() throws -> PublicJWK {
        switch material {
        case .es256(let k):
            guard let p = k.publicKey.parameters else { throw JWTError.generic(identifier: "jwk", reason: "no EC parameters") }
            return PublicJWK(kty: "EC", kid: kid, alg: algorithm.rawValue, crv: "P-256", x: p.x, y: p.y)
        case .es384(let k):
            guard let p = k.publicKey.parameters else { throw JWTError.generic(identifier: "jwk", reason: "no EC parameters") }
            return PublicJWK(kty: "EC", kid: kid, alg: algorithm.rawValue, crv: "P-384", x: p.x, y: p.y)
        case .rsa(let k):
            let primitives = try k.publicKey.getKeyPrimitives()
            return PublicJWK(
                kty: "RSA", kid: kid, alg: algorithm.rawValue, n: Base64URL.encode(primitives.modulus),
                e: Base64URL.encode(primitives.publicExponent))
        case .edDSA(let k):
            return PublicJWK(
                kty: "OKP", kid: kid, alg: algorithm.rawValue, crv: "Ed25519",
                x: Base64URL.encode(k.publicKey.rawRepresentation))
        }
    }
}

/// A public JSON Web Key as published in the JWKS (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
public struct PublicJWK: Sendable, Codable, Equatable {
    public var kty: String
    public var use: String = "sig"
    public var kid: String
    public var alg: String
    public var crv: String?
    public var x: String?
    public var y: String?
    public var n: String?
    public var e: String?

    public init(
        kty: String, kid: String, alg: String, crv: String? = nil, x: String? = nil, y: String? = nil,
        n: String? = nil, e: String? = nil
    ) {
        self.kty = kty
        self.kid = kid
        self.alg = alg
        self.crv = crv
        self.x = x
        self.y = y
        self.n = n
        self.e = e
    }
}

/// JSON coders for JWTs: NumericDate as whole seconds (RFC 7519 §2).
enum JWTCoding {
    static var serializer: DefaultJWTSerializer {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return DefaultJWTSerializer(jsonEncoder: encoder)
    }
    static var parser: DefaultJWTParser {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return DefaultJWTParser(jsonDecoder: decoder)
    }
}
