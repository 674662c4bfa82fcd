import Foundation
import GatehouseCore
import SQLKit

// MARK: AccountStore

/// `AccountStore` over SQL: groups, memberships, services and permissions.
extension SQLStore {
    public func insertGroup(_ g: GroupRecord) async throws {
        let inserted = try await backend.transaction { db in
            try await db.raw(
                "INSERT INTO user_groups (name, created_at) VALUES (\(bind: g.name), \(bind: g.createdAt)) ON CONFLICT DO NOTHING RETURNING name"
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("group \(g.name)") }
    }

    public func group(name: String) async throws -> GroupRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM user_groups WHERE name = \(bind: name)").first().map { row in
                GroupRecord(
                    name: try row.decode(column: "name", as: String.self),
                    createdAt: try row.decode(column: "created_at", as: Int64.self))
            }
        }
    }

    public func saveMembership(_ m: MembershipRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO memberships (group_name, user_id, role) VALUES (\(bind: m.group), \(bind: m.userID), \(bind: m.role))
                ON CONFLICT (group_name, user_id) DO UPDATE SET role = excluded.role
                """
            ).run()
        }
    }

    public func memberships(userID: String) async throws -> [MembershipRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM memberships WHERE user_id = \(bind: userID) ORDER BY group_name").all().map { row in
                MembershipRecord(
                    group: try row.decode(column: "group_name", as: String.self),
                    userID: try row.decode(column: "user_id", as: String.self),
                    role: try row.decode(column: "role", as: String.self))
            }
        }
    }

    public func insertService(_ s: ServiceRecord) async throws {
        let inserted = try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO services (name, permissions_url, created_at) VALUES (\(bind: s.name), \(bind: s.permissionsURL),
                    \(bind: s.createdAt)) ON CONFLICT DO NOTHING RETURNING name
                """
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("service \(s.name)") }
    }

    public func service(name: String) async throws -> ServiceRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM services WHERE name = \(bind: name)").first().map { row in
                ServiceRecord(
                    name: try row.decode(column: "name", as: String.self),
                    permissionsURL: try row.decode(column: "permissions_url", as: String?.self),
                    createdAt: try row.decode(column: "created_at", as: Int64.self))
            }
        }
    }

    public func grantPermissions(service: String, userID: String, permissions: [String]) async throws {
        try await backend.transaction { db in
            for p in permissions {
                try await db.raw(
                    """
                    INSERT INTO service_permissions (service, user_id, permission) VALUES (\(bind: service), \(bind: userID), \(bind: p))
                    ON CONFLICT DO NOTHING
                    """
                ).run()
            }
        }
    }

    public func permissions(service: String, userID: String) async throws -> [String] {
        try await backend.read { db in
            try await db.raw(
                "SELECT permission FROM service_permissions WHERE service = \(bind: service) AND user_id = \(bind: userID) ORDER BY permission"
            ).all().map { try $0.decode(column: "permission", as: String.self) }
        }
    }

    public func changeUsername(userID: String, to username: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            let taken = try await db.raw(
                "SELECT id FROM users WHERE username_key = \(bind: username.lowercased()) AND id <> \(bind: userID)"
            ).all()
            guard taken.isEmpty else { throw StorageError.duplicate("username \(username)") }
            // Only once: the condition and the update are one statement.
            return try await !db.raw(
                """
                UPDATE users SET username = \(bind: username), username_key = \(bind: username.lowercased()),
                    username_changed_at = \(bind: time), updated_at = \(bind: time)
                WHERE id = \(bind: userID) AND username_changed_at IS NULL RETURNING id
                """
            ).all().isEmpty
        }
    }

    public func usernameWasChanged(userID: String) async throws -> Bool {
        try await backend.read { db in
            try await db.raw("SELECT username_changed_at FROM users WHERE id = \(bind: userID)").first()?
                .decode(column: "username_changed_at", as: Int64?.self) != nil
        }
    }
}
