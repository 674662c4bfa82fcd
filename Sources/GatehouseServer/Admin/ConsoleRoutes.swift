import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// The web admin console (`/admin`): server-rendered pages behind the normal sign-in, for users holding the
/// permission `admin` (everything) or `admin:read` (every page, no forms) of the service `gatehouse`. Every
/// change goes through `Administration` (audited as the signed-in user). Forms carry CSRF tokens and are
/// answered 303; destructive actions are a GET confirmation page whose form POSTs to the same path.
extension BrowserRoutes {
    static let consoleNav: [(label: String, href: String)] = [
        ("Dashboard", "/admin"), ("Users", "/admin/users"), ("Clients", "/admin/clients"), ("Scopes", "/admin/scopes"),
        ("Groups", "/admin/groups"), ("Services", "/admin/services"), ("Providers", "/admin/providers"),
        ("Keys", "/admin/keys"), ("Webhooks", "/admin/events"), ("Audit log", "/admin/audit"),
    ]

    /// The signed-in administrator.
    struct ConsoleUser {
        let user: UserRecord
        let canWrite: Bool
        let admin: Administration
    }

    var secretCookieName: String { cookies.secure ? "__Secure-gatehouse_admin_secret" : "gatehouse_admin_secret" }

    func addConsole(to router: Router<GatehouseRequestContext>) {
        func get(_ path: String, _ handler: @escaping @Sendable (Request, GatehouseRequestContext, ConsoleUser) async throws -> Response) {
            router.get(RouterPath(path)) { request, context in
                await consolePage(request, context, write: false) { try await handler(request, context, $0) }
            }
        }
        func post(_ path: String, _ handler: @escaping @Sendable (RequestParameters, Request, GatehouseRequestContext, ConsoleUser) async throws -> Response) {
            router.post(RouterPath(path)) { request, context in await consoleForm(request, context, handler) }
        }
        /// A destructive action: GET shows the confirmation, POST (with `confirm=yes`) does it.
        func destructive(
            _ path: String, describe: @escaping @Sendable (Request, GatehouseRequestContext, ConsoleUser) async throws -> (String, String, back: String),
            _ perform: @escaping @Sendable (RequestParameters, Request, GatehouseRequestContext, ConsoleUser) async throws -> Response
        ) {
            router.get(RouterPath(path)) { request, context in
                await consolePage(request, context, write: true) { admin in
                    let (heading, message, back) = try await describe(request, context, admin)
                    var page = ConsolePage(heading, lead: message)
                    let extra = try HTTP.query(request)
                    var form = ConsoleForm(action: request.uri.path, submit: heading, danger: true, cancel: back)
                    form.hidden = [("confirm", "yes")] + ["grace", "force"].compactMap { k in (try? extra.single(k)).flatMap { $0 }.map { (k, $0) } }
                    form.id = "confirm-form"
                    page.add(.form(nil, form))
                    return render(page, request, admin, current: "/" + back.split(separator: "/").prefix(2).joined(separator: "/"))
                }
            }
            router.post(RouterPath(path)) { request, context in
                await consoleForm(request, context) { form, request, context, admin in
                    guard try form.single("confirm") == "yes" else { return pages.seeOther(pages.prefix + request.uri.path) }
                    return try await perform(form, request, context, admin)
                }
            }
        }

        get("/admin") { r, _, a in try await dashboard(r, a) }
        get("/admin/users") { r, _, a in try await usersPage(r, a) }
        post("/admin/users") { f, _, _, a in
            var profile = UserProfile()
            profile.emailVerified = try f.single("email_verified") == "true"
            let user = try await a.admin.createUser(
                username: try f.single("username") ?? "", email: nonEmpty(try f.single("email")), name: nonEmpty(try f.single("name")),
                password: nonEmpty(try f.single("password")), profile: profile)
            return pages.seeOtherLocal("/admin/users/" + user.id)
        }
        get("/admin/users/:id") { r, c, a in try await userPage(r, try consoleParameter(c, "id"), a) }
        post("/admin/users/:id") { f, _, c, a in
            let id = try consoleParameter(c, "id")
            var patch = UserPatch()
            patch.username = try f.single("username")
            patch.email = .some(nonEmpty(try f.single("email")))
            patch.name = .some(nonEmpty(try f.single("name")))
            patch.givenName = .some(nonEmpty(try f.single("given_name")))
            patch.familyName = .some(nonEmpty(try f.single("family_name")))
            patch.picture = .some(nonEmpty(try f.single("picture")))
            patch.phoneNumber = .some(nonEmpty(try f.single("phone_number")))
            patch.address = .some(nonEmpty(try f.single("address")))
            patch.emailVerified = try f.single("email_verified") == "true"
            _ = try await a.admin.updateUser(id: id, patch)
            return pages.seeOtherLocal("/admin/users/\(id)?notice=saved")
        }
        post("/admin/users/:id/enable") { _, _, c, a in
            let id = try consoleParameter(c, "id")
            _ = try await a.admin.enableUser(id: id)
            return pages.seeOtherLocal("/admin/users/\(id)?notice=enabled")
        }
        destructive("/admin/users/:id/disable", describe: { _, c, a in
            let u = try await a.admin.user(id: try consoleParameter(c, "id"))
            return ("Disable \(u.username)", "\(u.username) will be signed out everywhere and cannot sign in until enabled again. Their tokens stop working at once.", "/admin/users/" + u.id)
        }) { _, _, c, a in
            let id = try consoleParameter(c, "id")
            _ = try await a.admin.disableUser(id: id)
            return pages.seeOtherLocal("/admin/users/\(id)?notice=disabled")
        }
        destructive("/admin/users/:id/delete", describe: { _, c, a in
            let u = try await a.admin.user(id: try consoleParameter(c, "id"))
            return ("Delete \(u.username)", "The account, its sessions, grants, linked identities, memberships and permissions are deleted. This cannot be undone.", "/admin/users/" + u.id)
        }) { _, _, c, a in
            try await a.admin.deleteUser(id: try consoleParameter(c, "id"))
            return pages.seeOtherLocal("/admin/users?notice=deleted")
        }
        post("/admin/users/:id/password") { f, _, c, a in
            let id = try consoleParameter(c, "id")
            let requireReset = try f.single("require_reset") == "true"
            _ = try await a.admin.setPassword(userID: id, password: nonEmpty(try f.single("password")), requireReset: requireReset)
            return pages.seeOtherLocal("/admin/users/\(id)?notice=password")
        }
        destructive("/admin/users/:id/sessions/end", describe: { _, c, a in
            let u = try await a.admin.user(id: try consoleParameter(c, "id"))
            return ("Sign \(u.username) out everywhere", "Every session of \(u.username) ends; apps keep their tokens until those expire or are revoked.", "/admin/users/" + u.id)
        }) { _, _, c, a in
            let id = try consoleParameter(c, "id")
            _ = try await a.admin.endSessions(userID: id)
            return pages.seeOtherLocal("/admin/users/\(id)?notice=signed_out")
        }
        destructive("/admin/users/:id/sessions/:sid/end", describe: { _, c, a in
            let u = try await a.admin.user(id: try consoleParameter(c, "id"))
            return ("End this session", "The session \(try consoleParameter(c, "sid")) of \(u.username) ends.", "/admin/users/" + u.id)
        }) { _, _, c, a in
            let id = try consoleParameter(c, "id")
            try await a.admin.endSession(userID: id, sessionID: try consoleParameter(c, "sid"))
            return pages.seeOtherLocal("/admin/users/\(id)?notice=session_ended")
        }
        destructive("/admin/users/:id/identities/:provider/:subject/unlink", describe: { _, c, a in
            let u = try await a.admin.user(id: try consoleParameter(c, "id"))
            return ("Unlink \(try consoleParameter(c, "provider"))", "\(u.username) can no longer sign in with this \(try consoleParameter(c, "provider")) account.", "/admin/users/" + u.id)
        }) { _, _, c, a in
            let id = try consoleParameter(c, "id")
            try await a.admin.unlinkIdentity(
                userID: id, provider: try consoleParameter(c, "provider"), subject: try consoleParameter(c, "subject"))
            return pages.seeOtherLocal("/admin/users/\(id)?notice=unlinked")
        }
        post("/admin/users/:id/groups") { f, _, c, a in
            let id = try consoleParameter(c, "id")
            _ = try await a.admin.addMember(group: try f.single("group") ?? "", user: id, role: nonEmpty(try f.single("role")) ?? "member")
            return pages.seeOtherLocal("/admin/users/\(id)?notice=saved")
        }
        destructive("/admin/groups/:name/members/:user/remove", describe: { _, c, a in
            let u = try await a.admin.resolveUser(try consoleParameter(c, "user"))
            let g = try consoleParameter(c, "name")
            return ("Remove \(u.username) from \(g)", "\(u.username) leaves the group \(g) and loses the role it gave.", "/admin/groups/" + g)
        }) { _, _, c, a in
            let g = try consoleParameter(c, "name")
            try await a.admin.removeMember(group: g, user: try consoleParameter(c, "user"))
            return pages.seeOtherLocal("/admin/groups/\(g)?notice=removed")
        }
        destructive("/admin/grants/:id/revoke", describe: { _, c, _ in
            ("Revoke this grant", "The grant \(try consoleParameter(c, "id")) and every token issued from it stop working.", "/admin/users")
        }) { _, _, c, a in
            let id = try consoleParameter(c, "id")
            let grant = try await services.storage.grant(id: id)
            try await a.admin.revokeGrant(id: id)
            return pages.seeOtherLocal(grant?.userID.map { "/admin/users/\($0)?notice=revoked" } ?? "/admin/users")
        }

        get("/admin/clients") { r, _, a in try await clientsPage(r, a) }
        post("/admin/clients") { f, _, _, a in
            var new = Administration.NewClient(name: try f.single("name") ?? "")
            new.redirectURIs = lines(try f.single("redirect_uris"))
            new.postLogoutRedirectURIs = lines(try f.single("post_logout_redirect_uris"))
            new.grantTypes = words(try f.single("grant_types"))
            new.allowPasswordGrant = new.grantTypes.contains(GrantType.password)
            new.scope = nonEmpty(try f.single("scope"))
            new.isPublic = try f.single("public") == "true"
            new.skipConsent = try f.single("skip_consent") == "true"
            let (client, secret) = try await a.admin.createClient(new)
            return showSecretOnce(client: client, secret: secret)
        }
        get("/admin/clients/secret") { r, _, a in
            if let refused = HTTP.refuseHead(r) { return refused }
            guard let values = Cookies.readOneTime(secretCookieName, in: r), let id = try? values.single("client_id") else {
                return pages.error(Refusal.nothingToShow)
            }
            var page = ConsolePage("Client \((try? values.single("name")) ?? id)", lead: "The client is saved.")
            var section = ConsoleSection("Credentials", id: "credentials")
            section.secret = (id, (try? values.single("secret")) ?? "")
            page.add(section)
            page.add(.table(nil, ConsoleTable(columns: ["Client"], rows: [.init(cells: [.init(text: id, href: "/admin/clients/" + id)])])))
            return withCookie(
                render(page, r, a, current: "/admin/clients"),
                cookies.clearOneTime(secretCookieName, path: pages.prefix + "/admin/clients/secret"))
        }
        get("/admin/clients/:id") { r, c, a in try await clientPage(r, try consoleParameter(c, "id"), a) }
        post("/admin/clients/:id") { f, _, c, a in
            let id = try consoleParameter(c, "id")
            var patch = ClientPatch()
            patch.name = try f.single("name")
            patch.redirectURIs = lines(try f.single("redirect_uris"))
            patch.postLogoutRedirectURIs = lines(try f.single("post_logout_redirect_uris"))
            patch.grantTypes = words(try f.single("grant_types"))
            patch.scope = try f.single("scope")
            patch.defaultScope = nonEmpty(try f.single("default_scope"))
            patch.skipConsent = try f.single("skip_consent") == "true"
            _ = try await a.admin.updateClient(id: id, patch)
            return pages.seeOtherLocal("/admin/clients/\(id)?notice=saved")
        }
        destructive("/admin/clients/:id/rotate", describe: { r, c, a in
            let client = try await a.admin.client(id: try consoleParameter(c, "id"))
            let grace = (try? HTTP.query(r).single("grace")).flatMap { $0 }.flatMap(Int64.init) ?? 0
            return ("Rotate the secret of \(client.name)", grace > 0
                ? "A new secret is made; the current one keeps working for \(grace / 60) minutes."
                : "A new secret is made; the current one stops working at once.", "/admin/clients/" + client.id)
        }) { f, _, c, a in
            let grace = try f.single("grace").flatMap { Int64($0) }
            let (client, secret) = try await a.admin.rotateSecret(clientID: try consoleParameter(c, "id"), grace: grace)
            return showSecretOnce(client: client, secret: secret)
        }
        destructive("/admin/clients/:id/delete", describe: { _, c, a in
            let client = try await a.admin.client(id: try consoleParameter(c, "id"))
            return ("Delete \(client.name)", "The client is deleted and every grant it holds is revoked. This cannot be undone.", "/admin/clients/" + client.id)
        }) { _, _, c, a in
            try await a.admin.deleteClient(id: try consoleParameter(c, "id"))
            return pages.seeOtherLocal("/admin/clients?notice=deleted")
        }

        get("/admin/scopes") { r, _, a in try await scopesPage(r, a) }
        post("/admin/scopes") { f, _, _, a in
            _ = try await a.admin.createScope(
                name: try f.single("name") ?? "", description: nonEmpty(try f.single("description")),
                isDefault: try f.single("default") == "true", requiredRole: nonEmpty(try f.single("required_role")))
            return pages.seeOtherLocal("/admin/scopes?notice=saved")
        }
        get("/admin/scopes/:name") { r, c, a in try await scopePage(r, try consoleParameter(c, "name"), a) }
        post("/admin/scopes/:name") { f, _, c, a in
            let name = try consoleParameter(c, "name")
            _ = try await a.admin.updateScope(
                name: name, description: try f.single("description"), isDefault: try f.single("default") == "true",
                requiredRole: .some(nonEmpty(try f.single("required_role"))))
            return pages.seeOtherLocal("/admin/scopes?notice=saved")
        }
        destructive("/admin/scopes/:name/delete", describe: { r, c, _ in
            let name = try consoleParameter(c, "name")
            let force = (try? HTTP.query(r).single("force")).flatMap { $0 } == "true"
            return ("Delete the scope \(name)", force
                ? "The scope is deleted and removed from every client that may request it."
                : "The scope is deleted (refused while clients may request it).", "/admin/scopes")
        }) { f, _, c, a in
            try await a.admin.deleteScope(name: try consoleParameter(c, "name"), force: try f.single("force") == "true")
            return pages.seeOtherLocal("/admin/scopes?notice=deleted")
        }

        get("/admin/groups") { r, _, a in try await groupsPage(r, a) }
        post("/admin/groups") { f, _, _, a in
            let g = try await a.admin.createGroup(name: try f.single("name") ?? "")
            return pages.seeOtherLocal("/admin/groups/" + g.name)
        }
        get("/admin/groups/:name") { r, c, a in try await groupPage(r, try consoleParameter(c, "name"), a) }
        post("/admin/groups/:name/members") { f, _, c, a in
            let g = try consoleParameter(c, "name")
            _ = try await a.admin.addMember(group: g, user: try f.single("user") ?? "", role: nonEmpty(try f.single("role")) ?? "member")
            return pages.seeOtherLocal("/admin/groups/\(g)?notice=saved")
        }
        destructive("/admin/groups/:name/delete", describe: { _, c, _ in
            let g = try consoleParameter(c, "name")
            return ("Delete the group \(g)", "The group and its memberships are deleted.", "/admin/groups/" + g)
        }) { _, _, c, a in
            try await a.admin.deleteGroup(name: try consoleParameter(c, "name"))
            return pages.seeOtherLocal("/admin/groups?notice=deleted")
        }

        get("/admin/services") { r, _, a in try await servicesPage(r, a) }
        post("/admin/services") { f, _, _, a in
            let s = try await a.admin.createService(name: try f.single("name") ?? "", permissionsURL: nonEmpty(try f.single("permissions_url")))
            return pages.seeOtherLocal("/admin/services/" + s.name)
        }
        get("/admin/services/:name") { r, c, a in try await servicePage(r, try consoleParameter(c, "name"), a) }
        post("/admin/services/:name/grants") { f, _, c, a in
            let s = try consoleParameter(c, "name")
            _ = try await a.admin.grantPermissions(service: s, user: try f.single("user") ?? "", permissions: words(try f.single("permissions")))
            return pages.seeOtherLocal("/admin/services/\(s)?notice=saved")
        }
        destructive("/admin/services/:name/grants/:user/revoke", describe: { _, c, a in
            let u = try await a.admin.resolveUser(try consoleParameter(c, "user"))
            let s = try consoleParameter(c, "name")
            return ("Revoke \(u.username)'s permissions", "\(u.username) loses every permission in \(s).", "/admin/services/" + s)
        }) { _, _, c, a in
            let s = try consoleParameter(c, "name")
            _ = try await a.admin.revokePermissions(service: s, user: try consoleParameter(c, "user"), permissions: nil)
            return pages.seeOtherLocal("/admin/services/\(s)?notice=revoked")
        }
        destructive("/admin/services/:name/delete", describe: { _, c, _ in
            let s = try consoleParameter(c, "name")
            return ("Delete the service \(s)", "The service and every permission granted in it are deleted.", "/admin/services/" + s)
        }) { _, _, c, a in
            try await a.admin.deleteService(name: try consoleParameter(c, "name"))
            return pages.seeOtherLocal("/admin/services?notice=deleted")
        }

        get("/admin/providers") { r, _, a in try await providersPage(r, a) }
        destructive("/admin/providers/:id/delete", describe: { _, c, _ in
            let id = try consoleParameter(c, "id")
            return ("Delete the provider \(id)", "“Sign in with \(id)” disappears; linked identities stay but cannot be used.", "/admin/providers")
        }) { _, _, c, a in
            let id = try consoleParameter(c, "id")
            guard !services.configuredProviderIDs.contains(id) else {
                throw AdminError.conflict("the provider '\(id)' comes from the config file: remove it there")
            }
            try await a.admin.deleteProvider(id: id)
            return pages.seeOtherLocal("/admin/providers?notice=deleted")
        }

        get("/admin/keys") { r, _, a in try await keysPage(r, a) }
        post("/admin/keys/rotate") { f, _, _, a in
            _ = try await a.admin.rotateKey(algorithm: nonEmpty(try f.single("algorithm")), immediately: try f.single("immediately") == "true")
            return pages.seeOtherLocal("/admin/keys?notice=rotated")
        }
        destructive("/admin/keys/:kid/revoke", describe: { _, c, _ in
            let kid = try consoleParameter(c, "kid")
            return ("Revoke the key \(kid)", "Emergency: the key leaves the key set at once and every token it signed is refused. A new key signs if this one was signing.", "/admin/keys")
        }) { _, _, c, a in
            _ = try await a.admin.revokeKey(kid: try consoleParameter(c, "kid"))
            return pages.seeOtherLocal("/admin/keys?notice=revoked")
        }

        get("/admin/events") { r, _, a in try await eventsPage(r, a) }
        post("/admin/events/:id/retry") { _, _, c, a in
            _ = try await a.admin.retryEvent(id: try consoleParameter(c, "id"))
            return pages.seeOtherLocal("/admin/events?notice=retried")
        }
        get("/admin/audit") { r, _, a in try await auditPage(r, a) }
    }

