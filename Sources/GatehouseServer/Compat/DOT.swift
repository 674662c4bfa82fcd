import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// django-oauth-toolkit + Django REST Framework (../shared/seeds/003): `/o/*` and the example API's
/// `user_details` endpoints and `register-by-token`.
struct DOTProfile {
    let c: CompatContext

    /// dot's rows of the settings table.
    static let settings: [Setting] = [
        .list(
            "compat_exchange_providers", \.compat.exchangeProviders, accepts: "comma-separated provider ids",
            help: "Comma-separated provider ids whose tokens dot's `register-by-token` accepts. None: it answers 404",
            item: { $0.lowercased() }),
    ]

    func mount(on router: Router<GatehouseRequestContext>) {
        router.get("/o/authorize/") { request, context in await c.browser.authorize(request, context) }
        router.post("/o/authorize/") { request, context in await c.browser.authorize(request, context) }
        router.post("/o/token/") { request, context in await c.core.token(request, context) }
        router.post("/o/revoke_token/") { request, _ in await c.core.revoke(request) }
        router.post("/o/introspect/") { request, _ in await c.core.introspect(request) }
        router.get("/user_details/") { request, _ in await userDetails(request, username: nil) }
        router.get("/user_details_by_username/:username/") { request, context in
            await userDetails(request, username: context.parameters.get("username") ?? "")
        }
        router.get("/register-by-token/:provider/") { request, context in
            await registerByToken(request, provider: context.parameters.get("provider") ?? "", inBody: false)
        }
        router.post("/register-by-token/:provider/") { request, context in
            await registerByToken(request, provider: context.parameters.get("provider") ?? "", inBody: true)
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

    /// `POST /register-by-token/{provider}/` with `access_token` (and a templated provider's parameters) in
    /// the body; the seed's `GET …?access_token=` still works, logged as deprecated (tokens do not belong in
    /// URLs). Only providers listed in `compat_exchange_providers` answer (others: 404). The federation's
    /// token exchange decides whose token it is; tokens go to `compat_client_id`, within its registration.
    func registerByToken(_ request: Request, provider providerID: String, inBody: Bool) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        do {
            guard c.options.exchangeProviders.contains(providerID),
                let provider = try await c.services.upstreamSignIn.provider(id: providerID)
            else { return Self.notFound() }
            let parameters: RequestParameters
            if inBody {
                var request = request
                parameters = try await HTTP.parameters(&request)
            } else {
                parameters = try HTTP.query(request)
                c.logger.warning(
                    "deprecated: register-by-token with access_token in the query string; POST it in the body",
                    metadata: ["provider": .string(providerID)])
            }
            guard let token = try parameters.single("access_token") else {
                return CompatContext.json(Self.exchangeFailed, status: .unauthorized)
            }
            // A token exchange (RFC 8693) of the provider's access token, for `compat_client_id`: the core's
            // `TokenExchangeGrant` decides whose token it is, within the client's registration.
            let exchange = TokenExchangeGrant.upstreamExchange(
                accessToken: token, provider: provider.id, templateParameters: parameters)
            let issued: IssuedTokens
            do {
                issued = try await c.services.token.issue(
                    grantType: GrantType.tokenExchange, exchange, client: try await c.compatClient("dot"))
            } catch let e as OAuthError where e.code == OAuthError.invalidGrant.code {
                c.logger.notice("register-by-token refused", metadata: ["provider": .string(providerID), "detail": .string(e.debug ?? e.description)])
                return CompatContext.json(Self.exchangeFailed, status: .unauthorized)
            }
            var body: [String: Any] = [
                "access_token": issued.accessToken, "expires_in": issued.expiresIn, "token_type": "Bearer",
                "scope": issued.scope.description,
            ]
            if let refresh = issued.refreshToken { body["refresh_token"] = refresh }
            return CompatContext.json(body)
        } catch let e as OAuthError {
            if e.status >= 500 { c.logger.error("register-by-token failed", metadata: ["detail": .string(e.debug ?? e.description)]) }
            return HTTP.error(e)
        } catch {
            c.logger.error("register-by-token failed", metadata: ["detail": .string("\(error)")])
            return HTTP.error(.serverError)
        }
    }
}
