import Foundation
import GatehouseCore
import Logging
import NIOPosix
import NIOSSL
import PostgresKit
import SQLKit
import SQLiteKit
import Synchronization
import Tracing

/// How the store reaches its database: reads may run concurrently; writes run as one transaction each.
protocol SQLBackend: Sendable {
    var isPostgres: Bool { get }
    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T
    /// Runs `body` in a transaction; rolled back when it throws.
    func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T
    /// Runs `body` in one read-only transaction: every query in it sees the same committed state
    /// (`gatehouse export` of a database a server keeps writing to).
    func snapshot<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T
    func shutdown() async
}

enum SQLBackends {
    /// `begin`, `body`, then COMMIT, or ROLLBACK when `body` throws.
    static func inTransaction<T: Sendable>(
        _ db: any SQLDatabase, begin: SQLQueryString, _ body: @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        try await db.raw(begin).run()
        do {
            let value = try await body(db)
            try await db.raw("COMMIT").run()
            return value
        } catch {
            try? await db.raw("ROLLBACK").run()
            throw error
        }
    }
}

/// A FIFO async mutex: holds the SQLite writer for the length of a transaction, across suspension points.
actor AsyncLock {
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func lock() async {
        if !locked { locked = true; return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func unlock() {
        if waiters.isEmpty { locked = false } else { waiters.removeFirst().resume() }
    }

    func withLock<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await lock()
        do {
            let value = try await body()
            unlock()
            return value
        } catch {
            unlock()
            throw error
        }
    }
}

/// SQLite: every write goes through one connection, serialised by a lock (concurrent writers on several
/// connections spin in SQLite's busy handler); reads use a few more connections in WAL mode. An in-memory
/// database lives in one connection, so there reads take the lock too.
final class SQLiteBackend: SQLBackend {
    let isPostgres = false
    private let writer: SQLiteConnection
    private let readers: [SQLiteConnection]
    private let lock = AsyncLock()
    private let next = Atomic<Int>(0)

    private init(writer: SQLiteConnection, readers: [SQLiteConnection]) {
        self.writer = writer
        self.readers = readers
    }

    static func open(_ url: DatabaseURL, readers readerCount: Int, logger: Logger) async throws -> SQLiteBackend {
        switch url {
        case .sqliteMemory:
            let c = try await SQLiteConnection.open(storage: .memory, threadPool: .singleton, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
            try await configure(c, wal: false)
            return SQLiteBackend(writer: c, readers: [])
        case .sqliteFile(let path):
            // The file holds signing keys: create it readable by its owner only (SQLite gives the -wal
            // and -shm files the database file's mode).
            if !FileManager.default.fileExists(atPath: path) {
                FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            }
            let writer = try await SQLiteConnection.open(storage: .file(path: path), threadPool: .singleton, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
            var readers: [SQLiteConnection] = []
            do {
                try await configure(writer, wal: true)
                for _ in 0..<readerCount {
                    let r = try await SQLiteConnection.open(storage: .file(path: path), threadPool: .singleton, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
                    readers.append(r)
                    try await configure(r, wal: false)
                }
            } catch {
                for r in readers { try? await r.close() }
                try? await writer.close()
                throw error
            }
            return SQLiteBackend(writer: writer, readers: readers)
        default:
            preconditionFailure("not an SQLite URL")
        }
    }

    private static func configure(_ c: SQLiteConnection, wal: Bool) async throws {
        let db = c.sql()
        if wal { try await db.raw("PRAGMA journal_mode=WAL").run() }
        try await db.raw("PRAGMA busy_timeout=5000").run()
        try await db.raw("PRAGMA synchronous=NORMAL").run()
        try await db.raw("PRAGMA foreign_keys=ON").run()
        // Erased rows (retired private keys) are overwritten, not left in free pages.
        try await db.raw("PRAGMA secure_delete=ON").run()
    }

    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        if readers.isEmpty {
            let writer = self.writer
            return try await lock.withLock { try await body(writer.sql()) }
        }
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return try await body(readers[abs(i % readers.count)].sql())
    }

    func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await onWriter(begin: "BEGIN IMMEDIATE", body)
    }

    /// On the writer connection (so no concurrent read of this process lands inside the transaction), as a
    /// deferred transaction: in WAL mode its first read fixes the snapshot, and other processes' writers
    /// go on.
    func snapshot<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await onWriter(begin: "BEGIN DEFERRED", body)
    }

    private func onWriter<T: Sendable>(begin: SQLQueryString, _ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let writer = self.writer
        return try await lock.withLock { try await SQLBackends.inTransaction(writer.sql(), begin: begin, body) }
    }

    func shutdown() async {
        for r in readers { try? await r.close() }
        try? await writer.close()
    }
}

/// PostgreSQL through postgres-nio's `PostgresClient` connection pool.
final class PostgresBackend: SQLBackend {
    let isPostgres = true
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    private let direct: PostgresConnection.Configuration

    init(_ url: DatabaseURL, maxConnections: Int, logger: Logger) throws {
        guard case .postgres(let host, let port, let user, let password, let database, let sslMode) = url else {
            preconditionFailure("not a PostgreSQL URL")
        }
        let tls: PostgresClient.Configuration.TLS
        let directTLS: PostgresConnection.Configuration.TLS
        switch sslMode {
        case .disable: (tls, directTLS) = (.disable, .disable)
        case .prefer:
            tls = .prefer(.makeClientConfiguration())
            directTLS = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require:
            tls = .require(.makeClientConfiguration())
            directTLS = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        self.direct = PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: directTLS)
        var config = PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
        config.options.maximumConnections = maxConnections
        config.options.minimumConnections = 1
        let client = PostgresClient(configuration: config, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        self.runner = Task { await client.run() }
    }

    /// Proves the server answers with one direct connection (the pool would retry a refused
    /// connection or bad password for a minute before giving up), then lets the pool start.
    func checkConnection() async throws {
        let direct = self.direct
        let logger = self.logger
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let connection = try await PostgresConnection.connect(configuration: direct, id: 0, logger: logger)
                try await connection.close()
            }
            group.addTask {
                try await Task.sleep(for: .seconds(10))
                throw SQLStoreError(description: "timed out after 10 s")
            }
            try await group.next()
            group.cancelAll()
        }
        try await read { db in try await db.raw("SELECT 1").run() }
    }

    /// A readable reason from postgres-nio's errors.
    static func explain(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            if let message = e.serverInfo?[.message] { return message }
            if let underlying = e.underlying { return "\(underlying)" }
            return "\(e.code)"
        }
        if "\(error)".contains("CircuitBreaker") { return "connection refused or unreachable" }
        return "\(error)"
    }

    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { conn in try await body(conn.sql()) }
    }

    func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { conn in try await body(conn.sql()) }
        } catch let error as PostgresTransactionError {
            // The transaction was rolled back; callers want the error their own code threw (e.g.
            // `StorageError.duplicate`), as on SQLite.
            if let closureError = error.closureError, error.rollbackError == nil { throw closureError }
            throw error
        }
    }

    func snapshot<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await client.withConnection { conn in
            try await SQLBackends.inTransaction(conn.sql(), begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
        }
    }

    func shutdown() async {
        runner.cancel()
        await runner.value
    }
}

