import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// The account page: connected apps, revoking them, signing out.
extension BrowserRoutes {

    func account(_ request: Request) async -> Response {
        await page("account") {
            guard let (_, user) = try await currentSession(request) else {
                return toLogin(returnTo: Path.account)
            }
            let now = services.clock.nowSeconds
            let grants = try await services.storage.activeGrants(
                userID: user.id, createdAfter: now - services.settings.accessTokenLifetime, at: now)
            var apps: [[String: Any]] = []
            var seen: [String: Int] = [:]
            for grant in grants {
                if let i = seen[grant.clientID] {
                    let scope = Scope(((apps[i]["scope"] as? String) ?? "").split(separator: " ").map(String.init) + grant.scope.tokens)
                    apps[i]["scope"] = scope.description
                    continue
                }
                guard let client = try await services.storage.client(id: grant.clientID) else { continue }
                seen[grant.clientID] = apps.count
                apps.append([
                    "clientID": client.id, "name": client.name, "scope": grant.scope.description,
                    "since": Self.date(grant.createdAt),
                ])
            }
            let csrf = CSRF.token(request, cookies: cookies)
            var values: [String: Any] = ["csrf": csrf.token, "username": user.username]
            let providers = try await services.providers()
            let identities = try await services.storage.identities(userID: user.id)
            values["identities"] = identities.map { i in
                [
                    "provider": i.providerID, "subject": i.subject, "csrf": csrf.token,
                    "providerName": providers.first { $0.id == i.providerID }?.name ?? i.providerID,
                    "account": i.username ?? i.email ?? i.subject,
                ]
            }
            if try await mayCreateApps(user) { values["canCreateApps"] = true }
            values["linkable"] = providers.filter { p in !identities.contains { $0.providerID == p.id } }
                .map { ["id": $0.id, "name": $0.name, "csrf": csrf.token] }
            if let name = user.name { values["name"] = name }
            values["apps"] = apps.map { app in app.merging(["csrf": csrf.token]) { a, _ in a } }
            return withCookie(pages.render("account", values), csrf.setCookie)
        }
    }

    static func date(_ seconds: Int64) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    func revoke(_ request: Request) async -> Response {
        await formPage("account", request) { form, request in
            guard let (_, user) = try await currentSession(request) else { return pages.seeOtherLocal(Path.login) }
            let clientID = try form.single("client_id")
            try await services.selfService.revokeApp(clientID, for: user)
            logger.info("grants revoked by user", metadata: ["user": .string(user.id), "client": .string(clientID ?? "")])
            return pages.seeOtherLocal(Path.account)
        }
    }

    func signOut(_ request: Request) async -> Response {
        await formPage("logout", request) { form, request in
            if let (_, user) = try await currentSession(request) {
                try? await services.events.emit(Events.userLogout, ["user_id": user.id])
            }
            try await services.signIn.endSession(cookie: Cookies.value(cookies.sessionName, in: request))
            return withCookie(
                pages.seeOtherLocal(Path.login + "?signed_out=1"), cookies.header(cookies.sessionName, "", maxAge: 0))
        }
    }
}
