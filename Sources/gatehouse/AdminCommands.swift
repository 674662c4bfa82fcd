import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer

extension Administration {
    /// Administration as the CLI: changes are audited with actor `cli` (and reach hooks that list `audit.*`).
    static func cli(_ store: SQLStore, _ config: GatehouseConfiguration) -> Administration {
        let events = Events(storage: store, hooks: config.webhooks, clock: .system)
        return Administration(
            storage: store, audit: AuditLog(store: store, events: events, clock: .system), actor: .cli,
            settings: config.settings)
    }
}

/// Reads a password from standard input (trailing newlines removed).
func readPasswordFromStandardInput() -> String {
    var text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
    return text
}

extension UserView {
    var line: String {
        "\(id)  \(username)\(email.map { "  <\($0)>" } ?? "")\(disabled ? "  [disabled]" : "")"
    }
    var text: String {
        var lines = ["id:        \(id)", "username:  \(username)"]
        if let email { lines.append("email:     \(email)\(email_verified ? " (verified)" : "")") }
        if let name { lines.append("name:      \(name)") }
        lines.append("password:  \(has_password ? "set" : "none")\(password_reset_required ? ", must be changed at next sign-in" : "")")
        lines.append("status:    \(disabled ? "disabled" : "active")")
        return lines.joined(separator: "\n")
    }
}

/// A user by id or username.
struct UserArgument: ParsableArguments {
    @Argument(help: "User id or username.") var user: String
}