/// Any backend, counted: calls holding a connection, calls waiting for one, and how long each held it
/// (`gatehouse_db_*` in `/metrics`). What the body does is unchanged.
final class InstrumentedBackend: SQLBackend {
    let base: any SQLBackend
    let capacity: Int
    /// Calls in progress (waiting or holding a connection); those holding one. Waiting is the difference.
    private let calls = Atomic<Int>(0)
    private let inUse = Atomic<Int>(0)
    private let metrics = Mutex<GatehouseMetrics?>(nil)

    init(_ base: any SQLBackend, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    var isPostgres: Bool { base.isPostgres }

    var use: ConnectionUse {
        let holding = inUse.load(ordering: .relaxed)
        return ConnectionUse(inUse: holding, waiting: max(0, calls.load(ordering: .relaxed) - holding), capacity: capacity)
    }

    func record(into metrics: GatehouseMetrics) { self.metrics.withLock { $0 = metrics } }

    private func counted<T: Sendable>(
        _ operation: String, _ db: any SQLDatabase, _ body: @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        inUse.add(1, ordering: .relaxed)
        let metrics = self.metrics.withLock { $0 }
        // Tracing on: a client span per call, in the request's trace (no statement text: it may hold values).
        let span = TraceContext.childSpan("db.\(operation)", ofKind: .client)
        span?.attributes["db.system"] = base.isPostgres ? "postgresql" : "sqlite"
        let clock = ContinuousClock()
        let start = clock.now
        defer {
            inUse.subtract(1, ordering: .relaxed)
            metrics?.databaseCall(operation: operation, duration: clock.now - start)
            span?.end()
        }
        return try await body(db)
    }

    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        calls.add(1, ordering: .relaxed)
        defer { calls.subtract(1, ordering: .relaxed) }
        return try await base.read { db in try await self.counted("read", db, body) }
    }

    func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        calls.add(1, ordering: .relaxed)
        defer { calls.subtract(1, ordering: .relaxed) }
        return try await base.transaction { db in try await self.counted("transaction", db, body) }
    }

    func snapshot<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        calls.add(1, ordering: .relaxed)
        defer { calls.subtract(1, ordering: .relaxed) }
        return try await base.snapshot { db in try await self.counted("snapshot", db, body) }
    }

    func shutdown() async { await base.shutdown() }
}
