import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// Self-service app registration: signed-in users holding the permission `apps:create` in the service
/// `gatehouse` (`gatehouse services grant gatehouse --user U --permission apps:create`) register OAuth2 apps
/// on `/account/apps` (Lego's "everyone with the right permissions can create an OAuth2 application").
extension BrowserRoutes {
    var createdCookieName: String { cookies.secure ? "__Secure-gatehouse_app" : "gatehouse_app" }
    static let createdPath = "/account/apps/created"

    func addApps(to router: Router<GatehouseRequestContext>) {
        router.get("/account/apps") { request, _ in await appsPage(request) }
        router.post("/account/apps") { request, _ in await createApp(request) }
        router.get(RouterPath(Self.createdPath)) { request, _ in createdPage(request) }
    }

    func mayCreateApps(_ user: UserRecord) async throws -> Bool {
        let (allowed, problem) = try await services.selfService.mayRegisterApps(user)
        if let problem { logger.warning("permissions unavailable", metadata: ["detail": .string(problem)]) }
        return allowed
    }

    func appsPage(_ request: Request) async -> Response {
        await page("apps") {
            guard let (_, user) = try await currentSession(request) else {
                return toLogin(returnTo: Path.account)
            }
            guard try await mayCreateApps(user) else { return pages.error(SelfService.notAllowed) }
            let csrf = CSRF.token(request, cookies: cookies)
            let scopes = try await services.selfService.registrableScopes()
            return withCookie(
                pages.render(
                    "apps",
                    ["csrf": csrf.token, "scopes": scopes.map { ["name": $0.name] },
                     "defaultScope": scopes.contains { $0.name == "user" } ? "user" : "openid profile"]),
                csrf.setCookie)
        }
    }

    func createApp(_ request: Request) async -> Response {
        await formPage("apps", request) { form, request in
            guard let (_, user) = try await currentSession(request) else { return pages.seeOtherLocal(Path.login) }
            let (client, secret) = try await services.selfService.registerApp(
                by: user, name: try form.single("name"), redirectURI: try form.single("redirect_uri"),
                scope: try form.single("scope"))
            logger.info("app registered by user", metadata: ["user": .string(user.id), "client": .string(client.id)])
            // The secret is shown once, on a page reached by 303 (POST/Redirect/GET): it travels in a short-lived
            // cookie scoped to that page, never in a URL.
            return withCookie(
                pages.seeOtherLocal(Self.createdPath),
                cookies.oneTime(
                    createdCookieName, path: pages.prefix + Self.createdPath,
                    [("client_id", client.id), ("name", client.name), ("secret", secret ?? "")]))
        }
    }

    func createdPage(_ request: Request) -> Response {
        // It spends a show-once cookie: not on HEAD.
        if let refused = HTTP.refuseHead(request) { return refused }
        guard let values = Cookies.readOneTime(createdCookieName, in: request), let id = try? values.single("client_id"),
            let secret = try? values.single("secret")
        else { return pages.error(Refusal.nothingToShow) }
        return withCookie(
            pages.render("app_created", ["clientID": id, "clientSecret": secret, "name": (try? values.single("name")) ?? id]),
            cookies.clearOneTime(createdCookieName, path: pages.prefix + Self.createdPath))
    }
}
