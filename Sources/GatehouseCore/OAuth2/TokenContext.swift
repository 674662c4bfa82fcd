import Foundation

/// The services every grant shares, built once per process: storage, settings, the clock, the token
/// signers, the password check and the event outbox; plus the shared steps of deciding scope and audience
/// and of minting tokens. Nothing per request lives here (that is `TokenRequest`).
public struct TokenContext: Sendable {
    /// Only what the grants use: clients, users, scopes, tokens, codes, roles, the lockout counters and the
    /// audit log.
    public typealias Storage = ClientStore & UserStore & ScopeStore & TokenStore & BrowserStore & AccountStore
        & FailureCounterStore & AuditStore
    public let storage: any Storage
    public let settings: ServerSettings
    public let clock: Clock
    public let issuer: AccessTokenIssuer
    public let idTokens: IDTokenIssuer
    /// Password checks with lockout and throttling, shared with the login page.
    public let passwordAuthenticator: PasswordAuthenticator
    /// Lifecycle events (`token.issued`, `grant.revoked`).
    public let events: Events
    /// Counters of issued tokens, errors, reuse and sign-ins (`.none`: not recorded).
    public let metrics: GatehouseMetrics
    /// Security events: sign-ins, lockouts, refresh-token reuse.
    public let audit: AuditLog

    public init(
        storage: any Storage, settings: ServerSettings, clock: Clock, keys: KeyRing,
        passwords: PasswordHasher = PasswordHasher(), events: Events = .none, metrics: GatehouseMetrics = .none,
        audit: AuditLog = .none
    ) {
        self.audit = audit
        self.events = events
        self.metrics = metrics
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.issuer = AccessTokenIssuer(keys: keys)
        self.idTokens = IDTokenIssuer(keys: keys)
        var authenticator = PasswordAuthenticator(
            users: storage, passwords: passwords,
            throttle: LoginThrottle(
                store: storage, maxFailures: settings.passwordMaxFailures, window: settings.passwordLockoutWindow,
                clock: clock, metrics: metrics),
            metrics: metrics)
        authenticator.audit = audit
        self.passwordAuthenticator = authenticator
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
        // Every user token passes here (code, password, refresh, exchange, first-party): none for a disabled or
        // deleted account, however the request reached the token endpoint.
        guard let user = try await storage.user(id: userID), !user.isDisabled else {
            throw OAuthError.invalidGrant.with(description: "The account is disabled.", debug: "disabled or deleted user \(userID)")
        }
        // The admin API's scopes: only for users holding the permission in the service `gatehouse`.
        if let reserved = scope.tokens.first(where: ScopeRecord.reservedNames.contains) {
            let held = Set(try await storage.permissions(service: ScopeRecord.adminService, userID: userID))
            guard ScopeRecord.permits(held, scope: reserved) && ScopeRecord.permits(held, scope: scope) else {
                throw OAuthError.accessDenied.with(
                    description: "The scope \(reserved) needs the permission admin of the service gatehouse, which this user does not hold.")
            }
        }
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

    /// The `aud` of an access token for `resources` (RFC 8707), or this server's own APIs.
    public func audience(_ resources: [String]) -> [String] { resources.isEmpty ? [settings.audience] : resources }

    /// The claims of a new RFC 9068 access token (signed with `sign`).
    public func accessTokenClaims(client: ClientRecord, subject: String, scope: Scope, resources: [String], grantID: String?)
        -> AccessTokenClaims
    {
        let now = clock.nowSeconds
        return AccessTokenClaims(
            iss: settings.issuer, sub: subject, aud: Audience(audience(resources)), client_id: client.id,
            scope: scope.description, jti: Secrets.identifier(), iat: now, exp: now + settings.accessTokenLifetime,
            grant_id: grantID)
    }

    /// Signs an RFC 9068 access token.
    public func mintAccessToken(
        client: ClientRecord, subject: String, scope: Scope, resources: [String], grantID: String?
    ) async throws -> (token: String, expiresIn: Int64) {
        let claims = accessTokenClaims(client: client, subject: subject, scope: scope, resources: resources, grantID: grantID)
        return (try await issuer.sign(claims), claims.exp - claims.iat)
    }

    /// The inputs of an ID token for the client (OIDC Core §3.1.3.3); `accessToken` (for `at_hash`) is set
    /// when the access token issued with it has been signed.
    public func idTokenInput(client: ClientRecord, userID: String, authTime: Int64?, nonce: String?, sessionID: String?)
        -> IDTokenIssuer.Input
    {
        .init(
            issuer: settings.issuer, clientID: client.id, userID: userID, authTime: authTime, nonce: nonce,
            sessionID: sessionID, accessToken: nil, now: clock.nowSeconds, lifetime: settings.idTokenLifetime)
    }

    /// Signs the access token of `claims` and, with `idToken`, an ID token bound to it (`at_hash`): the last
    /// step of a grant, after the database has stored (or consumed) what the tokens rest on.
    public func sign(
        _ claims: AccessTokenClaims, idToken: IDTokenIssuer.Input?, userID: String?, refreshToken: String?,
        now: Int64? = nil
    ) async throws -> IssuedTokens {
        let access = try await issuer.sign(claims)
        var id: String?
        if var input = idToken {
            input.accessToken = access
            id = try await idTokens.sign(input)
        }
        return IssuedTokens(
            clientID: claims.client_id, subject: claims.sub, userID: userID, grantID: claims.grant_id,
            scope: Scope(parsing: claims.scope) ?? .empty, audience: claims.aud.values, accessToken: access,
            expiresIn: claims.exp - (now ?? claims.iat), refreshToken: refreshToken, idToken: id)
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
    /// family is created with it (stored first, then signed).
    public func issueNewGrant(
        client: ClientRecord, userID: String?, scope: Scope, resources: [String], withRefreshToken: Bool
    ) async throws -> IssuedTokens {
        guard withRefreshToken else {
            let claims = accessTokenClaims(
                client: client, subject: userID ?? client.id, scope: scope, resources: resources, grantID: nil)
            return try await sign(claims, idToken: nil, userID: userID, refreshToken: nil)
        }
        if client.singleGrantPerUser, let userID {
            try await storage.revokeGrants(userID: userID, clientID: client.id, at: clock.nowSeconds)
        }
        let grant = GrantRecord(
            id: Secrets.identifier(), clientID: client.id, userID: userID, scope: scope,
            createdAt: clock.nowSeconds, revokedAt: nil)
        let refresh = makeRefreshToken(grantID: grant.id, client: client, userID: userID, scope: scope, resources: resources)
        try await storage.insertGrant(grant, refreshToken: refresh.record)
        let claims = accessTokenClaims(
            client: client, subject: userID ?? client.id, scope: scope, resources: resources, grantID: grant.id)
        return try await sign(claims, idToken: nil, userID: userID, refreshToken: refresh.raw)
    }
}
