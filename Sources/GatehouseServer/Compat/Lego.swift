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

    /// `POST /api/token-auth/` with `username` and `password` → `{"token": <JWT>, "user": {…}}`: the core's
    /// `PasswordSessionGrant` for `compat_client_id` (which must be registered for the password grant), with
    /// the login page's password check, lockout and hashing; the token carries the client's default scope.
    func tokenAuth(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await HTTP.endpoint("lego token-auth", logger: c.logger) {
            let p = try await body(request)
            let issued: IssuedTokens
            do {
                issued = try await c.services.token.issue(
                    grantType: GrantType.passwordSession, p, client: try await c.compatClient("lego"),
                    clientAddress: c.services.clientAddress(request, context))
            } catch let failure as SignIn.Failure {
                let message = failure == .invalidCredentials
                    ? "Unable to log in with provided credentials."
                    : failure == .disabled ? "User account is disabled."
                    : failure == .mustChangePassword ? "The password must be changed: sign in on the web to choose a new one."
                    : "Too many failed attempts; try again later."
                return CompatContext.json(["non_field_errors": [message]], status: .badRequest)
            }
            return try await answer(issued)
        }
    }

    /// `POST /api/token-auth/refresh/` with `{"token"}` → a fresh token while the old one is unexpired and
    /// its sign-in is within the refresh limit (the core's `SessionTokenRefreshGrant`).
    func refresh(_ request: Request) async -> Response {
        await HTTP.endpoint("lego token refresh", logger: c.logger) {
            let p = try await body(request)
            let issued: IssuedTokens
            do {
                issued = try await c.services.token.issue(
                    grantType: GrantType.sessionTokenRefresh, p, client: try await c.compatClient("lego"))
            } catch let e as OAuthError where e.code == OAuthError.invalidGrant.code {
                return CompatContext.json(["non_field_errors": [e.description]], status: .badRequest)
            }
            return try await answer(issued)
        }
    }

    /// `{"token", "user"}`.
    func answer(_ issued: IssuedTokens) async throws -> Response {
        guard let userID = issued.userID, let user = try await c.services.storage.user(id: userID) else {
            throw OAuthError.serverError  // the grant always names its user
        }
        return CompatContext.json(["token": issued.accessToken, "user": try await userData(user)])
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