    // MARK: plumbing

    /// Signed in (else the sign-in page, returning here), holding `admin` or `admin:read` (else 403).
    enum ConsoleGate {
        case allowed(ConsoleUser)
        case refused(Response)
    }

    func consoleUser(_ request: Request, write: Bool) async throws -> ConsoleGate {
        guard let (_, user) = try await currentSession(request) else {
            let target = request.uri.path + (request.method == .get ? (request.uri.query.map { "?" + $0 } ?? "") : "")
            return .refused(toLogin(returnTo: target.hasPrefix(pages.prefix) ? String(target.dropFirst(pages.prefix.count)) : target))
        }
        let held = Set(try await services.storage.permissions(service: ScopeRecord.adminService, userID: user.id))
        let canWrite = held.contains("admin")
        guard canWrite || (!write && held.contains("admin:read")) else {
            return .refused(pages.error(
                write && held.contains("admin:read") ? Administration.consoleReadOnly : Administration.consoleNotAllowed))
        }
        return .allowed(ConsoleUser(user: user, canWrite: canWrite, admin: services.administration(.user(user.id))))
    }

    func consolePage(
        _ request: Request, _ context: GatehouseRequestContext, write: Bool, _ body: (ConsoleUser) async throws -> Response
    ) async -> Response {
        await page("admin") {
            switch try await consoleUser(request, write: write) {
            case .refused(let response): return response
            case .allowed(let admin):
                do { return try await body(admin) } catch let e as AdminError {
                    return consoleError(e.description, status: e.isNotFound ? .notFound : .conflict, request, admin)
                } catch let e as Administration.ValidationError {
                    return consoleError(e.description, status: .unprocessableContent, request, admin)
                }
            }
        }
    }

