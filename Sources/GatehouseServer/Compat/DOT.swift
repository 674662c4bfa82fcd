import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// django-oauth-toolkit + Django REST Framework (../shared/seeds/003): `/o/*` and the example API's
/// `user_details` endpoints and `register-by-token`.
struct DOTProfile {
    let c: CompatContext

    func mount(on router: Router<GatehouseRequestContext>) {
        router.get("/o/authorize/") { request, context in await c.browser.authorize(request, context) }
        router.post("/o/authorize/") { request, context in await c.browser.authorize(request, context) }
        router.post("/o/token/") { request, _ in await c.core.token(request) }
        router.post("/o/revoke_token/") { request, _ in await c.core.revoke(request) }
        router.post("/o/introspect/") { request, _ in await c.core.introspect(request) }
        router.get("/user_details/") { request, _ in await userDetails(request, username: nil) }
        router.get("/user_details_by_username/:username/") { request, context in
            await userDetails(request, username: context.parameters.get("username") ?? "")
        }
        router.get("/register-by-token/:provider/") { request, context in
            await registerByToken(request, provider: context.parameters.get("provider") ?? "")
        }
    }

    /// DRF's 401: `WWW-Authenticate: Bearer realm="api"`.
    static func unauthorized() -> Response {
        var r = CompatContext.json(["detail": "Authentication credentials were not provided."], status: .unauthorized)
        r.headers[.wwwAuthenticate] = #"Bearer realm="api""#
        return r
    }

    static func notFound() -> Response { CompatContext.json(["detail": "Not found."], status: .notFound) }

    /// `{id, username, first_name, last_name, email}` of the token's user; by username only for that same user
    /// (another user's or an unknown username is 404).
    func userDetails(_ request: Request, username: String?) async -> Response {
        do {
            guard let claims = try await c.verify(HTTP.bearerToken(request)), let user = try await c.user(claims) else {
                return Self.unauthorized()
            }
            if let username, username.lowercased() != user.username.lowercased() { return Self.notFound() }
            return CompatContext.json([
                "id": user.id, "username": user.username, "first_name": user.profile.givenName ?? "",
                "last_name": user.profile.familyName ?? "", "email": user.email ?? "",
            ])
        } catch {
            c.logger.error("user details failed", metadata: ["detail": .string("\(error)")])
            return HTTP.error(.serverError)
        }
    }

    static var exchangeFailed: [String: Any] {
        ["error": "unsuccessful_token_exchange", "error_description": "Unable to complete token exchange with social backend."]
    }

    /// `GET /register-by-token/{provider}/?access_token=…[&username=…]`: the federation's token exchange (the
    /// provider's user-details endpoint vouches for the token), issuing tokens to `compat_client_id`.
    func registerByToken(_ request: Request, provider providerID: String) async -> Response {
        do {
            let query = try HTTP.query(request)
            guard let token = try query.single("access_token"),
                let provider = try await c.services.providers().first(where: { $0.id == providerID })
            else { return CompatContext.json(Self.exchangeFailed, status: .unauthorized) }
            let client = try await c.compatClient("dot")
            var extra: [String: String] = [:]
            for (name, values) in query.values where values.count == 1 && name != "access_token" { extra[name] = values[0] }
            let external: ExternalIdentity
            do {
                external = try await c.services.upstream.identity(forAccessToken: token, provider: provider, parameters: extra)
            } catch let e as UpstreamError {
                c.logger.notice("register-by-token refused", metadata: ["provider": .string(providerID), "detail": .string(e.detail)])
                return CompatContext.json(Self.exchangeFailed, status: .unauthorized)
            }
            let resolution = try await c.services.broker.resolve(external, provider: provider)
            try await c.services.token.context.checkScopeRoles(client.defaultScope, userID: resolution.user.id)
            let response = try await c.services.token.context.issueNewGrant(
                client: client, userID: resolution.user.id, scope: client.defaultScope, resources: [], withRefreshToken: true)
            return CompatContext.json([
                "access_token": response.access_token, "expires_in": response.expires_in, "token_type": "Bearer",
                "refresh_token": response.refresh_token ?? "", "scope": response.scope,
            ])
        } catch let e as OAuthError {
            return HTTP.error(e)
        } catch {
            c.logger.error("register-by-token failed", metadata: ["detail": .string("\(error)")])
            return CompatContext.json(Self.exchangeFailed, status: .unauthorized)
        }
    }
}
