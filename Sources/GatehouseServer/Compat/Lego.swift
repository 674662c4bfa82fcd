import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// Abakus Lego (../shared/seeds/000): JWT token auth for the first-party web app, OAuth2 for third-party apps
/// (scopes `user` and `all`), the user-data endpoints, and CORS for configured origins only.
struct LegoProfile {
    let c: CompatContext

    /// lego's rows of the settings table.
    static let settings: [Setting] = [
        .list(
            "cors_origins", \.compat.corsOrigins, accepts: "comma-separated origins (`https://app.example.com`)",
            help: "Origins that get CORS headers on the profiles' APIs",
            item: { origin in
                guard let u = URLComponents(string: origin), u.scheme != nil, u.host != nil, u.path.isEmpty, u.query == nil else {
                    throw Setting.Invalid("'\(origin)' is not an origin (scheme://host[:port])")
                }
                return origin
            }),
    ]

    /// The scopes Lego's clients ask for; created at start when missing. `all` needs the role `admin`.
    static let scopes = [
        ScopeRecord(name: "user", description: "Read your name, username, profile picture, email and memberships", isDefault: false),
        ScopeRecord(
            name: "all", description: "Full read and write access to everything, including changing your password",
            isDefault: false, requiredRole: "admin"),
    ]

    /// How long after token-auth sign-in its token can still be refreshed (7 days, drf-jwt's default).
    static let refreshLimit: Int64 = 7 * 86_400

    static func prepare(_ services: GatehouseServices) async throws {
        let existing = Set(try await services.storage.listScopes().map(\.name))
        for s in scopes where !existing.contains(s.name) { try? await services.storage.insertScope(s) }
    }

    func mount(on router: Router<GatehouseRequestContext>) {
        router.post("/api/token-auth/") { request, context in cors(request, await tokenAuth(request, context)) }
        // Hummingbird matches a path with or without its trailing slash, so this also serves
        // `/api/token-auth/refresh` (the document's spelling).
        router.post("/api/token-auth/refresh/") { request, _ in cors(request, await refresh(request)) }
        router.get("/authorization/oauth2/authorize/") { request, context in await c.browser.authorize(request, context) }
        router.post("/authorization/oauth2/authorize/") { request, context in await c.browser.authorize(request, context) }
        router.post("/authorization/oauth2/token/") { request, context in await c.core.token(request, context) }
        router.get("/api/v1/users/me/") { request, _ in cors(request, await userData(request, needsScope: false)) }
        router.get("/api/v1/users/oauth2_userdata/") { request, _ in cors(request, await userData(request, needsScope: true)) }
        for path in ["/api/token-auth/", "/api/token-auth/refresh/", "/api/v1/users/me/",
                     "/api/v1/users/oauth2_userdata/"] {
            router.on(RouterPath(path), method: .options) { request, _ in cors(request, Response(status: .noContent)) }
        }
    }

