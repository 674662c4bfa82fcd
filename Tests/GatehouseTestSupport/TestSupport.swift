import Foundation
import GatehouseCore
import Logging
import SQLKit
import Synchronization

import GatehouseSQL

/// A clock tests can move.
public final class TestClock: Sendable {
    private let current: Mutex<Date>
    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Mutex(start) }
    public var clock: Clock { Clock { [self] in current.withLock { $0 } } }
    public func advance(seconds: Int64) { current.withLock { $0 += TimeInterval(seconds) } }
}

/// The databases every storage and HTTP test runs against. PostgreSQL joins when
/// `GATEHOUSE_TEST_POSTGRES_URL` is set (scripts/test starts a throwaway server and sets it).
public enum TestDatabase: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite
    case postgres

    public var description: String { rawValue }

    public static var available: [TestDatabase] {
        postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    static var postgresURL: String? {
        let v = ProcessInfo.processInfo.environment["GATEHOUSE_TEST_POSTGRES_URL"]
        return (v?.isEmpty ?? true) ? nil : v
    }

    /// Opens a fresh, migrated, isolated store (SQLite: a new in-memory database; PostgreSQL: a new
    /// database created for this test), runs `body`, then closes (and drops) it.
    public func withStore<T>(clock: Clock = .system, secrets: SecretBox? = nil, _ body: (SQLStore) async throws -> T)
        async throws -> T
    {
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        switch self {
        case .sqlite:
            let store = try await SQLStore.open(.sqliteMemory, logger: logger, clock: clock, secrets: secrets)
            return try await Self.run(store, body)
        case .postgres:
            guard let raw = Self.postgresURL, case .postgres(let host, let port, let user, let password, _, _) = try DatabaseURL(parsing: raw)
            else { fatalError("no PostgreSQL configured") }
            let admin = try await SQLStore.open(try DatabaseURL(parsing: raw), logger: logger)
            let name = "gh_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
            try await admin.executeOutsideTransaction("CREATE DATABASE \(name)")
            let url = DatabaseURL.postgres(host: host, port: port, user: user, password: password, database: String(name), sslMode: .disable)
            let store = try await SQLStore.open(url, logger: logger, clock: clock, secrets: secrets)
            do {
                let value = try await Self.run(store, body)
                try? await admin.executeOutsideTransaction("DROP DATABASE IF EXISTS \(name)")
                await admin.close()
                return value
            } catch {
                try? await admin.executeOutsideTransaction("DROP DATABASE IF EXISTS \(name)")
                await admin.close()
                throw error
            }
        }
    }

    private static func run<T>(_ store: SQLStore, _ body: (SQLStore) async throws -> T) async throws -> T {
        do {
            try await store.migrate()
            let value = try await body(store)
            await store.close()
            return value
        } catch {
            await store.close()
            throw error
        }
    }
}

/// A storage implementation under test: a database, used directly or through `CachingStorage` (the
/// storage conformance suite runs on every one, through the `GatehouseStorage` protocol).
public struct StorageUnderTest: Sendable, CustomStringConvertible {
    public let database: TestDatabase
    public let cached: Bool

    public var description: String { cached ? "\(database)+cache" : "\(database)" }

    public static var all: [StorageUnderTest] {
        TestDatabase.available.flatMap { [StorageUnderTest(database: $0, cached: false), StorageUnderTest(database: $0, cached: true)] }
    }

    /// A fresh, migrated store (as `TestDatabase.withStore`), wrapped in a 1 s `CachingStorage` when `cached`.
    public func withStorage<T>(_ body: (any GatehouseStorage) async throws -> T) async throws -> T {
        try await database.withStore { store in
            try await body(cached ? CachingStorage(store, ttl: 1, clock: .system) : store)
        }
    }
}
