import Foundation
import JWTKit

/// The claims of a JWT access token (RFC 9068 §2.2).
public struct AccessTokenClaims: JWTPayload, Equatable {
    public var iss: String
    /// The user's opaque id, or the client id when no user is involved (RFC 9068 §2.2, client credentials).
    public var sub: String
    public var aud: Audience
    public var client_id: String
    public var scope: String
    public var jti: String
    public var iat: Int64
    public var exp: Int64
    /// The grant (refresh-token family) the token was issued from; revoking the grant revokes the token.
    public var grant_id: String?
    /// RFC 8693 §4.1: the party acting for `sub` (a token exchanged by another client).
    public var act: ActorClaim?

    public init(
        iss: String, sub: String, aud: Audience, client_id: String, scope: String, jti: String, iat: Int64,
        exp: Int64, grant_id: String?, act: ActorClaim? = nil
    ) {
        self.act = act
        self.iss = iss
        self.sub = sub
        self.aud = aud
        self.client_id = client_id
        self.scope = scope
        self.jti = jti
        self.iat = iat
        self.exp = exp
        self.grant_id = grant_id
    }

    /// The user the token acts for; `nil` for a client-credentials token, whose subject is the client.
    public var userID: String? { sub != client_id || grant_id != nil ? sub : nil }

    /// Time and issuer checks need the injected clock, so `AccessTokenVerifier` does them.
    public func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// RFC 8693 §4.1 `act`: who acts, and (nested) who acted before.
public final class ActorClaim: Sendable, Codable, Equatable {
    public let sub: String
    public let act: ActorClaim?
    public init(sub: String, act: ActorClaim?) {
        self.sub = sub
        self.act = act
    }
    public static func == (a: ActorClaim, b: ActorClaim) -> Bool { a.sub == b.sub && a.act == b.act }
}

/// A JWT `aud` claim: one string or an array (RFC 7519 §4.1.3). One value is written as a string.
public struct Audience: Sendable, Equatable, Codable {
    public var values: [String]
    public init(_ values: [String]) { self.values = values }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(String.self) {
            values = [one]
        } else {
            values = try c.decode([String].self)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if values.count == 1 { try c.encode(values[0]) } else { try c.encode(values) }
    }
}

/// Signs access tokens with the current key of a `KeyRing`.
public struct AccessTokenIssuer: Sendable {
    public let keys: KeyRing
    public init(keys: KeyRing) { self.keys = keys }

    /// RFC 9068 §2.1: the header carries `typ: at+jwt` and the signing key's `kid`.
    public func sign(_ claims: AccessTokenClaims) async throws -> String {
        let snapshot = try keys.snapshot
        var header = JWTHeader()
        header.typ = "at+jwt"
        header.alg = snapshot.signingKey.algorithm.rawValue
        return try await snapshot.collection.sign(
            claims, kid: JWKIdentifier(string: snapshot.signingKey.kid), header: header)
    }
}

/// Verifies our own JWT access tokens (for introspection and revocation).
public struct AccessTokenVerifier: Sendable {
    public let keys: KeyRing
    public let issuer: String
    public let clock: Clock
    /// Accepted clock skew for `iat`, in seconds.
    public let leeway: Int64

    public init(keys: KeyRing, issuer: String, clock: Clock, leeway: Int64 = 60) {
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.leeway = leeway
    }

    /// Returns the claims of a valid, unexpired token signed by one of our published keys, else `nil`.
    /// Expiry is checked by the caller through `isCurrent(_:)` so cached claims can be reused.
    public func verifySignature(_ token: String) async -> AccessTokenClaims? {
        await verifySignatureAndKey(token)?.claims
    }

    /// `verifySignature`, with the id of the key that signed it (callers that cache a verification must
    /// check the key is still published when they reuse it: `isPublished(kid:)`).
    public func verifySignatureAndKey(_ token: String) async -> (claims: AccessTokenClaims, kid: String)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count < 16_384,
            let headerData = Base64URL.decode(String(parts[0])),
            let header = try? JSONDecoder().decode(Header.self, from: headerData)
        else { return nil }
        // RFC 9068 §4: typ must be at+jwt, so an ID token is never accepted as an access token.
        guard let typ = header.typ?.lowercased(), typ == "at+jwt" || typ == "application/at+jwt",
            header.crit == nil,
            let kid = header.kid, let snapshot = try? keys.snapshot, let key = snapshot.key(kid: kid),
            header.alg == key.algorithm.rawValue
        else { return nil }
        guard let claims = try? await snapshot.collection.verify(token, as: AccessTokenClaims.self),
            claims.iss == issuer
        else { return nil }
        return (claims, kid)
    }

    /// Whether the key `kid` is still in the key set (not retired, not revoked by `keys revoke`).
    public func isPublished(kid: String) -> Bool { (try? keys.snapshot.key(kid: kid)) != nil }

    /// The claims of a token that is valid, current and not revoked (its `jti`, its grant or its client);
    /// `nil` otherwise. For endpoints that accept our access tokens (UserInfo, token exchange, the profiles).
    public func activeClaims(_ token: String, revocations: any TokenStore) async throws -> AccessTokenClaims? {
        guard let claims = await verifySignature(token), isCurrent(claims),
            !(try await revocations.isAccessTokenRevoked(
                jti: claims.jti, grantID: claims.grant_id, clientID: claims.client_id, userID: claims.userID))
        else { return nil }
        return claims
    }

    /// `exp` in the future and `iat` not beyond the leeway (RFC 7519 §4.1.4, §4.1.6).
    public func isCurrent(_ claims: AccessTokenClaims) -> Bool {
        let now = clock.nowSeconds
        return claims.exp > now && claims.iat <= now + leeway
    }

    private struct Header: Decodable {
        var alg: String?
        var typ: String?
        var kid: String?
        var crit: [String]?
    }
}