    /// CORS headers only for configured origins (`cors_origins`); other origins get none, so browsers refuse.
    func cors(_ request: Request, _ response: Response) -> Response {
        var response = response
        response.headers[.vary] = "Origin"
        guard let origin = request.headers[.origin], c.options.corsOrigins.contains(origin) else { return response }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlAllowCredentials] = "true"
        response.headers[.accessControlAllowMethods] = "GET, POST, OPTIONS"
        response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type"
        return response
    }

    /// JSON or a form.
    func body(_ request: Request) async throws -> RequestParameters {
        var request = request
        return try await HTTP.parameters(&request)
    }

    /// `POST /api/token-auth/` with `username` and `password` → `{"token": <JWT>, "user": {…}}`. The same
    /// password check, lockout and hashing as the login page; the token is our access token for
    /// `compat_client_id` with that client's default scope.
    func tokenAuth(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await HTTP.endpoint("lego token-auth", logger: c.logger) {
            let p = try await body(request)
            let client = try await c.compatClient("lego")
            // Token-auth is a password grant in another shape: only for a client registered for it.
            guard client.allows(grantType: GrantType.password) else {
                throw OAuthError.unauthorizedClient.with(
                    description: "The compat client (compat_client_id) is not allowed the password grant.")
            }
            let user: UserRecord
            do {
                user = try await c.services.signIn.authenticate(
                    username: try p.single("username") ?? "", password: try p.single("password") ?? "",
                    address: c.services.clientAddress(request, context))
            } catch let failure as SignIn.Failure {
                let message = failure != .invalidCredentials
                    ? "Too many failed attempts; try again later." : "Unable to log in with provided credentials."
                return CompatContext.json(["non_field_errors": [message]], status: .badRequest)
            }
            let context = c.services.token.context
            try await context.checkScopeRoles(client.defaultScope, userID: user.id)
            // A grant of its own (no refresh token), so the token chain can be revoked (account page, logout
            // of the app) and its refreshes end `refreshLimit` after this sign-in; until then the account page
            // lists it (`liveUntil`).
            let now = c.services.clock.nowSeconds
            let grant = GrantRecord(
                id: Secrets.identifier(), clientID: client.id, userID: user.id, scope: client.defaultScope,
                createdAt: now, revokedAt: nil, authTime: now, liveUntil: now + Self.refreshLimit)
            try await c.services.storage.insertGrant(grant, refreshToken: nil)
            let minted = try await context.mintAccessToken(
                client: client, subject: user.id, scope: client.defaultScope, resources: [], grantID: grant.id)
            try? await c.services.events.emit(Events.userLogin, ["user_id": user.id, "method": "lego-jwt"])
            return CompatContext.json(["token": minted.token, "user": try await userData(user)])
        }
    }

    /// `POST /api/token-auth/refresh/` with `{"token"}` → a fresh token while the old one is unexpired.
    func refresh(_ request: Request) async -> Response {
        await HTTP.endpoint("lego token refresh", logger: c.logger) {
            let p = try await body(request)
            let refused = CompatContext.json(["non_field_errors": ["Signature has expired."]], status: .badRequest)
            // Only token-auth's own tokens (the first-party client's, not exchanged or delegated ones), and only
            // within `refreshLimit` of the sign-in (like drf-jwt's JWT_REFRESH_EXPIRATION_DELTA).
            guard let claims = try await c.verify(try p.single("token")), claims.act == nil,
                claims.client_id == c.clientID, let grantID = claims.grant_id,
                let grant = try await c.services.storage.grant(id: grantID),
                c.services.clock.nowSeconds - grant.createdAt < Self.refreshLimit,
                let user = try await c.user(claims), let client = try await c.services.storage.client(id: claims.client_id)
            else { return refused }
            let scope = Scope(parsing: claims.scope) ?? .empty
            try await c.services.token.context.checkScopeRoles(scope, userID: user.id)
            let minted = try await c.services.token.context.mintAccessToken(
                client: client, subject: user.id, scope: scope, resources: [], grantID: grantID)
            return CompatContext.json(["token": minted.token, "user": try await userData(user)])
        }
    }

    /// `{id, username, firstName, lastName, fullName, email, profilePicture, memberships}`.
    func userData(_ user: UserRecord) async throws -> [String: Any] {
        let memberships = try await c.services.storage.memberships(userID: user.id)
        let first = user.profile.givenName ?? ""
        let last = user.profile.familyName ?? ""
        let full = user.name ?? [first, last].filter { !$0.isEmpty }.joined(separator: " ")
        return [
            "id": user.id, "username": user.username, "firstName": first, "lastName": last, "fullName": full,
            "email": user.email ?? "", "profilePicture": user.profile.picture ?? "",
            "memberships": memberships.map { ["abakusGroup": ["name": $0.group], "role": $0.role] },
        ]
    }

    /// `/api/v1/users/me/` (any valid token) and `/api/v1/users/oauth2_userdata/` (scope `user` or `all`);
    /// `Authorization: JWT <token>` works as well as `Bearer`.
    func userData(_ request: Request, needsScope: Bool) async -> Response {
        do {
            guard let claims = try await c.verify(HTTP.bearerToken(request, schemes: ["bearer", "jwt"])),
                let user = try await c.user(claims)
            else {
                var r = CompatContext.json(["detail": "Authentication credentials were not provided."], status: .unauthorized)
                r.headers[.wwwAuthenticate] = #"JWT realm="api""#
                return r
            }
            let scope = Scope(parsing: claims.scope) ?? .empty
            // The first-party web app's tokens (token-auth) read it; third-party apps need scope user or all.
            let firstParty = claims.client_id == c.clientID && !needsScope
            if !firstParty, !scope.contains("user"), !scope.contains("all") {
                return CompatContext.json(["detail": "You do not have permission to perform this action."], status: .forbidden)
            }
            return CompatContext.json(try await userData(user))
        } catch {
            c.logger.error("lego user data failed", metadata: ["detail": .string("\(error)")])
            return HTTP.error(.serverError)
        }
    }
}
