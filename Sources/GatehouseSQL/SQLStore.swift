import Foundation
import GatehouseCore
import Logging
import SQLKit

/// Gatehouse storage over SQLKit, on SQLite (default) or PostgreSQL: one file per storage protocol
/// (`SQLStore+Clients.swift`, `SQLStore+Tokens.swift`, …), one set of migrations (`Migrations.swift`).
public final class SQLStore: GatehouseStorage {
    let backend: InstrumentedBackend
    public let url: DatabaseURL
    let clock: Clock
    /// Seals private signing keys and provider client secrets at rest (`secrets_key`); `nil`: stored as
    /// they are, and a sealed value read back is an error naming the setting.
    let secrets: SecretBox?

    /// PostgreSQL connections per process (the pool's maximum).
    static let postgresConnections = 16

    private init(backend: InstrumentedBackend, url: DatabaseURL, clock: Clock, secrets: SecretBox?) {
        self.backend = backend
        self.url = url
        self.clock = clock
        self.secrets = secrets
    }

    func sealSecret(_ value: String, context: String) throws -> String {
        try secrets?.seal(value, context: context) ?? value
    }

    func openSecret(_ stored: String, context: String) throws -> String {
        try SecretBox.open(stored, context: context, keys: secrets?.keys ?? [])
    }

    static func privateKeyContext(_ kid: String) -> String { "signing_keys.private_pem:" + kid }
    static func providerSecretContext(_ id: String) -> String { "providers.client_secret:" + id }

    /// Runs one statement outside a transaction (PostgreSQL's CREATE/DROP DATABASE cannot run in one). For
    /// tooling and test support in this package only; never with request input.
    package func executeOutsideTransaction(_ sql: String) async throws {
        try await backend.read { db in try await db.raw(SQLQueryString(sql)).run() }
    }

    /// Opens the database (creating an SQLite file if needed). Call `migrate()` before use and
    /// `close()` when done.
    public static func open(
        _ url: DatabaseURL, logger: Logger = Logger(label: "gatehouse.sql"), clock: Clock = .system, secrets: SecretBox? = nil
    ) async throws -> SQLStore
    {
        // The drivers log queries with their bind values at debug: those include private keys and
        // token hashes, so the database layer never logs below info.
        var logger = logger
        if logger.logLevel < .info { logger.logLevel = .info }
        let backend: InstrumentedBackend
        switch url {
        case .sqliteFile, .sqliteMemory:
            let readers = url == .sqliteMemory ? 0 : 3
            backend = InstrumentedBackend(try await SQLiteBackend.open(url, readers: readers, logger: logger), capacity: 1 + readers)
        case .postgres(let host, let port, _, _, let database, _):
            let pg = try PostgresBackend(url, maxConnections: Self.postgresConnections, logger: logger)
            do {
                try await pg.checkConnection()
            } catch {
                await pg.shutdown()
                throw SQLStoreError(
                    description: "cannot connect to PostgreSQL database \(database) at \(host):\(port): \(PostgresBackend.explain(error))")
            }
            backend = InstrumentedBackend(pg, capacity: Self.postgresConnections)
        }
        return SQLStore(backend: backend, url: url, clock: clock, secrets: secrets)
    }

    /// Applies pending migrations; returns the versions applied.
    @discardableResult
    public func migrate() async throws -> [Int] { try await Migrations.migrate(backend, clock: clock) }

    public func close() async { await backend.shutdown() }

    /// `SELECT 1` on a pooled connection (SQLite: a reader).
    public func ping() async throws {
        try await backend.read { db in _ = try await db.raw("SELECT 1 AS one").all() }
    }

    public func pendingMigrations() async throws -> [Int] { try await Migrations.pending(backend) }

    public func connectionUse() -> ConnectionUse { backend.use }

    public func record(into metrics: GatehouseMetrics) { backend.record(into: metrics) }
}

/// A Codable value stored as JSON text.
enum JSONObject {
    static func encode<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: JSONEncoder.sortedWithoutEscapingSlashes.encode(value), as: UTF8.self)) ?? "{}"
    }
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) -> T? {
        try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

/// The database could not be opened; the message says where and why, without the password.
public struct SQLStoreError: Error, CustomStringConvertible {
    public let description: String
}

/// Lists stored as JSON text (portable across SQLite and PostgreSQL).
enum JSONList {
    static func encode(_ list: [String]) -> String {
        (try? String(decoding: JSONEncoder().encode(list), as: UTF8.self)) ?? "[]"
    }
    static func decode(_ text: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }
}
