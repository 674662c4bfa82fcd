import Foundation
import GatehouseCore
import SQLKit

// MARK: KeyStore

/// `KeyStore` over SQL (private halves sealed with `secrets_key` when set).
extension SQLStore {
    public func listKeys() async throws -> [SigningKeyRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM signing_keys ORDER BY created_at, kid").all().map { row in
                let alg = try row.decode(column: "algorithm", as: String.self)
                guard let algorithm = SigningAlgorithm(rawValue: alg) else {
                    throw StorageError.notFound("signing algorithm \(alg)")
                }
                let kid = try row.decode(column: "kid", as: String.self)
                return SigningKeyRecord(
                    kid: kid, algorithm: algorithm,
                    privatePEM: try row.decode(column: "private_pem", as: String?.self).map {
                        try openSecret($0, context: Self.privateKeyContext(kid))
                    },
                    createdAt: try row.decode(column: "created_at", as: Int64.self),
                    deactivatedAt: try row.decode(column: "deactivated_at", as: Int64?.self),
                    retiredAt: try row.decode(column: "retired_at", as: Int64?.self),
                    activatesAt: try row.decode(column: "activates_at", as: Int64?.self),
                    revokedAt: try row.decode(column: "revoked_at", as: Int64?.self))
            }
        }
    }

    func insertKey(_ k: SigningKeyRecord, _ db: any SQLDatabase) async throws {
        let sealed = try k.privatePEM.map { try sealSecret($0, context: Self.privateKeyContext(k.kid)) }
        try await db.raw(
            """
            INSERT INTO signing_keys (kid, algorithm, private_pem, created_at, deactivated_at, retired_at, activates_at)
            VALUES (\(bind: k.kid), \(bind: k.algorithm.rawValue), \(bind: sealed), \(bind: k.createdAt),
                \(bind: k.deactivatedAt), \(bind: k.retiredAt), \(bind: k.activatesAt))
            """
        ).run()
    }

    public func activateKey(_ key: SigningKeyRecord) async throws {
        try await backend.transaction { db in
            // The keys signing now stop when the new one starts (at once, or at its `activatesAt`).
            try await db.raw(
                """
                UPDATE signing_keys SET deactivated_at = \(bind: key.activeFrom)
                WHERE (deactivated_at IS NULL OR deactivated_at > \(bind: key.activeFrom)) AND retired_at IS NULL
                """
            ).run()
            try await self.insertKey(key, db)
        }
    }

    public func revokeKey(kid: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            // A key that had not started signing yet: the keys it was to replace keep signing.
            // (Until this key's own successor starts, if one is scheduled.)
            if let row = try await db.raw(
                """
                SELECT activates_at, deactivated_at FROM signing_keys
                WHERE kid = \(bind: kid) AND revoked_at IS NULL AND activates_at > \(bind: time)
                """
            ).first(), let start = try row.decode(column: "activates_at", as: Int64?.self) {
                let successor = try row.decode(column: "deactivated_at", as: Int64?.self)
                try await db.raw(
                    """
                    UPDATE signing_keys SET deactivated_at = \(bind: successor)
                    WHERE deactivated_at = \(bind: start) AND kid <> \(bind: kid) AND revoked_at IS NULL AND retired_at IS NULL
                    """
                ).run()
            }
            return try await !db.raw(
                """
                UPDATE signing_keys SET revoked_at = \(bind: time), retired_at = \(bind: time), private_pem = NULL,
                    deactivated_at = COALESCE(deactivated_at, \(bind: time))
                WHERE kid = \(bind: kid) AND revoked_at IS NULL RETURNING kid
                """
            ).all().isEmpty
        }
    }

    public func revokedKeyIDs() async throws -> Set<String> {
        try await backend.read { db in
            Set(try await db.raw("SELECT kid FROM signing_keys WHERE revoked_at IS NOT NULL").all().map {
                try $0.decode(column: "kid", as: String.self)
            })
        }
    }

    /// Seals every stored secret with the first configured key (and plaintext ones too); returns how many
    /// values were rewritten. Values already sealed with the first key stay as they are.
    /// The columns that hold sealed secrets: table, row id column, secret column, and the row's context.
    static let sealedColumns: [(table: String, id: String, column: String, context: @Sendable (String) -> String)] = [
        ("signing_keys", "kid", "private_pem", privateKeyContext),
        ("providers", "id", "client_secret", providerSecretContext),
    ]

    public func reencryptSecrets() async throws -> Int {
        guard let box = secrets else { throw SecretBox.Failure.noKey(what: "keys reencrypt") }
        return try await backend.transaction { db in
            var changed = 0
            // Identifiers are the constants above, never input.
            for c in Self.sealedColumns {
                let rows = try await db.raw(
                    "SELECT \(unsafeRaw: c.id) AS id, \(unsafeRaw: c.column) AS secret FROM \(unsafeRaw: c.table) WHERE \(unsafeRaw: c.column) IS NOT NULL"
                ).all()
                for row in rows {
                    let id = try row.decode(column: "id", as: String.self)
                    let stored = try row.decode(column: "secret", as: String.self)
                    guard !box.isCurrent(stored) else { continue }
                    let context = c.context(id)
                    let resealed = try box.seal(try box.open(stored, context: context), context: context)
                    try await db.raw(
                        "UPDATE \(unsafeRaw: c.table) SET \(unsafeRaw: c.column) = \(bind: resealed) WHERE \(unsafeRaw: c.id) = \(bind: id)"
                    ).run()
                    changed += 1
                }
            }
            return changed
        }
    }

    public func insertFirstKey(_ key: SigningKeyRecord) async throws -> SigningKeyRecord {
        let isPostgres = backend.isPostgres
        try await backend.transaction { db in
            if isPostgres { try await db.raw("LOCK TABLE signing_keys IN EXCLUSIVE MODE").run() }
            let active = try await db.raw(
                "SELECT kid FROM signing_keys WHERE deactivated_at IS NULL AND retired_at IS NULL"
            ).all()
            if active.isEmpty { try await self.insertKey(key, db) }
        }
        return try await listKeys().last { $0.deactivatedAt == nil && $0.retiredAt == nil } ?? key
    }

    public func retireKeys(kids: [String], at time: Int64) async throws {
        guard !kids.isEmpty else { return }
        try await backend.transaction { db in
            for kid in kids {
                try await db.raw(
                    "UPDATE signing_keys SET retired_at = \(bind: time), private_pem = NULL WHERE kid = \(bind: kid) AND retired_at IS NULL"
                ).run()
            }
        }
    }

    public func raiseKeyRetention(atLeast seconds: Int64) async throws -> Int64 {
        try await backend.transaction { db in
            let row = try await db.raw(
                """
                INSERT INTO gatehouse_settings (name, value) VALUES ('key_retention', \(bind: seconds))
                ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > gatehouse_settings.value
                    THEN excluded.value ELSE gatehouse_settings.value END
                RETURNING value
                """
            ).first()
            return try row?.decode(column: "value", as: Int64.self) ?? seconds
        }
    }

    public func keyRetention() async throws -> Int64? {
        try await backend.read { db in
            try await db.raw("SELECT value FROM gatehouse_settings WHERE name = 'key_retention'").first()?
                .decode(column: "value", as: Int64.self)
        }
    }
}
