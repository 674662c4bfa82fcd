import Crypto
import Foundation
import JWTKit

/// The claims of an ID token (OpenID Connect Core §2, §3.1.3.6).
public struct IDTokenClaims: JWTPayload, Equatable {
    public var iss: String
    /// The user's stable, opaque id (public subject type, Core §8): never the username.
    public var sub: String
    /// The client id (Core §2: the audience is the client).
    public var aud: Audience
    public var exp: Int64
    public var iat: Int64
    public var auth_time: Int64?
    public var nonce: String?
    /// Authorized party: the client the token was issued to.
    public var azp: String?
    /// Left half of the access token's hash (Core §3.1.3.6).
    public var at_hash: String?
    /// The session id (OIDC Front-/Back-Channel Logout `sid`).
    public var sid: String?

    public init(
        iss: String, sub: String, aud: Audience, exp: Int64, iat: Int64, auth_time: Int64?, nonce: String?,
        azp: String?, at_hash: String?, sid: String?
    ) {
        self.iss = iss
        self.sub = sub
        self.aud = aud
        self.exp = exp
        self.iat = iat
        self.auth_time = auth_time
        self.nonce = nonce
        self.azp = azp
        self.at_hash = at_hash
        self.sid = sid
    }

    /// Time checks need the injected clock; `IDTokenHintVerifier` and clients do them.
    public func verify(using algorithm: some JWTAlgorithm) throws {}

    /// Core §3.1.3.6: base64url of the left-most half of the hash of the access token's ASCII octets, with
    /// the hash of the ID token's signing algorithm (SHA-256 for ES256/RS256/PS256, SHA-384 for ES384;
    /// EdDSA with Ed25519 uses SHA-512, as the OpenID Foundation's errata and common libraries do).
    public static func halfHash(_ value: String, algorithm: SigningAlgorithm) -> String {
        let data = Data(value.utf8)
        let digest: [UInt8]
        switch algorithm {
        case .es256, .rs256, .ps256: digest = Array(SHA256.hash(data: data))
        case .es384: digest = Array(SHA384.hash(data: data))
        case .edDSA: digest = Array(SHA512.hash(data: data))
        }
        return Base64URL.encode(digest.prefix(digest.count / 2))
    }
}

/// Signs ID tokens with the current key (header `typ: JWT`, distinct from access tokens' `at+jwt`).
public struct IDTokenIssuer: Sendable {
    public let keys: KeyRing
    public init(keys: KeyRing) { self.keys = keys }

    /// What an ID token says (OIDC Core §2), before it is signed.
    public struct Input: Sendable, Codable, Equatable {
        public var issuer: String
        public var clientID: String
        public var userID: String
        public var authTime: Int64?
        public var nonce: String?
        public var sessionID: String?
        public var accessToken: String?
        public var now: Int64
        public var lifetime: Int64
        public init(
            issuer: String, clientID: String, userID: String, authTime: Int64?, nonce: String?, sessionID: String?,
            accessToken: String?, now: Int64, lifetime: Int64
        ) {
            self.issuer = issuer
            self.clientID = clientID
            self.userID = userID
            self.authTime = authTime
            self.nonce = nonce
            self.sessionID = sessionID
            self.accessToken = accessToken
            self.now = now
            self.lifetime = lifetime
        }
    }

    public func sign(_ input: Input) async throws -> String {
        let snapshot = try keys.snapshot
        let algorithm = snapshot.signingKey.algorithm
        let claims = IDTokenClaims(
            iss: input.issuer, sub: input.userID, aud: Audience([input.clientID]), exp: input.now + input.lifetime,
            iat: input.now, auth_time: input.authTime, nonce: input.nonce, azp: input.clientID,
            at_hash: input.accessToken.map { IDTokenClaims.halfHash($0, algorithm: algorithm) }, sid: input.sessionID)
        var header = JWTHeader()
        header.typ = "JWT"
        header.alg = algorithm.rawValue
        return try await snapshot.collection.sign(
            claims, kid: JWKIdentifier(string: snapshot.signingKey.kid), header: header)
    }
}

/// Checks an `id_token_hint` (Core §3.1.2.1, RP-Initiated Logout §2): an ID token this server signed with a
/// key it still publishes, for this issuer. An expired hint is accepted (the OP "SHOULD NOT" reject it for
/// expiry alone); an access token is not (its `typ` is `at+jwt`).
public struct IDTokenHintVerifier: Sendable {
    public let keys: KeyRing
    public let issuer: String

    public init(keys: KeyRing, issuer: String) {
        self.keys = keys
        self.issuer = issuer
    }

    public func verify(_ token: String) async -> IDTokenClaims? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count < 16_384, let headerData = Base64URL.decode(String(parts[0])),
            let header = try? JSONDecoder().decode(Header.self, from: headerData),
            header.typ == nil || header.typ?.uppercased() == "JWT", header.crit == nil,
            let kid = header.kid, let snapshot = try? keys.snapshot, let key = snapshot.key(kid: kid),
            header.alg == key.algorithm.rawValue,
            let claims = try? await snapshot.collection.verify(token, as: IDTokenClaims.self),
            claims.iss == issuer
        else { return nil }
        return claims
    }

    private struct Header: Decodable {
        var alg: String?
        var typ: String?
        var kid: String?
        var crit: [String]?
    }
}
