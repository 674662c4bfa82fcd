import Foundation

/// What every grant needs: storage, settings, the clock and the token signer; plus the shared steps of
/// deciding scope and audience and of minting tokens.
public struct TokenContext: Sendable {
    public let storage: any GatehouseStorage
    public let settings: ServerSettings
    public let clock: Clock
    public let issuer: AccessTokenIssuer
    public let idTokens: IDTokenIssuer
    public let passwords: PasswordHasher
    /// Password checks with lockout and throttling, shared with the login page.
    public let passwordAuthenticator: PasswordAuthenticator
    /// The client's address for this request (set by the token endpoint; throttling counts per address).
    public var clientAddress: String? = nil
    /// Lifecycle events (`token.issued`, `grant.revoked`).
    public let events: Events

    public init(
        storage: any GatehouseStorage, settings: ServerSettings, clock: Clock, keys: KeyRing,
        passwords: PasswordHasher = PasswordHasher(), events: Events = .none
    ) {
        self.events = events
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.issuer = AccessTokenIssuer(keys: keys)
        self.idTokens = IDTokenIssuer(keys: keys)
        self.passwords = passwords
        self.passwordAuthenticator = PasswordAuthenticator(
            users: storage, passwords: passwords,
            throttle: LoginThrottle(
                store: storage, maxFailures: settings.passwordMaxFailures, window: settings.passwordLockoutWindow,
                clock: clock))
    }

    /// RFC 6749 §3.3: the requested scope must be allowed for the client; when omitted, the client's
    /// default scope is used. Both space- and comma-separated lists are read.
    public func resolveScope(_ requested: String?, client: ClientRecord) throws -> Scope {
        guard let requested else { return client.defaultScope }
        guard let scope = Scope(parsing: requested) else {
            throw OAuthError.invalidScope.with(description: "The scope parameter is malformed.")
        }
        if scope.isEmpty { return client.defaultScope }
        let notAllowed = scope.tokens.filter { !client.scope.contains($0) }
        guard notAllowed.isEmpty else {
            throw OAuthError.invalidScope.with(
                description: "The scope \(notAllowed.joined(separator: " ")) is not allowed for this client.")
        }
        return scope
    }

    /// Scopes that need a role (`ScopeRecord.requiredRole`) are granted only to users holding it in some
    /// group: `access_denied` otherwise (the user may not delegate what they do not have).
    public func checkScopeRoles(_ scope: Scope, userID: String) async throws {
        let restricted = try await storage.listScopes().filter { $0.requiredRole != nil && scope.contains($0.name) }
        guard !restricted.isEmpty else { return }
        let roles = Set(try await storage.memberships(userID: userID).map(\.role))
        for s in restricted where !roles.contains(s.requiredRole!) {
            throw OAuthError.accessDenied.with(
                description: "The scope \(s.name) needs the role \(s.requiredRole!), which this user does not hold.")
        }
    }

    /// RFC 8707 §2: each `resource` must be an absolute URI without a fragment, and registered for the
    /// client; otherwise `invalid_target`.
    public func resolveResources(_ requested: [String], allowed: [String]) throws -> [String] {
        var out: [String] = []
        for r in requested {
            guard let url = URL(string: r), url.scheme != nil, url.fragment == nil, !r.contains("#") else {
                throw OAuthError.invalidTarget.with(description: "The resource \(r) is not an absolute URI.")
            }
            guard allowed.contains(r) else {
                throw OAuthError.invalidTarget.with(description: "The resource \(r) is not allowed for this client.")
            }
            if !out.contains(r) { out.append(r) }
        }
        return out
    }

    /// Signs an RFC 9068 access token.
    public func mintAccessToken(
        client: ClientRecord, subject: String, scope: Scope, resources: [String], grantID: String?
    ) async throws -> (token: String, expiresIn: Int64) {
        let now = clock.nowSeconds
        let claims = AccessTokenClaims(
            iss: settings.issuer, sub: subject,
            aud: Audience(resources.isEmpty ? [settings.audience] : resources),
            client_id: client.id, scope: scope.description, jti: Secrets.identifier(), iat: now,
            exp: now + settings.accessTokenLifetime, grant_id: grantID)
        return (try await issuer.sign(claims), settings.accessTokenLifetime)
    }

    /// An ID token for the client (OIDC Core §3.1.3.3), bound to the access token issued with it (`at_hash`).
    public func mintIDToken(
        client: ClientRecord, userID: String, authTime: Int64?, nonce: String?, sessionID: String?, accessToken: String
    ) async throws -> String {
        try await idTokens.sign(
            .init(
                issuer: settings.issuer, clientID: client.id, userID: userID, authTime: authTime, nonce: nonce,
                sessionID: sessionID, accessToken: accessToken, now: clock.nowSeconds,
                lifetime: settings.idTokenLifetime))
    }

    /// A new refresh token for a grant: the raw value (returned once) and the record to store.
    public func makeRefreshToken(grantID: String, client: ClientRecord, userID: String?, scope: Scope, resources: [String])
        -> (raw: String, record: RefreshTokenRecord)
    {
        let raw = Secrets.generate()
        let now = clock.nowSeconds
        return (
            raw,
            RefreshTokenRecord(
                hash: Secrets.hash(raw), grantID: grantID, clientID: client.id, userID: userID, scope: scope,
                resources: resources, issuedAt: now, expiresAt: now + settings.refreshTokenLifetime)
        )
    }

    /// Issues tokens for a new grant: an access token and, when `withRefreshToken`, a refresh token whose
    /// family is created with it.
    public func issueNewGrant(
        client: ClientRecord, userID: String?, scope: Scope, resources: [String], withRefreshToken: Bool
    ) async throws -> TokenResponse {
        guard withRefreshToken else {
            let access = try await mintAccessToken(
                client: client, subject: userID ?? client.id, scope: scope, resources: resources, grantID: nil)
            return TokenResponse(
                access_token: access.token, expires_in: access.expiresIn, scope: scope.description, refresh_token: nil)
        }
        if client.singleGrantPerUser, let userID {
            try await storage.revokeGrants(userID: userID, clientID: client.id, at: clock.nowSeconds)
        }
        let grant = GrantRecord(
            id: Secrets.identifier(), clientID: client.id, userID: userID, scope: scope,
            createdAt: clock.nowSeconds, revokedAt: nil)
        let refresh = makeRefreshToken(grantID: grant.id, client: client, userID: userID, scope: scope, resources: resources)
        let access = try await mintAccessToken(
            client: client, subject: userID ?? client.id, scope: scope, resources: resources, grantID: grant.id)
        try await storage.insertGrant(grant, refreshToken: refresh.record)
        return TokenResponse(
            access_token: access.token, expires_in: access.expiresIn, scope: scope.description,
            refresh_token: refresh.raw)
    }
}
