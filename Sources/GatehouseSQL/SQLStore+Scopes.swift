import Foundation
import GatehouseCore
import SQLKit

// MARK: ScopeStore

/// `ScopeStore` over SQL.
extension SQLStore {
    public func insertScope(_ s: ScopeRecord) async throws {
        let inserted = try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO scopes (name, description, is_default, required_role)
                VALUES (\(bind: s.name), \(bind: s.description), \(bind: s.isDefault ? 1 : 0), \(bind: s.requiredRole))
                ON CONFLICT DO NOTHING RETURNING name
                """
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("scope \(s.name)") }
    }

    public func listScopes() async throws -> [ScopeRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM scopes ORDER BY name").all().map(Self.decodeScope)
        }
    }

    static func decodeScope(_ row: any SQLRow) throws -> ScopeRecord {
        ScopeRecord(
            name: try row.decode(column: "name", as: String.self),
            description: try row.decode(column: "description", as: String.self),
            isDefault: try row.decode(column: "is_default", as: Int.self) != 0,
            requiredRole: try row.decode(column: "required_role", as: String?.self))
    }
}
