import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// The authorization endpoint (RFC 6749 §3.1, OIDC Core §3.1.2): decodes the request, asks the core, renders the outcome.
extension BrowserRoutes {

    func authorize(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await page("authorize") {
            let parameters = try await parameters(request)
            // OIDC Core §3.1.2.1 allows POST; a cross-site POST carries no SameSite=Lax session cookie, so
            // repeat it as a GET (which does) rather than answer login_required to a signed-in user.
            if request.method == .post, Cookies.value(cookies.sessionName, in: request) == nil {
                return pages.seeOtherLocal(Path.authorization + "?" + FormEncoding.encode(parameters.pairs))
            }
            let session = try await currentSession(request)
            let outcome = try await services.authorization.authorize(parameters, session: session)
            return try await render(outcome, request: request, status: request.method == .post ? .seeOther : .found)
        }
    }

    func render(_ outcome: AuthorizationEndpoint.Outcome, request: Request, status: HTTPResponse.Status) async throws
        -> Response
    {
        switch outcome {
        case .errorPage(let error):
            return pages.error(error)
        case .redirect(let location):
            return Response(status: status, headers: [.location: location, .cacheControl: "no-store"])
        case .outOfBand(let code, let state):
            // The code travels in a short-lived cookie scoped to the code page, not in the URL: it stays out of
            // history and logs, and nobody can make our page show a code of their choosing.
            return withCookie(
                Response(status: status, headers: [.location: pages.prefix + Path.outOfBand, .cacheControl: "no-store"]),
                cookies.oneTime(
                    outOfBandCookieName, path: pages.prefix + Path.outOfBand,
                    [("code", code)] + (state.map { [("state", $0)] } ?? [])))
        case .login(let authorization):
            return try await loginPageResponse(
                request, returnTo: authorization.resumePath, clientName: authorization.client.name, username: authorization.loginHint,
                flags: [:])
        case .consent(let authorization, let user, let scopes):
            let csrf = CSRF.token(request, cookies: cookies)
            let host = URLComponents(string: authorization.redirectURI)?.host ?? authorization.redirectURI
            return withCookie(
                pages.render(
                    "consent",
                    [
                        "csrf": csrf.token, "clientName": authorization.client.name, "username": user.username,
                        "scopes": scopes.map { ["name": $0.name, "description": $0.description] },
                        "fields": authorization.resumeParameters.map { ["name": $0.0, "value": $0.1] },
                        "redirectHost": host, "outOfBand": authorization.isOutOfBand,
                    ]), csrf.setCookie)
        }
    }
}
