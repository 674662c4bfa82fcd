/// The first-party grants of the compatibility profiles: token-auth style sign-in for a legacy web app
/// (Lego's drf-jwt `POST /api/token-auth/` and its refresh). They are registered in the grant table like any
/// grant but are not reachable with `grant_type` at the token endpoint (`atTokenEndpoint` is false): only the
/// profile's own endpoint runs them, for the configured `compat_client_id`, through `TokenEndpoint.issue`.

/// A password sign-in that issues an access token only, on a grant of its own whose tokens can be
/// refreshed (`SessionTokenRefreshGrant`) until `refreshLimit` after the sign-in. A password grant in
/// another shape: the client must be registered for `password`; the same lockout and throttling as the
/// login page. Failures are `PasswordAuthenticator.Failure` (the profile answers in its own shape).
public struct PasswordSessionGrant: TokenGrant {
    public static let grantType = GrantType.passwordSession
    public static let registeredAs = GrantType.password
    public static let allowsPublicClients = true
    public static let atTokenEndpoint = false

    /// How long after the sign-in its token can still be refreshed.
    let refreshLimit: Int64
    /// drf-jwt's default: 7 days.
    public static let defaultRefreshLimit: Int64 = 7 * 86_400
    /// The `method` of the `user.login` event.
    let method: String

    public init(refreshLimit: Int64, method: String) {
        self.refreshLimit = refreshLimit
        self.method = method
    }

    /// A missing username or password is an empty one: it fails like a wrong one (drf-jwt's shape).
    public struct Request: Sendable {
        public let client: ClientRecord
        public let username: String
        public let password: String
        public let clientAddress: String?
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        let p = request.parameters
        return Request(
            client: request.client, username: try p.single("username") ?? "", password: try p.single("password") ?? "",
            clientAddress: request.clientAddress)
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        let client = request.client
        let user = try await context.passwordAuthenticator.authenticate(
            username: request.username, password: request.password, address: request.clientAddress)
        let scope = client.defaultScope
        try await context.checkScopeRoles(scope, userID: user.id)
        // A grant of its own (no refresh token), so the token chain can be revoked (account page, logout of the
        // app) and its refreshes end `refreshLimit` after this sign-in; until then the account page lists it.
        let now = context.clock.nowSeconds
        let grant = GrantRecord(
            id: Secrets.identifier(), clientID: client.id, userID: user.id, scope: scope, createdAt: now, revokedAt: nil,
            authTime: now, liveUntil: now + refreshLimit)
        try await context.storage.insertGrant(grant, refreshToken: nil)
        let claims = context.accessTokenClaims(client: client, subject: user.id, scope: scope, resources: [], grantID: grant.id)
        let issued = try await context.sign(claims, idToken: nil, userID: user.id, refreshToken: nil)
        try? await context.events.emit(Events.userLogin, ["user_id": user.id, "method": method])
        return issued
    }
}

/// A fresh access token for a current one issued by `PasswordSessionGrant` (the `token` parameter), while
/// its grant is within `refreshLimit` of the sign-in (drf-jwt's `JWT_REFRESH_EXPIRATION_DELTA`). Only the
/// client's own, undelegated tokens of a password-session grant for this server's APIs qualify (not the
/// client's password-grant, code or exchanged tokens); anything else is `invalid_grant`.
public struct SessionTokenRefreshGrant: TokenGrant {
    public static let grantType = GrantType.sessionTokenRefresh
    public static let registeredAs = GrantType.password
    public static let allowsPublicClients = true
    public static let atTokenEndpoint = false

    let refreshLimit: Int64
    let verifier: AccessTokenVerifier

    public init(refreshLimit: Int64, verifier: AccessTokenVerifier) {
        self.refreshLimit = refreshLimit
        self.verifier = verifier
    }

    public struct Request: Sendable {
        public let client: ClientRecord
        /// The current access token (nil: not sent, which fails like an expired one).
        public let token: String?
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        Request(client: request.client, token: try request.parameters.single("token"))
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        let client = request.client
        let invalid = OAuthError.invalidGrant.with(description: "Signature has expired.")
        guard let token = request.token,
            let claims = try await verifier.activeClaims(token, revocations: context.storage),
            claims.aud.values.contains(context.settings.audience), claims.act == nil, claims.client_id == client.id,
            let grantID = claims.grant_id, let grant = try await context.storage.grant(id: grantID),
            // Only a password-session grant (the only grants with `liveUntil`): not a password-grant,
            // code or exchanged token of the same client.
            grant.liveUntil != nil, grant.revokedAt == nil,
            context.clock.nowSeconds - grant.createdAt < refreshLimit,
            let userID = claims.userID, try await context.storage.user(id: userID) != nil
        else { throw invalid }
        let scope = Scope(parsing: claims.scope) ?? .empty
        try await context.checkScopeRoles(scope, userID: userID)
        let next = context.accessTokenClaims(client: client, subject: userID, scope: scope, resources: [], grantID: grantID)
        return try await context.sign(next, idToken: nil, userID: userID, refreshToken: nil)
    }
}

/// The client a compatibility profile's first-party endpoints issue tokens to (`compat_client_id`).
public enum FirstPartyClient {
    /// The client `id` names, or `unauthorized_client` saying which setting is missing (start-up checks it
    /// too; the client may have been deleted since).
    public static func resolve(_ id: String?, profile: String, clients: any ClientStore) async throws -> ClientRecord {
        guard let id, let client = try await clients.client(id: id) else {
            throw OAuthError.unauthorizedClient.with(
                description: "The \(profile) profile needs compat_client_id (GATEHOUSE_COMPAT_CLIENT_ID) naming an existing client.",
                debug: "compat_client_id missing or unknown")
        }
        return client
    }
}