extension Users {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users (username order), with search and filters.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Prefix of the username, email address or name (case-insensitive).") var query: String?
        @Option(help: "Only disabled (true) or only active (false) users.") var disabled: Bool?
        @Option(help: "Only members of this group.") var group: String?
        @Option(help: "At most this many (1–200).") var limit: Int = 50
        @Option(help: "The next_cursor of the previous page.") var cursor: String?
        func run() async throws {
            try await common.withStore { store, config in
                let page = try await Administration.cli(store, config).listUsers(
                    UserQuery(prefix: query, disabled: disabled, group: group, limit: limit), cursor: cursor)
                try common.print(
                    json: page,
                    text: (page.items.isEmpty ? "no users" : page.items.map(\.line).joined(separator: "\n"))
                        + (page.next_cursor.map { "\nmore: --cursor \($0)" } ?? ""))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one user.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var target: UserArgument
        func run() async throws {
            try await common.withStore { store, config in
                let user = UserView(try await Administration.cli(store, config).resolveUser(target.user))
                try common.print(json: user, text: user.text)
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's username, email or profile.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var target: UserArgument
        @Option(help: "New username.") var username: String?
        @Option(help: "New email address (\"\" removes it; a changed address is no longer verified).") var email: String?
        @Option(help: "Display name (\"\" removes it).") var name: String?
        @Option(help: "Given name (\"\" removes it).") var givenName: String?
        @Option(help: "Family name (\"\" removes it).") var familyName: String?
        @Option(help: "Picture URL (\"\" removes it).") var picture: String?
        @Option(help: "Phone number (\"\" removes it).") var phone: String?
        @Option(help: "Postal address (\"\" removes it).") var address: String?
        @Option(help: "Whether the email address is verified (true or false).") var emailVerified: Bool?
        func run() async throws {
            func clearable(_ v: String?) -> String?? { v.map { $0.isEmpty ? nil : $0 } }
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                var patch = UserPatch()
                patch.username = username
                patch.email = clearable(email)
                patch.name = clearable(name)
                patch.givenName = clearable(givenName)
                patch.familyName = clearable(familyName)
                patch.picture = clearable(picture)
                patch.phoneNumber = clearable(phone)
                patch.address = clearable(address)
                patch.emailVerified = emailVerified
                let user = UserView(try await admin.updateUser(id: try await admin.resolveUser(target.user).id, patch))
                try common.print(json: user, text: "updated user \(user.username)\n" + user.text)
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a user: no sign-in, sessions end, refresh and access tokens stop working at once.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var target: UserArgument
        func run() async throws {
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                let user = UserView(try await admin.disableUser(id: try await admin.resolveUser(target.user).id))
                try common.print(json: user, text: "disabled user \(user.username)")
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user (they sign in again).")
        @OptionGroup var common: CommonOptions
        @OptionGroup var target: UserArgument
        func run() async throws {
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                let user = UserView(try await admin.enableUser(id: try await admin.resolveUser(target.user).id))
                try common.print(json: user, text: "enabled user \(user.username)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a user with their sessions, grants, identities and memberships (the id is never reused).")
        @OptionGroup var common: CommonOptions
        @OptionGroup var target: UserArgument
        func run() async throws {
            struct Out: Encodable { let deleted: String; let username: String }
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                let user = try await admin.resolveUser(target.user)
                try await admin.deleteUser(id: user.id)
                try common.print(json: Out(deleted: user.id, username: user.username), text: "deleted user \(user.username) (id \(user.id))")
            }
        }
    }

    struct SetPassword: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-password",
            abstract: "Set a user's password (read from standard input), or require a new one at the next sign-in.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var target: UserArgument
        @Flag(help: "Read the new password from standard input.") var passwordStdin = false
        @Flag(help: "The user must choose a new password when they next sign in.") var requireReset = false
        func run() async throws {
            guard passwordStdin || requireReset else { throw CLIError("give --password-stdin or --require-reset") }
            let password = passwordStdin ? readPasswordFromStandardInput() : nil
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                let user = UserView(try await admin.setPassword(
                    userID: try await admin.resolveUser(target.user).id, password: password, requireReset: requireReset))
                try common.print(
                    json: user,
                    text: password != nil ? "set the password of \(user.username); their sessions ended"
                        : "\(user.username) must choose a new password at the next sign-in; their sessions ended")
            }
        }
    }
}

extension Clients {
    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a client's registration (each option replaces that field; the secret stays).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "client_id") var id: String
        @Option(help: "Display name.") var name: String?
        @Option(name: .customLong("redirect-uri"), help: "Redirect URI (repeatable; replaces the list).") var redirectURIs: [String] = []
        @Flag(help: "Remove every redirect URI.") var noRedirectUris = false
        @Option(name: .customLong("post-logout-redirect-uri"), help: "Post-logout redirect URI (repeatable; replaces the list).")
        var postLogoutRedirectURIs: [String] = []
        @Option(name: .customLong("grant-type"), help: "Grant type (repeatable; replaces the list).") var grantTypes: [String] = []
        @Option(help: "Scopes the client may request, space-separated.") var scope: String?
        @Option(help: "Scopes granted when a request names none.") var defaultScope: String?
        @Option(name: .customLong("resource"), help: "Resource indicator (repeatable; replaces the list).") var resources: [String] = []
        @Option(help: "Skip the consent page (true or false).") var skipConsent: Bool?
        @Option(help: "One active grant per user (true or false).") var singleGrantPerUser: Bool?
        @Option(help: "Accept redirect_state (true or false).") var legacyRedirectState: Bool?
        @Option(name: .customLong("may-exchange-from"), help: "A client whose tokens this one may exchange (repeatable; replaces the list).")
        var mayExchangeFrom: [String] = []
        func run() async throws {
            try await common.withStore { store, config in
                var patch = ClientPatch()
                patch.name = name
                if noRedirectUris { patch.redirectURIs = [] } else if !redirectURIs.isEmpty { patch.redirectURIs = redirectURIs }
                if !postLogoutRedirectURIs.isEmpty { patch.postLogoutRedirectURIs = postLogoutRedirectURIs }
                if !grantTypes.isEmpty { patch.grantTypes = grantTypes }
                patch.scope = scope
                patch.defaultScope = defaultScope
                if !resources.isEmpty { patch.resources = resources }
                patch.skipConsent = skipConsent
                patch.singleGrantPerUser = singleGrantPerUser
                patch.legacyRedirectState = legacyRedirectState
                if !mayExchangeFrom.isEmpty { patch.mayExchangeFrom = mayExchangeFrom }
                let client = try await Administration.cli(store, config).updateClient(id: id, patch)
                let out = ClientView(client, now: Clock.system.nowSeconds)
                try common.print(json: out, text: "updated client \(client.id)\n" + out.text)
            }
        }
    }
}

extension Scopes {
    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a scope (built-in ones cannot be; one clients may request needs --force).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Scope name.") var name: String
        @Flag(help: "Also remove the scope from every client that may request it.") var force = false
        func run() async throws {
            struct Out: Encodable { let deleted: String }
            try await common.withStore { store, config in
                try await Administration.cli(store, config).deleteScope(name: name, force: force)
                try common.print(json: Out(deleted: name), text: "deleted scope \(name)")
            }
        }
    }
}

extension Groups {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List groups, or one group's members.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "A group: list its members.") var group: String?
        func run() async throws {
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                if let group {
                    let members = try await admin.members(group: group)
                    try common.print(
                        json: members,
                        text: members.isEmpty ? "no members" : members.map { "\($0.username)  \($0.role)" }.joined(separator: "\n"))
                } else {
                    let groups = try await admin.listGroups()
                    try common.print(
                        json: groups,
                        text: groups.isEmpty ? "no groups" : groups.map { "\($0.name)  \($0.members) member(s)" }.joined(separator: "\n"))
                }
            }
        }
    }

    struct RemoveMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove-member", abstract: "Remove a user from a group.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Group name.") var group: String
        @Argument(help: "User id or username.") var user: String
        func run() async throws {
            struct Out: Encodable { let group: String; let removed: String }
            try await common.withStore { store, config in
                try await Administration.cli(store, config).removeMember(group: group, user: user)
                try common.print(json: Out(group: group, removed: user), text: "removed \(user) from \(group)")
            }
        }
    }
}

