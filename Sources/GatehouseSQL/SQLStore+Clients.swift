import Foundation
import GatehouseCore
import SQLKit

// MARK: ClientStore

/// `ClientStore` over SQL.
extension SQLStore {
    public func insertClient(_ c: ClientRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scope, default_scope,
                    resources, skip_consent, post_logout_redirect_uris, single_grant_per_user, created_at, updated_at,
                    legacy_redirect_state, may_exchange_from)
                VALUES (\(bind: c.id), \(bind: c.name), \(bind: c.secretHash), \(bind: JSONList.encode(c.redirectURIs)),
                    \(bind: JSONList.encode(c.grantTypes)), \(bind: c.scope.description), \(bind: c.defaultScope.description),
                    \(bind: JSONList.encode(c.resources)), \(bind: c.skipConsent ? 1 : 0),
                    \(bind: JSONList.encode(c.postLogoutRedirectURIs)), \(bind: c.singleGrantPerUser ? 1 : 0),
                    \(bind: c.createdAt), \(bind: c.updatedAt), \(bind: c.legacyRedirectState ? 1 : 0),
                    \(bind: JSONList.encode(c.mayExchangeFrom)))
                """
            ).run()
        }
    }

    public func client(id: String) async throws -> ClientRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM clients WHERE id = \(bind: id)").first().map(Self.decodeClient)
        }
    }

    public func listClients() async throws -> [ClientRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM clients ORDER BY created_at, id").all().map(Self.decodeClient)
        }
    }

    public func deleteClient(id: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            let deleted = try await db.raw("DELETE FROM clients WHERE id = \(bind: id) RETURNING id").all()
            guard !deleted.isEmpty else { return false }
            try await db.raw(
                "UPDATE grants SET revoked_at = \(bind: time) WHERE client_id = \(bind: id) AND revoked_at IS NULL"
            ).run()
            return true
        }
    }

    public func updateClientSecret(id: String, secretHash: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                """
                UPDATE clients SET secret_hash = \(bind: secretHash), updated_at = \(bind: time),
                    previous_secret_hash = NULL, previous_secret_expires_at = NULL
                WHERE id = \(bind: id) AND secret_hash IS NOT NULL RETURNING id
                """
            ).all().isEmpty
        }
    }

    static func decodeClient(_ row: any SQLRow) throws -> ClientRecord {
        var client = ClientRecord(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            secretHash: try row.decode(column: "secret_hash", as: String?.self),
            redirectURIs: JSONList.decode(try row.decode(column: "redirect_uris", as: String.self)),
            grantTypes: JSONList.decode(try row.decode(column: "grant_types", as: String.self)),
            scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
            defaultScope: Scope(parsing: try row.decode(column: "default_scope", as: String.self)) ?? .empty,
            resources: JSONList.decode(try row.decode(column: "resources", as: String.self)),
            skipConsent: try row.decode(column: "skip_consent", as: Int.self) != 0,
            postLogoutRedirectURIs: JSONList.decode(try row.decode(column: "post_logout_redirect_uris", as: String.self)),
            singleGrantPerUser: try row.decode(column: "single_grant_per_user", as: Int.self) != 0,
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            updatedAt: try row.decode(column: "updated_at", as: Int64.self),
            legacyRedirectState: try row.decode(column: "legacy_redirect_state", as: Int.self) != 0,
            mayExchangeFrom: JSONList.decode(try row.decode(column: "may_exchange_from", as: String.self)))
        client.previousSecretHash = try row.decode(column: "previous_secret_hash", as: String?.self)
        client.previousSecretExpiresAt = try row.decode(column: "previous_secret_expires_at", as: Int64?.self)
        return client
    }
}
