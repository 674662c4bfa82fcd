import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
extension BrowserRoutes {

    func endSession(_ request: Request) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await page("end_session") {
            var request = request
            let isPost = request.method == .post
            var parameters = isPost
                ? try await HTTP.formBody(&request) : try HTTP.query(request)
            // Our own confirmation form: a POST with a valid CSRF token and confirm=yes.
            var confirmed = false
            if isPost, try parameters.single("confirm") == "yes" {
                guard CSRF.isValid(request, form: parameters, cookies: cookies) else {
                    return pages.error(Refusal.formExpired)
                }
                confirmed = true
            }
            var rest = parameters.values
            for name in ["csrf_token", "confirm"] { rest[name] = nil }
            parameters = RequestParameters(rest)
            let session = try await currentSession(request)
            // A cross-site POST carries no SameSite=Lax cookie, so it would look like "nobody signed in" and
            // leave the session alive: repeat it as a top-level GET, which does carry the cookie.
            if isPost, !confirmed, Cookies.value(cookies.sessionName, in: request) == nil {
                return pages.seeOtherLocal(Path.endSession + "?" + FormEncoding.encode(parameters.pairs))
            }
            let action = try await services.logout.decide(parameters, session: session?.session)
            switch action {
            case .confirm(let logout) where !confirmed:
                let csrf = CSRF.token(request, cookies: cookies)
                var values: [String: Any] = [
                    "csrf": csrf.token, "fields": logout.parameters.map { ["name": $0.0, "value": $0.1] },
                ]
                if let name = logout.client?.name { values["clientName"] = name }
                if let user = session?.user { values["username"] = user.username }
                return withCookie(pages.render("logout", values), csrf.setCookie)
            case .confirm(let logout), .logout(let logout):
                try await services.signIn.endSession(cookie: Cookies.value(cookies.sessionName, in: request))
                if let session {
                    logger.info("user signed out", metadata: ["user": .string(session.user.id)])
                    try? await services.events.emit(Events.userLogout, ["user_id": session.user.id])
                }
                let clear = cookies.header(cookies.sessionName, "", maxAge: 0)
                if let redirect = logout.redirect {
                    return withCookie(
                        Response(status: isPost ? .seeOther : .found, headers: [.location: redirect, .cacheControl: "no-store"]),
                        clear)
                }
                // POST/Redirect/GET: a form is answered with 303 (to the login page, which says "signed out").
                if isPost { return withCookie(pages.seeOtherLocal(Path.login + "?signed_out=1"), clear) }
                return withCookie(pages.render("signed_out", [:]), clear)
            }
        }
    }
}
