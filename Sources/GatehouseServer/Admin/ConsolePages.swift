import Foundation
import GatehouseCore
import Hummingbird

// The console's pages: each reads through `Administration` and lays out facts, tables and forms. Forms and
// action buttons appear only for administrators who may change things (`admin`, not `admin:read`).
extension BrowserRoutes {
    typealias Table = ConsoleTable
    typealias Form = ConsoleForm

    func dashboard(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let stats = try await a.admin.stats()
        var page = ConsolePage("Dashboard")
        page.add(.facts("Now", [
            ("Users", "\(stats.users) (\(stats.disabled_users) disabled)", code: false), ("Clients", "\(stats.clients)", code: false),
            ("Active sessions", "\(stats.active_sessions)", code: false),
            ("Webhook deliveries", "\(stats.pending_events) pending, \(stats.failed_events) failed", code: false),
        ]))
        page.add(.facts("Last hour / last day", [
            ("Tokens issued", "\(stats.last_hour.tokens_issued) / \(stats.last_day.tokens_issued)", code: false),
            ("Sign-ins", "\(stats.last_hour.signins) / \(stats.last_day.signins)", code: false),
            ("Sign-in failures", "\(stats.last_hour.signin_failures) / \(stats.last_day.signin_failures)", code: false),
        ]))
        let failures = try await a.admin.auditEvents(AuditQuery(action: AuditAction.signInFailed, limit: 10), cursor: nil)
        page.add(.table("Recent sign-in failures", Table(
            columns: ["Time", "Username", "Address"],
            rows: failures.items.map { .init(cells: [.init(text: $0.time.consoleTime), .init(text: $0.detail["username"] ?? ""), .init(text: $0.client_address ?? "")]) },
            empty: "No failed sign-ins.", next: failures.next_cursor.map { _ in "/admin/audit?action=\(AuditAction.signInFailed)" }), id: "failures"))
        var deliveries = try await a.admin.events(status: .failed, cursor: nil, limit: 10).items
        deliveries += try await a.admin.events(status: .pending, cursor: nil, limit: 10).items
        page.add(.table("Pending and failed webhook deliveries", eventsTable(deliveries, a), id: "deliveries"))
        return render(page, request, a, current: "/admin")
    }

    // MARK: users

