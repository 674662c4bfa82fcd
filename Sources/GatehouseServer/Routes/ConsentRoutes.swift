import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// The consent form: the decision goes back to the authorization endpoint in the core.
extension BrowserRoutes {

    func consent(_ request: Request) async -> Response {
        await formPage("consent", request) { form, request in
            let decision = try AuthorizationEndpoint.Decision(form: form)
            var rest = form.values
            for name in ["csrf_token", "decision", "remember"] { rest[name] = nil }
            let session = try await currentSession(request)
            let outcome = try await services.authorization.authorize(
                RequestParameters(rest), session: session, decision: decision)
            switch outcome {
            case .login(let authorization):
                // The session ended meanwhile: sign in again, then come back to the request (POST → 303).
                return toLogin(returnTo: authorization.resumePath)
            case .consent(let authorization, _, _):
                return pages.seeOtherLocal(authorization.resumePath)
            default:
                return try await render(outcome, request: request, status: .seeOther)
            }
        }
    }

    var outOfBandCookieName: String { cookies.secure ? "__Secure-gatehouse_oob" : "gatehouse_oob" }

    /// Shows the code of an out-of-band authorization once (it is read from, and removed with, its cookie).
    func outOfBand(_ request: Request) -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        guard let query = Cookies.readOneTime(outOfBandCookieName, in: request),
            let code = try? query.single("code"), code.utf8.count <= 256
        else { return pages.error(Refusal.nothingToShow) }
        var values: [String: Any] = ["code": code]
        if let state = try? query.single("state") { values["state"] = state }
        return withCookie(pages.render("oob", values), cookies.clearOneTime(outOfBandCookieName, path: pages.prefix + Path.outOfBand))
    }
}
