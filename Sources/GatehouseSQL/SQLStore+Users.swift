import Foundation
import GatehouseCore
import SQLKit

// MARK: UserStore

/// `UserStore` over SQL.
extension SQLStore {
    public func insertUser(_ u: UserRecord) async throws {
        try await backend.transaction { db in try await Self.insertUser(u, db) }
    }

    public func insertUser(_ u: UserRecord, audit: AuditEventRecord?) async throws {
        try await backend.transaction { db in
            try await Self.insertUser(u, db)
            if let audit { try await Self.insertAuditEvent(audit, db) }
        }
    }

    public func insertUser(_ u: UserRecord, linking identity: IdentityRecord) async throws {
        try await backend.transaction { db in
            try await Self.insertUser(u, db)
            try await Self.insertIdentity(identity, db)
        }
    }

    static func insertUser(_ u: UserRecord, _ db: any SQLDatabase) async throws {
        let inserted = try await db.raw(
                """
                INSERT INTO users (id, username, username_key, email, email_key, name, name_key, password_hash,
                    created_at, updated_at, profile, disabled_at, password_reset_required)
                SELECT \(bind: u.id), \(bind: u.username), \(bind: u.username.lowercased()), \(bind: u.email),
                    \(bind: u.email?.lowercased()), \(bind: u.name), \(bind: u.name?.lowercased()), \(bind: u.passwordHash),
                    \(bind: u.createdAt), \(bind: u.updatedAt), \(bind: JSONObject.encode(u.profile)), \(bind: u.disabledAt),
                    \(bind: u.passwordResetRequired ? 1 : 0)
                -- Never a deleted user's id: a `sub` names one person forever.
                WHERE NOT EXISTS (SELECT 1 FROM deleted_users WHERE id = \(bind: u.id))
                ON CONFLICT DO NOTHING RETURNING id
                """
            ).all().count
        guard inserted == 1 else { throw StorageError.duplicate("user \(u.username)") }
    }

    public func user(id: String) async throws -> UserRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM users WHERE id = \(bind: id)").first().map(Self.decodeUser)
        }
    }

    public func user(username: String) async throws -> UserRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM users WHERE username_key = \(bind: username.lowercased())").first()
                .map(Self.decodeUser)
        }
    }

    static func decodeUser(_ row: any SQLRow) throws -> UserRecord {
        var user = UserRecord(
            id: try row.decode(column: "id", as: String.self),
            username: try row.decode(column: "username", as: String.self),
            email: try row.decode(column: "email", as: String?.self),
            name: try row.decode(column: "name", as: String?.self),
            passwordHash: try row.decode(column: "password_hash", as: String?.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            updatedAt: try row.decode(column: "updated_at", as: Int64.self),
            profile: JSONObject.decode(UserProfile.self, try row.decode(column: "profile", as: String.self))
                ?? UserProfile())
        user.disabledAt = try row.decode(column: "disabled_at", as: Int64?.self)
        user.passwordResetRequired = try row.decode(column: "password_reset_required", as: Int.self) != 0
        return user
    }
}