    func usersPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let q = try HTTP.query(request)
        let search = nonEmpty(try q.single("query"))
        let disabled: Bool? = try q.single("disabled").flatMap { $0 == "true" ? true : $0 == "false" ? false : nil }
        let list = try await a.admin.listUsers(UserQuery(prefix: search, disabled: disabled, limit: 25), cursor: nonEmpty(try q.single("cursor")))
        var page = ConsolePage("Users")
        page.add(.form(nil, Form(
            action: "/admin/users", submit: "Search", method: "get",
            fields: [
                .init(name: "query", label: "Username, email or name starts with", value: search ?? ""),
                .init(name: "disabled", label: "Status", kind: .select([("", "All"), ("false", "Active"), ("true", "Disabled")]),
                      value: disabled.map { $0 ? "true" : "false" } ?? ""),
            ], id: "user-search", inline: true)))
        var next: String?
        if let cursor = list.next_cursor {
            next = "/admin/users?" + FormEncoding.encode(
                [("query", search ?? ""), ("disabled", disabled.map { $0 ? "true" : "false" } ?? ""), ("cursor", cursor)])
        }
        page.add(.table(nil, Table(
            columns: ["Username", "Email", "Name", "Status"],
            rows: list.items.map { u in
                .init(cells: [.init(text: u.username, href: "/admin/users/" + u.id), .init(text: u.email ?? ""), .init(text: u.name ?? ""),
                              .init(text: u.disabled ? "disabled" : "active")])
            }, empty: "No users match.", next: next, id: "users")))
        if a.canWrite {
            page.add(.form("New user", Form(
                action: "/admin/users", submit: "Create user",
                fields: [
                    .init(name: "username", label: "Username", required: true, autocomplete: "off"),
                    .init(name: "email", label: "Email", kind: .email),
                    .init(name: "email_verified", label: "The email address is verified", kind: .checkbox),
                    .init(name: "name", label: "Name"),
                    .init(name: "password", label: "Password (8 to 72 bytes; empty: none)", kind: .password, autocomplete: "new-password"),
                ], id: "new-user")))
        }
        return render(page, request, a, current: "/admin/users")
    }

    func userPage(_ request: Request, _ id: String, _ a: ConsoleUser) async throws -> Response {
        let user = try await a.admin.user(id: id)
        let u = UserView(user)
        let base = "/admin/users/" + Self.path(id)
        var page = ConsolePage(u.username, lead: u.disabled ? "This account is disabled." : nil)
        page.add(.facts(nil, [
            ("ID (sub)", u.id, code: true), ("Status", u.disabled ? "disabled since \(u.disabled_at?.consoleTime ?? "")" : "active", code: false),
            ("Password", u.has_password ? (u.password_reset_required ? "set; must be changed at the next sign-in" : "set") : "none", code: false),
            ("Created", u.created_at.consoleTime, code: false), ("Updated", u.updated_at.consoleTime, code: false),
        ]))
        if a.canWrite {
            page.add(.table("Actions", Table(columns: ["Action"], rows: [
                .init(cells: [.init(text: u.disabled ? "The user cannot sign in." : "The user can sign in.")], actions: [
                    u.disabled ? .init(label: "Enable", post: base + "/enable") : .init(label: "Disable", link: base + "/disable", danger: true),
                    .init(label: "Delete", link: base + "/delete", danger: true),
                ]),
            ]), id: "user-actions"))
            page.add(.form("Profile", Form(
                action: base, submit: "Save",
                fields: [
                    .init(name: "username", label: "Username", value: u.username, required: true),
                    .init(name: "email", label: "Email", kind: .email, value: u.email ?? ""),
                    .init(name: "email_verified", label: "The email address is verified", kind: .checkbox, checked: u.email_verified),
                    .init(name: "name", label: "Name", value: u.name ?? ""),
                    .init(name: "given_name", label: "Given name", value: u.given_name ?? ""),
                    .init(name: "family_name", label: "Family name", value: u.family_name ?? ""),
                    .init(name: "picture", label: "Picture URL", kind: .url, value: u.picture ?? ""),
                    .init(name: "phone_number", label: "Phone number", value: u.phone_number ?? ""),
                    .init(name: "address", label: "Postal address", kind: .textarea, value: u.address ?? ""),
                ], id: "profile-form")))
            page.add(.form("Password", Form(
                action: base + "/password", submit: "Set password",
                fields: [
                    .init(name: "password", label: "New password (empty: keep the current one)", kind: .password, autocomplete: "new-password"),
                    .init(name: "require_reset", label: "The user must choose a new password at the next sign-in", kind: .checkbox),
                ], id: "password-form")))
        } else {
            page.add(.facts("Profile", [
                ("Username", u.username, code: false), ("Email", (u.email ?? "–") + (u.email_verified ? " (verified)" : ""), code: false),
                ("Name", u.name ?? "–", code: false),
            ]))
        }
        let sessions = try await a.admin.sessions(userID: id)
        page.add(.table("Sessions", Table(
            columns: ["Session", "Signed in", "Expires"],
            rows: sessions.map { s in
                .init(cells: [.init(text: s.id, code: true), .init(text: s.auth_time.consoleTime), .init(text: s.expires_at.consoleTime)],
                      actions: a.canWrite ? [.init(label: "End", link: base + "/sessions/" + Self.path(s.id) + "/end", danger: true)] : [])
            } + (a.canWrite && sessions.count > 1
                ? [.init(cells: [.init(text: "All sessions"), .init(text: ""), .init(text: "")],
                         actions: [.init(label: "Sign out everywhere", link: base + "/sessions/end", danger: true)])] : []),
            empty: "No active sessions.", id: "sessions")))
        let grants = try await a.admin.grants(userID: id)
        page.add(.table("Apps with access", Table(
            columns: ["Client", "Scope", "Since"],
            rows: grants.map { g in
                .init(cells: [.init(text: g.client_id, href: "/admin/clients/" + Self.path(g.client_id)), .init(text: g.scope), .init(text: g.created_at.consoleTime)],
                      actions: a.canWrite ? [.init(label: "Revoke", link: "/admin/grants/" + Self.path(g.id) + "/revoke", danger: true)] : [])
            }, empty: "No app holds a token of this user.", id: "grants")))
        let identities = try await a.admin.identities(userID: id)
        page.add(.table("Linked identities", Table(
            columns: ["Provider", "Subject", "Username", "Email"],
            rows: identities.map { i in
                .init(cells: [.init(text: i.provider), .init(text: i.subject, code: true), .init(text: i.username ?? ""), .init(text: i.email ?? "")],
                      actions: a.canWrite ? [.init(label: "Unlink", link: base + "/identities/" + Self.path(i.provider) + "/" + Self.path(i.subject) + "/unlink", danger: true)] : [])
            }, empty: "No linked identities.", id: "identities")))
        let memberships = try await a.admin.memberships(userID: id)
        page.add(.table("Groups", Table(
            columns: ["Group", "Role"],
            rows: memberships.map { m in
                .init(cells: [.init(text: m.group, href: "/admin/groups/" + Self.path(m.group)), .init(text: m.role)],
                      actions: a.canWrite ? [.init(label: "Remove", link: "/admin/groups/" + Self.path(m.group) + "/members/" + Self.path(id) + "/remove", danger: true)] : [])
            }, empty: "Not a member of any group.", id: "groups")))
        if a.canWrite {
            page.add(.form(nil, Form(
                action: base + "/groups", submit: "Add to group",
                fields: [.init(name: "group", label: "Group", required: true), .init(name: "role", label: "Role", value: "member")],
                id: "add-group", inline: true)))
        }
        return render(page, request, a, current: "/admin/users")
    }

    // MARK: clients

    func clientsPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let q = try HTTP.query(request)
        let list = try await a.admin.listClients(cursor: nonEmpty(try q.single("cursor")), limit: 50)
        var page = ConsolePage("Clients")
        page.add(.table(nil, Table(
            columns: ["Name", "Client ID", "Type", "Grant types"],
            rows: list.items.map { c in
                .init(cells: [.init(text: c.name, href: "/admin/clients/" + Self.path(c.client_id)), .init(text: c.client_id, code: true),
                              .init(text: c.public ? "public" : "confidential"), .init(text: c.grant_types.joined(separator: " "))])
            }, empty: "No clients yet.", next: list.next_cursor.map { "/admin/clients?cursor=" + $0 }, id: "clients")))
        if a.canWrite {
            page.add(.form("New client", Form(
                action: "/admin/clients", submit: "Create client",
                fields: [
                    .init(name: "name", label: "Name", required: true),
                    .init(name: "redirect_uris", label: "Redirect URIs (one per line)", kind: .textarea),
                    .init(name: "grant_types", label: "Grant types (space-separated; empty: authorization_code refresh_token)"),
                    .init(name: "scope", label: "Scopes (space-separated; empty: the default scopes)"),
                    .init(name: "post_logout_redirect_uris", label: "Post-logout redirect URIs (one per line)", kind: .textarea),
                    .init(name: "public", label: "Public client (no secret: native and browser apps)", kind: .checkbox),
                    .init(name: "skip_consent", label: "First-party: skip the consent page", kind: .checkbox,
                          help: "Only for confidential clients: a public client cannot prove who it is."),
                ], id: "new-client")))
        }
        return render(page, request, a, current: "/admin/clients")
    }

    func clientPage(_ request: Request, _ id: String, _ a: ConsoleUser) async throws -> Response {
        let c = ClientView(try await a.admin.client(id: id), now: a.admin.now)
        let base = "/admin/clients/" + Self.path(id)
        var page = ConsolePage(c.name)
        var facts: [(String, String, code: Bool)] = [
            ("Client ID", c.client_id, code: true), ("Type", c.public ? "public" : "confidential", code: false),
            ("Created", c.created_at.consoleTime, code: false),
        ]
        if let until = c.previous_secret_expires_at { facts.append(("Previous secret", "valid until \(until.consoleTime)", code: false)) }
        page.add(.facts(nil, facts))
        if a.canWrite {
            page.add(.form("Registration", Form(
                action: base, submit: "Save",
                fields: [
                    .init(name: "name", label: "Name", value: c.name, required: true),
                    .init(name: "redirect_uris", label: "Redirect URIs (one per line)", kind: .textarea, value: c.redirect_uris.joined(separator: "\n")),
                    .init(name: "grant_types", label: "Grant types (space-separated)", value: c.grant_types.joined(separator: " ")),
                    .init(name: "scope", label: "Scopes (space-separated)", value: c.scope),
                    .init(name: "default_scope", label: "Default scope (space-separated)", value: c.default_scope),
                    .init(name: "post_logout_redirect_uris", label: "Post-logout redirect URIs (one per line)", kind: .textarea,
                          value: c.post_logout_redirect_uris.joined(separator: "\n")),
                ] + (c.public ? [] : [
                    .init(name: "skip_consent", label: "First-party: skip the consent page", kind: .checkbox, checked: c.skip_consent),
                ]), id: "client-form")))
            var actions: [ConsoleTable.Action] = [.init(label: "Delete", link: base + "/delete", danger: true)]
            if !c.public {
                actions.insert(.init(label: "Rotate secret (old one keeps working 1 h)", link: base + "/rotate?grace=3600"), at: 0)
                actions.insert(.init(label: "Rotate secret now", link: base + "/rotate", danger: true), at: 0)
            }
            page.add(.table("Actions", Table(columns: ["Client"], rows: [.init(cells: [.init(text: c.name)], actions: actions)]), id: "client-actions"))
        } else {
            page.add(.facts("Registration", [
                ("Redirect URIs", c.redirect_uris.joined(separator: " "), code: false), ("Grant types", c.grant_types.joined(separator: " "), code: false),
                ("Scopes", c.scope, code: false),
            ]))
        }
        return render(page, request, a, current: "/admin/clients")
    }

    // MARK: scopes, groups, services, providers

    func scopesPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let scopes = try await services.storage.listScopes().map(ScopeView.init)
        var page = ConsolePage("Scopes")
        page.add(.table(nil, Table(
            columns: ["Scope", "Description", "Default", "Needs role"],
            rows: scopes.map { s in
                .init(cells: [.init(text: s.name, href: "/admin/scopes/" + Self.path(s.name)), .init(text: s.description),
                              .init(text: s.default ? "yes" : ""), .init(text: s.required_role ?? "")],
                      actions: a.canWrite && !s.built_in
                        ? [.init(label: "Delete", link: "/admin/scopes/\(Self.path(s.name))/delete", danger: true),
                           .init(label: "Delete from clients too", link: "/admin/scopes/\(Self.path(s.name))/delete?force=true", danger: true)] : [])
            }, id: "scopes")))
        if a.canWrite {
            page.add(.form("New scope", Form(
                action: "/admin/scopes", submit: "Create scope",
                fields: [
                    .init(name: "name", label: "Name", required: true), .init(name: "description", label: "Description shown on the consent page"),
                    .init(name: "default", label: "Granted by default to clients that register it", kind: .checkbox),
                    .init(name: "required_role", label: "Only for users holding this role in some group"),
                ], id: "new-scope")))
        }
        return render(page, request, a, current: "/admin/scopes")
    }

    func scopePage(_ request: Request, _ name: String, _ a: ConsoleUser) async throws -> Response {
        let s = ScopeView(try await a.admin.scope(name: name))
        var page = ConsolePage("Scope \(s.name)", lead: s.built_in ? "A built-in scope." : nil)
        if a.canWrite {
            page.add(.form(nil, Form(
                action: "/admin/scopes/" + Self.path(name), submit: "Save",
                fields: [
                    .init(name: "description", label: "Description", value: s.description, required: true),
                    .init(name: "default", label: "Granted by default", kind: .checkbox, checked: s.default),
                    .init(name: "required_role", label: "Only for users holding this role", value: s.required_role ?? ""),
                ], cancel: "/admin/scopes", id: "scope-form")))
        } else {
            page.add(.facts(nil, [("Description", s.description, code: false), ("Default", s.default ? "yes" : "no", code: false)]))
        }
        return render(page, request, a, current: "/admin/scopes")
    }

    func groupsPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let groups = try await a.admin.listGroups()
        var page = ConsolePage("Groups")
        page.add(.table(nil, Table(
            columns: ["Group", "Members"],
            rows: groups.map { .init(cells: [.init(text: $0.name, href: "/admin/groups/" + Self.path($0.name)), .init(text: "\($0.members)")]) },
            empty: "No groups yet.", id: "groups")))
        if a.canWrite {
            page.add(.form("New group", Form(action: "/admin/groups", submit: "Create group", fields: [.init(name: "name", label: "Name", required: true)], id: "new-group")))
        }
        return render(page, request, a, current: "/admin/groups")
    }

    func groupPage(_ request: Request, _ name: String, _ a: ConsoleUser) async throws -> Response {
        let members = try await a.admin.members(group: name)
        let base = "/admin/groups/" + Self.path(name)
        var page = ConsolePage("Group \(name)")
        page.add(.table("Members", Table(
            columns: ["User", "Role"],
            rows: members.map { m in
                .init(cells: [.init(text: m.username, href: "/admin/users/" + Self.path(m.user_id)), .init(text: m.role)],
                      actions: a.canWrite ? [.init(label: "Remove", link: base + "/members/" + Self.path(m.user_id) + "/remove", danger: true)] : [])
            }, empty: "No members.", id: "members")))
        if a.canWrite {
            page.add(.form("Add a member", Form(
                action: base + "/members", submit: "Add",
                fields: [.init(name: "user", label: "Username or user id", required: true), .init(name: "role", label: "Role", value: "member")],
                id: "add-member")))
            page.add(.table(nil, Table(columns: ["Group"], rows: [.init(cells: [.init(text: name)], actions: [.init(label: "Delete group", link: base + "/delete", danger: true)])])))
        }
        return render(page, request, a, current: "/admin/groups")
    }

    func servicesPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let list = try await services.storage.listServices().map(ServiceView.init)
        var page = ConsolePage("Services", lead: "Permissions users hold in each service. The service gatehouse grants admin, admin:read and apps:create.")
        page.add(.table(nil, Table(
            columns: ["Service", "Permissions URL"],
            rows: list.map { .init(cells: [.init(text: $0.name, href: "/admin/services/" + Self.path($0.name)), .init(text: $0.permissions_url ?? "")]) },
            id: "services")))
        if a.canWrite {
            page.add(.form("New service", Form(
                action: "/admin/services", submit: "Create service",
                fields: [.init(name: "name", label: "Name", required: true),
                         .init(name: "permissions_url", label: "Permissions URL (https; empty: permissions granted here)", kind: .url)],
                id: "new-service")))
        }
        return render(page, request, a, current: "/admin/services")
    }

    func servicePage(_ request: Request, _ name: String, _ a: ConsoleUser) async throws -> Response {
        let grants = try await a.admin.serviceGrants(service: name)
        let base = "/admin/services/" + Self.path(name)
        var page = ConsolePage("Service \(name)")
        page.add(.table("Permissions", Table(
            columns: ["User", "Permissions"],
            rows: grants.map { g in
                .init(cells: [.init(text: g.username, href: "/admin/users/" + Self.path(g.user_id)), .init(text: g.permissions.joined(separator: " "))],
                      actions: a.canWrite ? [.init(label: "Revoke all", link: base + "/grants/" + Self.path(g.user_id) + "/revoke", danger: true)] : [])
            }, empty: "Nobody holds a permission here.", id: "permissions")))
        if a.canWrite {
            page.add(.form("Grant permissions", Form(
                action: base + "/grants", submit: "Grant",
                fields: [.init(name: "user", label: "Username or user id", required: true),
                         .init(name: "permissions", label: "Permissions (space-separated)", required: true)],
                id: "grant-form")))
            if name != ScopeRecord.adminService {
                page.add(.table(nil, Table(columns: ["Service"], rows: [.init(cells: [.init(text: name)], actions: [.init(label: "Delete service", link: base + "/delete", danger: true)])])))
            }
        }
        return render(page, request, a, current: "/admin/services")
    }

    func providersPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let providers = try await services.providers()
        var page = ConsolePage("Providers", lead: "Upstream sign-in (“Sign in with …”). Providers of the config file are changed there.")
        page.add(.table(nil, Table(
            columns: ["Provider", "Kind", "Client ID", "Source"],
            rows: providers.map { p in
                let configured = services.configuredProviderIDs.contains(p.id)
                return .init(cells: [.init(text: "\(p.name) (\(p.id))"), .init(text: p.kind.rawValue), .init(text: p.clientID, code: true),
                                     .init(text: configured ? "config file" : "database")],
                             actions: a.canWrite && !configured ? [.init(label: "Delete", link: "/admin/providers/\(Self.path(p.id))/delete", danger: true)] : [])
            }, empty: "No providers. Add one with `gatehouse providers add`.", id: "providers")))
        return render(page, request, a, current: "/admin/providers")
    }

    // MARK: keys, webhooks, audit

    func keysPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let keys = try await a.admin.keys()
        var page = ConsolePage("Signing keys", lead: "A rotated-in key is published first and signs after the key reload interval plus a minute.")
        page.add(.table(nil, Table(
            columns: ["Key ID", "Algorithm", "Status", "Created"],
            rows: keys.map { k in
                .init(cells: [.init(text: k.kid, code: true), .init(text: k.algorithm), .init(text: k.status), .init(text: k.created_at.consoleTime)],
                      actions: a.canWrite && !["revoked", "retired"].contains(k.status)
                        ? [.init(label: "Revoke", link: "/admin/keys/\(Self.path(k.kid))/revoke", danger: true)] : [])
            }, id: "keys")))
        if a.canWrite {
            page.add(.form("Rotate", Form(
                action: "/admin/keys/rotate", submit: "Rotate signing key",
                fields: [
                    .init(name: "algorithm", label: "Algorithm", kind: .select([("", "Configured (\(services.settings.signingAlgorithm.rawValue))"),
                        ("ES256", "ES256"), ("ES384", "ES384"), ("RS256", "RS256"), ("PS256", "PS256"), ("EdDSA", "EdDSA")])),
                    .init(name: "immediately", label: "Sign with it at once (verifiers may not have fetched it yet)", kind: .checkbox),
                ], id: "rotate-form")))
        }
        return render(page, request, a, current: "/admin/keys")
    }

    func eventsTable(_ events: [EventView], _ a: ConsoleUser) -> Table {
        Table(
            columns: ["Event", "Hook", "Status", "Attempts", "Last error", "Created"],
            rows: events.map { e in
                .init(cells: [.init(text: e.event), .init(text: e.url, code: true), .init(text: e.status), .init(text: "\(e.attempts)"),
                              .init(text: e.last_error ?? ""), .init(text: e.created_at.consoleTime)],
                      actions: a.canWrite && e.status != "delivered" ? [.init(label: "Retry now", post: "/admin/events/\(Self.path(e.id))/retry")] : [])
            }, empty: "No deliveries.", id: "events")
    }

    func eventsPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let q = try HTTP.query(request)
        let status = try q.single("status").flatMap(OutboxStatus.init(rawValue:))
        let list = try await a.admin.events(status: status, cursor: nonEmpty(try q.single("cursor")), limit: 50)
        var page = ConsolePage("Webhook deliveries")
        page.add(.form(nil, Form(
            action: "/admin/events", submit: "Show", method: "get",
            fields: [.init(name: "status", label: "Status", kind: .select([("", "All"), ("pending", "Pending"), ("failed", "Failed"), ("delivered", "Delivered")]),
                           value: status?.rawValue ?? "")], id: "event-filter", inline: true)))
        var table = eventsTable(list.items, a)
        table.next = list.next_cursor.map { "/admin/events?" + FormEncoding.encode([("status", status?.rawValue ?? ""), ("cursor", $0)]) }
        page.add(.table(nil, table))
        return render(page, request, a, current: "/admin/events")
    }

    func auditPage(_ request: Request, _ a: ConsoleUser) async throws -> Response {
        let q = try HTTP.query(request)
        let actor = nonEmpty(try q.single("actor")), action = nonEmpty(try q.single("action")), target = nonEmpty(try q.single("target"))
        let sinceText = nonEmpty(try q.single("since")), untilText = nonEmpty(try q.single("until"))
        let day = DateFormatter()
        day.locale = Locale(identifier: "en_US_POSIX")
        day.timeZone = TimeZone(identifier: "UTC")
        day.dateFormat = "yyyy-MM-dd"
        let since = sinceText.flatMap { day.date(from: $0) }.map { Int64($0.timeIntervalSince1970) }
        let until = untilText.flatMap { day.date(from: $0) }.map { Int64($0.timeIntervalSince1970) + 86_399 }
        let list = try await a.admin.auditEvents(
            AuditQuery(actor: actor, action: action, target: target, since: since, until: until, limit: 50), cursor: nonEmpty(try q.single("cursor")))
        var page = ConsolePage("Audit log", lead: "Every change made through the API, the console or the CLI, and every security event. Times are UTC.")
        page.add(.form(nil, Form(
            action: "/admin/audit", submit: "Filter", method: "get",
            fields: [
                .init(name: "actor", label: "Actor", value: actor ?? "", help: "user:<id>, client:<id>, cli, anonymous"),
                .init(name: "action", label: "Action", value: action ?? "", help: "e.g. user.disabled, signin.failed"),
                .init(name: "target", label: "Target", value: target ?? ""),
                .init(name: "since", label: "From (day)", kind: .date, value: sinceText ?? ""),
                .init(name: "until", label: "To (day)", kind: .date, value: untilText ?? ""),
            ], id: "audit-filter", inline: true)))
        let next = list.next_cursor.map { c in
            "/admin/audit?" + FormEncoding.encode([("actor", actor ?? ""), ("action", action ?? ""), ("target", target ?? ""),
                                                   ("since", sinceText ?? ""), ("until", untilText ?? ""), ("cursor", c)])
        }
        page.add(.table(nil, Table(
            columns: ["Time", "Action", "Actor", "Target", "Address", "Detail"],
            rows: list.items.map { e in
                .init(cells: [
                    .init(text: e.time.consoleTime), .init(text: e.action), .init(text: e.actor, code: true), .init(text: e.target ?? "", code: true),
                    .init(text: e.client_address ?? ""), .init(text: e.detail.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")),
                ])
            }, empty: "No events match.", next: next, id: "audit")))
        return render(page, request, a, current: "/admin/audit")
    }
}