    func consoleForm(
        _ request: Request, _ context: GatehouseRequestContext,
        _ body: @escaping (RequestParameters, Request, GatehouseRequestContext, ConsoleUser) async throws -> Response
    ) async -> Response {
        await formPage("admin", request) { form, request in
            switch try await consoleUser(request, write: true) {
            case .refused(let response): return response
            case .allowed(let admin):
                do { return try await body(form, request, context, admin) } catch let e as AdminError {
                    return consoleError(e.description, status: e.isNotFound ? .notFound : .conflict, request, admin)
                } catch let e as Administration.ValidationError {
                    return consoleError(e.description, status: .unprocessableContent, request, admin)
                }
            }
        }
    }

    /// A refused change: the message on a page with a way back.
    func consoleError(_ message: String, status: HTTPResponse.Status, _ request: Request, _ admin: ConsoleUser) -> Response {
        var page = ConsolePage(status == .notFound ? "Not found" : "The change was not made")
        page.problem = message
        let back = request.uri.path.hasPrefix(pages.prefix) ? String(request.uri.path.dropFirst(pages.prefix.count)) : request.uri.path
        let parent = back.split(separator: "/").prefix(2).joined(separator: "/")
        page.add(.table(nil, ConsoleTable(columns: ["Back"], rows: [.init(cells: [.init(text: "Back", href: "/" + parent)])])))
        var response = render(page, request, admin, current: "/" + parent)
        response.status = status
        return response
    }