extension Services {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List services, or who holds which permissions in one.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "A service: list its grants.") var service: String?
        func run() async throws {
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                if let service {
                    let grants = try await admin.serviceGrants(service: service)
                    try common.print(
                        json: grants,
                        text: grants.isEmpty ? "no grants"
                            : grants.map { "\($0.username)  \($0.permissions.joined(separator: " "))" }.joined(separator: "\n"))
                } else {
                    let services = try await store.listServices().map(ServiceView.init)
                    try common.print(
                        json: services,
                        text: services.map { "\($0.name)\($0.permissions_url.map { "  \($0)" } ?? "")" }.joined(separator: "\n"))
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a user's permissions in a service (the named ones, or all of them).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Service name.") var name: String
        @Option(help: "User id or username.") var user: String
        @Option(parsing: .upToNextOption, help: "Permission names (default: all).") var permission: [String] = []
        func run() async throws {
            struct Out: Encodable { let service: String; let user: String; let revoked: Int }
            try await common.withStore { store, config in
                let n = try await Administration.cli(store, config).revokePermissions(
                    service: name, user: user, permissions: permission.isEmpty ? nil : permission)
                try common.print(json: Out(service: name, user: user, revoked: n), text: "revoked \(n) permission(s) of \(user) in \(name)")
            }
        }
    }
}

/// `gatehouse audit list`: the audit log, newest first.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Read the audit log.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List audit events, newest first.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Only events by this actor (user:<id>, client:<id>, cli, anonymous).") var actor: String?
        @Option(help: "Only this action (user.disabled, signin.failed, …).") var action: String?
        @Option(help: "Only events about this target (user:<id>, client:<id>, …).") var target: String?
        @Option(help: "Only events at or after this unix time.") var since: Int64?
        @Option(help: "Only events at or before this unix time.") var until: Int64?
        @Option(help: "At most this many (1–200).") var limit: Int = 50
        @Option(help: "The next_cursor of the previous page.") var cursor: String?
        func run() async throws {
            try await common.withStore { store, config in
                let page = try await Administration.cli(store, config).auditEvents(
                    AuditQuery(actor: actor, action: action, target: target, since: since, until: until, limit: limit),
                    cursor: cursor)
                let formatter = ISO8601DateFormatter()
                try common.print(
                    json: page,
                    text: (page.items.isEmpty ? "no events" : page.items.map { e in
                        let when = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(e.time)))
                        return "\(when)  \(e.action)  \(e.actor)\(e.target.map { " → \($0)" } ?? "")"
                    }.joined(separator: "\n")) + (page.next_cursor.map { "\nmore: --cursor \($0)" } ?? ""))
            }
        }
    }
}
