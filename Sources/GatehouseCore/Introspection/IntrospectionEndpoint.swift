import Synchronization

/// Token introspection (RFC 7662).
///
/// Only confidential clients may introspect (§2.1 requires authorization; resource servers are
/// registered as confidential clients). The answer is `{"active": false}` for anything that is not a
/// currently valid token of ours: garbage, expired, revoked, signed by another issuer, from a deleted
/// client, or a refresh token belonging to another client (§2.2).
public struct IntrospectionEndpoint: Sendable {
    /// Only what introspection uses: clients (authentication) and tokens.
    public typealias Storage = ClientStore & TokenStore
    let storage: any Storage
    let authenticator: ClientAuthenticator
    let verifier: AccessTokenVerifier
    let clock: Clock
    let cache: VerifiedTokenCache

    /// Counts answers by outcome (`.none`: not recorded).
    public var metrics: GatehouseMetrics = .none

    public init(storage: any Storage, verifier: AccessTokenVerifier, clock: Clock, cacheSize: Int = 10_000) {
        self.storage = storage
        self.authenticator = ClientAuthenticator(clients: storage, clock: clock)
        self.verifier = verifier
        self.clock = clock
        self.cache = VerifiedTokenCache(capacity: cacheSize)
    }

    public func handle(_ parameters: RequestParameters, authorization: String?) async throws -> IntrospectionResponse {
        let (client, _) = try await authenticator.authenticate(parameters, authorization: authorization)
        guard !client.isPublic else {
            throw OAuthError.invalidClient.with(description: "Public clients cannot introspect tokens.")
        }
        let token = try parameters.required("token")
        _ = try parameters.single("token_type_hint")
        let answer = token.split(separator: ".", omittingEmptySubsequences: false).count == 3
            ? try await introspectAccessToken(token) : try await introspectRefreshToken(token, caller: client)
        metrics.introspection(active: answer.active)
        return answer
    }

    private func introspectAccessToken(_ token: String) async throws -> IntrospectionResponse {
        let claims: AccessTokenClaims
        // A cached verification holds only while its key is still in the key set: `keys revoke` ends it.
        if let cached = cache.get(token), verifier.isPublished(kid: cached.kid) {
            claims = cached.claims
        } else {
            guard let verified = await verifier.verifySignatureAndKey(token) else { return .inactive }
            cache.put(token, verified)
            claims = verified.claims
        }
        guard verifier.isCurrent(claims) else { return .inactive }
        if try await storage.isAccessTokenRevoked(
            jti: claims.jti, grantID: claims.grant_id, clientID: claims.client_id, userID: claims.userID) {
            return .inactive
        }
        return IntrospectionResponse(
            active: true, scope: claims.scope, client_id: claims.client_id, token_type: "Bearer", exp: claims.exp,
            iat: claims.iat, sub: claims.sub, aud: claims.aud, iss: claims.iss, jti: claims.jti, token_use: nil)
    }

    private func introspectRefreshToken(_ token: String, caller: ClientRecord) async throws -> IntrospectionResponse {
        let now = clock.nowSeconds
        guard let record = try await storage.refreshToken(hash: Secrets.hash(token)),
            record.clientID == caller.id, record.usedAt == nil, record.expiresAt > now,
            let grant = try await storage.grant(id: record.grantID), grant.revokedAt == nil
        else { return .inactive }
        return IntrospectionResponse(
            active: true, scope: record.scope.description, client_id: record.clientID, token_type: nil,
            exp: record.expiresAt, iat: record.issuedAt, sub: record.userID ?? record.clientID, aud: nil,
            iss: verifier.issuer, jti: nil, token_use: "refresh_token")
    }
}

/// RFC 7662 §2.2 response. `nil` members are omitted.
public struct IntrospectionResponse: Sendable, Codable, Equatable {
    public var active: Bool
    public var scope: String?
    public var client_id: String?
    public var token_type: String?
    public var exp: Int64?
    public var iat: Int64?
    public var sub: String?
    public var aud: Audience?
    public var iss: String?
    public var jti: String?
    /// `access_token` or `refresh_token` style marker for refresh tokens (as Hydra reports it).
    public var token_use: String?

    public static let inactive = IntrospectionResponse(active: false)

    public init(
        active: Bool, scope: String? = nil, client_id: String? = nil, token_type: String? = nil, exp: Int64? = nil,
        iat: Int64? = nil, sub: String? = nil, aud: Audience? = nil, iss: String? = nil, jti: String? = nil,
        token_use: String? = nil
    ) {
        self.active = active
        self.scope = scope
        self.client_id = client_id
        self.token_type = token_type
        self.exp = exp
        self.iat = iat
        self.sub = sub
        self.aud = aud
        self.iss = iss
        self.jti = jti
        self.token_use = token_use
    }
}

/// Claims of access tokens whose signature was already checked, so repeated introspection of the same
/// token skips the signature verification (revocation is still checked every time). Bounded; an entry
/// is useless after the token's `exp`, and expiry is checked on every use.
final class VerifiedTokenCache: Sendable {
    private let table = Mutex<[String: (claims: AccessTokenClaims, kid: String)]>([:])
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }

    func get(_ token: String) -> (claims: AccessTokenClaims, kid: String)? { table.withLock { $0[token] } }

    func put(_ token: String, _ claims: (claims: AccessTokenClaims, kid: String)) {
        guard capacity > 0 else { return }
        table.withLock { t in
            if t.count >= capacity, let victim = t.keys.randomElement() { t.removeValue(forKey: victim) }
            t[token] = claims
        }
    }
}