    func render(_ page: ConsolePage, _ request: Request, _ admin: ConsoleUser, current: String) -> Response {
        var page = page
        if page.notice == nil, let notice = (try? HTTP.query(request).single("notice")).flatMap({ $0 }) {
            page.notice = Self.notices[notice]
        }
        let csrf = CSRF.token(request, cookies: cookies)
        let values = page.values(
            csrf: csrf.token, nav: Self.consoleNav, current: current, adminName: admin.user.username, readOnly: !admin.canWrite)
        return withCookie(pages.render("admin", values), csrf.setCookie)
    }

    static let notices = [
        "saved": "Saved.", "deleted": "Deleted.", "disabled": "The user is disabled and signed out everywhere.",
        "enabled": "The user is enabled.", "password": "The password is changed; the user's sessions ended.",
        "signed_out": "The user is signed out everywhere.", "session_ended": "The session ended.", "unlinked": "The identity is unlinked.",
        "revoked": "Revoked.", "removed": "Removed.", "rotated": "A new signing key is published.", "retried": "The delivery is due again.",
    ]

    /// POST/Redirect/GET for a new secret: it travels in a short-lived cookie scoped to the page that shows it.
    func showSecretOnce(client: ClientRecord, secret: String?) -> Response {
        guard let secret else { return pages.seeOtherLocal("/admin/clients/\(client.id)?notice=saved") }
        return withCookie(
            pages.seeOtherLocal("/admin/clients/secret"),
            cookies.oneTime(
                secretCookieName, path: pages.prefix + "/admin/clients/secret",
                [("client_id", client.id), ("name", client.name), ("secret", secret)]))
    }

    func consoleParameter(_ context: GatehouseRequestContext, _ name: String) throws -> String {
        guard let raw = context.parameters.get(name), let value = raw.removingPercentEncoding, !value.isEmpty else {
            throw AdminError.notFound("Not found.")
        }
        return value
    }

    func nonEmpty(_ value: String?) -> String? {
        guard let v = value?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { return nil }
        return v
    }
    func lines(_ value: String?) -> [String] {
        (value ?? "").split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
    func words(_ value: String?) -> [String] {
        (value ?? "").split(whereSeparator: { $0 == " " || $0 == "," || $0.isNewline }).map(String.init)
    }
    static func path(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? segment
    }
}

extension AdminError {
    var isNotFound: Bool {
        if case .notFound = self { return true }
        return false
    }
}
