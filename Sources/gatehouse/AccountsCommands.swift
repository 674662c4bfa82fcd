import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL

/// `gatehouse groups create|add-member`.
struct Groups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage groups of users (memberships carry a role).",
        subcommands: [Create.self, List.self, AddMember.self, RemoveMember.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a group.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Group name.") var name: String
        func run() async throws {
            struct Out: Encodable { let name: String; let created_at: Int64 }
            try await common.withStore { store, config in
                let g = try await Administration.cli(store, config).createGroup(name: name)
                try common.print(json: Out(name: g.name, created_at: g.createdAt), text: "created group \(g.name)")
            }
        }
    }

    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-member", abstract: "Add a user to a group (or change their role).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Group name.") var group: String
        @Argument(help: "Username.") var username: String
        @Option(help: "Role in the group (default: member).") var role: String = "member"
        func run() async throws {
            struct Out: Encodable { let group: String; let user_id: String; let username: String; let role: String }
            try await common.withStore { store, config in
                let m = try await Administration.cli(store, config).addMember(group: group, username: username, role: role)
                try common.print(
                    json: Out(group: m.group, user_id: m.userID, username: username, role: m.role),
                    text: "\(username) is \(m.role) of \(m.group)")
            }
        }
    }
}

/// `gatehouse services create|grant`: the user-permission manager.
struct Services: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage services and the permissions users hold in them.",
        subcommands: [Create.self, List.self, Grant.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a service.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Service name.") var name: String
        @Option(help: "A URL asked for a user's permissions (GET ?service=NAME&userid=ID → JSON object of booleans).")
        var permissionsUrl: String?
        func run() async throws {
            struct Out: Encodable { let name: String; let permissions_url: String?; let created_at: Int64 }
            try await common.withStore { store, config in
                let s = try await Administration.cli(store, config).createService(name: name, permissionsURL: permissionsUrl)
                try common.print(
                    json: Out(name: s.name, permissions_url: s.permissionsURL, created_at: s.createdAt),
                    text: "created service \(s.name)")
            }
        }
    }

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Grant a user permissions in a service.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Service name.") var name: String
        @Option(help: "Username.") var user: String
        @Option(parsing: .upToNextOption, help: "Permission names (one or more).") var permission: [String] = []
        func run() async throws {
            struct Out: Encodable { let service: String; let username: String; let permissions: [String] }
            try await common.withStore { store, config in
                let admin = Administration.cli(store, config)
                try await admin.grant(service: name, username: user, permissions: permission)
                let id = try await store.user(username: user)?.id ?? ""
                let all = try await store.permissions(service: name, userID: id)
                try common.print(
                    json: Out(service: name, username: user, permissions: all),
                    text: "\(user) in \(name): \(all.joined(separator: " "))")
            }
        }
    }
}
