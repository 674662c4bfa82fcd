import Foundation
import GatehouseCore
import SQLKit

// MARK: FederationStore

/// `FederationStore` over SQL: upstream providers (client secrets sealed when `secrets_key` is set) and linked identities.
extension SQLStore {
    public func insertProvider(_ p: ProviderRecord) async throws {
        let secret = try sealSecret(p.clientSecret, context: Self.providerSecretContext(p.id))
        let inserted = try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO providers (id, kind, name, client_id, client_secret, issuer, authorize_url, token_url,
                    userinfo_url, scope, claims, link_by_email, created_at, whoami_url, introspection_url, allow_foreign_tokens)
                VALUES (\(bind: p.id), \(bind: p.kind.rawValue), \(bind: p.name), \(bind: p.clientID),
                    \(bind: secret),
                    \(bind: p.issuer), \(bind: p.authorizeURL), \(bind: p.tokenURL), \(bind: p.userinfoURL),
                    \(bind: p.scope.description), \(bind: JSONObject.encode(p.claims)), \(bind: p.linkByEmail ? 1 : 0),
                    \(bind: p.createdAt), \(bind: p.whoamiURL), \(bind: p.introspectionURL), \(bind: p.allowForeignTokens ? 1 : 0))
                ON CONFLICT DO NOTHING RETURNING id
                """
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("provider \(p.id)") }
    }

    public func listProviders() async throws -> [ProviderRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM providers ORDER BY created_at, id").all().map { row in
                let kind = try row.decode(column: "kind", as: String.self)
                let id = try row.decode(column: "id", as: String.self)
                return ProviderRecord(
                    id: id, kind: ProviderKind(rawValue: kind) ?? .oauth2,
                    name: try row.decode(column: "name", as: String.self),
                    clientID: try row.decode(column: "client_id", as: String.self),
                    clientSecret: try openSecret(
                        try row.decode(column: "client_secret", as: String.self), context: Self.providerSecretContext(id)),
                    issuer: try row.decode(column: "issuer", as: String?.self),
                    authorizeURL: try row.decode(column: "authorize_url", as: String?.self),
                    tokenURL: try row.decode(column: "token_url", as: String?.self),
                    userinfoURL: try row.decode(column: "userinfo_url", as: String?.self),
                    scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
                    claims: JSONObject.decode([String: String].self, try row.decode(column: "claims", as: String.self)) ?? [:],
                    linkByEmail: try row.decode(column: "link_by_email", as: Int.self) != 0,
                    createdAt: try row.decode(column: "created_at", as: Int64.self),
                    whoamiURL: try row.decode(column: "whoami_url", as: String?.self),
                    introspectionURL: try row.decode(column: "introspection_url", as: String?.self),
                    allowForeignTokens: try row.decode(column: "allow_foreign_tokens", as: Int.self) != 0)
            }
        }
    }

    public func deleteProvider(id: String) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw("DELETE FROM providers WHERE id = \(bind: id) RETURNING id").all().isEmpty
        }
    }

    static func decodeIdentity(_ row: any SQLRow) throws -> IdentityRecord {
        IdentityRecord(
            providerID: try row.decode(column: "provider_id", as: String.self),
            subject: try row.decode(column: "subject", as: String.self),
            userID: try row.decode(column: "user_id", as: String.self),
            username: try row.decode(column: "username", as: String?.self),
            email: try row.decode(column: "email", as: String?.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self))
    }

    public func identity(providerID: String, subject: String) async throws -> IdentityRecord? {
        try await backend.read { db in
            try await db.raw(
                "SELECT * FROM identities WHERE provider_id = \(bind: providerID) AND subject = \(bind: subject)"
            ).first().map(Self.decodeIdentity)
        }
    }

    public func identities(userID: String) async throws -> [IdentityRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM identities WHERE user_id = \(bind: userID) ORDER BY created_at, provider_id").all()
                .map(Self.decodeIdentity)
        }
    }

    public func insertIdentity(_ i: IdentityRecord) async throws {
        try await backend.transaction { db in try await Self.insertIdentity(i, db) }
    }

    static func insertIdentity(_ i: IdentityRecord, _ db: any SQLDatabase) async throws {
        let inserted = try await db.raw(
                """
                INSERT INTO identities (provider_id, subject, user_id, username, email, created_at)
                VALUES (\(bind: i.providerID), \(bind: i.subject), \(bind: i.userID), \(bind: i.username), \(bind: i.email),
                    \(bind: i.createdAt))
                ON CONFLICT DO NOTHING RETURNING subject
                """
            ).all().count
        guard inserted == 1 else { throw StorageError.duplicate("identity \(i.providerID)/\(i.subject)") }
    }

    public func deleteIdentity(providerID: String, subject: String, userID: String) async throws -> Bool {
        let isPostgres = backend.isPostgres
        return try await backend.transaction { db in
            // Concurrent unlinks of one user's identities are serialised on the user row (SQLite: one writer),
            // so "never the last way to sign in" holds.
            if isPostgres { _ = try await db.raw("SELECT id FROM users WHERE id = \(bind: userID) FOR UPDATE").all() }
            return try await !db.raw(
                """
                DELETE FROM identities WHERE provider_id = \(bind: providerID) AND subject = \(bind: subject)
                    AND user_id = \(bind: userID)
                    AND ((SELECT password_hash FROM users WHERE id = \(bind: userID)) IS NOT NULL
                         OR (SELECT COUNT(*) FROM identities WHERE user_id = \(bind: userID)) > 1)
                RETURNING subject
                """
            ).all().isEmpty
        }
    }

    public func user(email: String) async throws -> UserRecord? {
        try await backend.read { db in
            let rows = try await db.raw("SELECT * FROM users WHERE email_key = \(bind: email.lowercased()) LIMIT 2").all()
            return rows.count == 1 ? try Self.decodeUser(rows[0]) : nil
        }
    }
}
