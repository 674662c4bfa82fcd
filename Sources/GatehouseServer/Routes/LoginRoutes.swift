import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// The sign-in page and its form (password sign-in through the core `SignIn`).
extension BrowserRoutes {

    func loginPage(_ request: Request) async -> Response {
        await page("login") {
            let query = try HTTP.query(request)
            let returnTo = safeReturnTo(try query.single("return_to"))
            var flags: [String: Bool] = [:]
            switch try query.single("error") {
            case "locked": flags["locked"] = true
            case "disabled": flags["disabled"] = true
            case .some: flags["failed"] = true
            case nil: break
            }
            if try query.single("signed_out") != nil { flags["signedOut"] = true }
            var clientName: String?
            if returnTo.hasPrefix(Path.authorization + "?"),
                let p = try? RequestParameters.decodeForm(Data(returnTo.dropFirst(Path.authorization.count + 1).utf8)),
                let id = try? p.single("client_id")
            {
                clientName = try await services.storage.client(id: id)?.name
            }
            return try await loginPageResponse(
                request, returnTo: returnTo, clientName: clientName, username: try query.single("login_hint"), flags: flags)
        }
    }

    func loginPageResponse(
        _ request: Request, returnTo: String, clientName: String?, username: String?, flags: [String: Bool]
    ) async throws -> Response {
        let csrf = CSRF.token(request, cookies: cookies)
        var values: [String: Any] = ["csrf": csrf.token, "returnTo": returnTo]
        let providers = try await services.providers()
        if !providers.isEmpty {
            values["hasProviders"] = true
            values["providers"] = providers.map { ["id": $0.id, "name": $0.name, "csrf": csrf.token, "returnTo": returnTo] }
        }
        if let clientName { values["clientName"] = clientName }
        if let username, username.utf8.count <= 150 { values["username"] = username }
        for (k, v) in flags where v { values[k] = true }
        return withCookie(pages.render("login", values), csrf.setCookie)
    }

    func login(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await formPage("login", request) { form, request in
            let returnTo = safeReturnTo(try form.single("return_to"))
            let username = try form.single("username") ?? ""
            let password = try form.single("password") ?? ""
            let address = services.clientAddress(request, context)
            do {
                let user = try await services.signIn.authenticate(username: username, password: password, address: address)
                let (cookie, session) = try await services.signIn.complete(
                    user: user, method: "password", previousCookie: Cookies.value(cookies.sessionName, in: request))
                logger.info("user signed in", metadata: ["user": .string(user.id), "session": .string(session.id)])
                return withCookie(
                    pages.seeOtherLocal(returnTo),
                    cookies.header(cookies.sessionName, cookie, maxAge: services.settings.sessionLifetime))
            } catch SignIn.Failure.mustChangePassword {
                return passwordChangePage(request, returnTo: returnTo, username: username, problem: nil)
            } catch let failure as SignIn.Failure {
                let code: String
                switch failure {
                case .invalidCredentials: code = "failed"
                case .throttled: code = "locked"
                case .disabled: code = "disabled"
                case .mustChangePassword: code = "failed"
                }
                var meta: Logger.Metadata = ["address": .string(address ?? "unknown")]
                meta["event"] = .string(code == "locked" ? "login.locked_out" : code == "disabled" ? "login.disabled" : "login.failed")
                logger.notice("sign-in failed", metadata: meta)
                let query = FormEncoding.encode([("error", code), ("return_to", returnTo)])
                return pages.seeOtherLocal(Path.login + "?" + query)
            }
        }
    }

    /// The form for a password an administrator asked the user to change (`require_reset`): the user proves
    /// the current password again (nothing about the first attempt is kept between the two requests).
    func passwordChangePage(_ request: Request, returnTo: String, username: String, problem: String?) -> Response {
        let csrf = CSRF.token(request, cookies: cookies)
        var values: [String: Any] = ["csrf": csrf.token, "returnTo": returnTo, "username": String(username.prefix(150))]
        if let problem { values["problem"] = problem }
        return withCookie(pages.render("password_change", values, status: problem == nil ? .ok : .badRequest), csrf.setCookie)
    }

    func changeRequiredPassword(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await formPage("password_change", request) { form, request in
            let returnTo = safeReturnTo(try form.single("return_to"))
            let username = try form.single("username") ?? ""
            let current = try form.single("current_password") ?? ""
            let new = try form.single("new_password") ?? ""
            guard new == (try form.single("new_password_repeat") ?? "") else {
                return passwordChangePage(request, returnTo: returnTo, username: username, problem: "The new passwords differ.")
            }
            let address = services.clientAddress(request, context)
            do {
                let user = try await services.signIn.changeRequiredPassword(
                    username: username, current: current, new: new, address: address)
                let (cookie, session) = try await services.signIn.complete(
                    user: user, method: "password", previousCookie: Cookies.value(cookies.sessionName, in: request))
                logger.info("user changed password and signed in", metadata: ["user": .string(user.id), "session": .string(session.id)])
                return withCookie(
                    pages.seeOtherLocal(returnTo),
                    cookies.header(cookies.sessionName, cookie, maxAge: services.settings.sessionLifetime))
            } catch SignIn.PasswordChange.invalid(let problem) {
                return passwordChangePage(request, returnTo: returnTo, username: username, problem: problem)
            } catch let failure as SignIn.Failure {
                let code = failure == .disabled ? "disabled" : { if case .throttled = failure { return "locked" } else { return "failed" } }()
                return pages.seeOtherLocal(Path.login + "?" + FormEncoding.encode([("error", code), ("return_to", returnTo)]))
            }
        }
    }
}
