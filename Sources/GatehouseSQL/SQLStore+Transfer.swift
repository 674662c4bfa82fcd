import Foundation
import GatehouseCore
import SQLKit
import Synchronization

/// `gatehouse export` / `gatehouse import`: every durable table as JSON Lines, the same on SQLite and
/// PostgreSQL, so that an installation moves from one database to the other (docs/operations.md, "Moving
/// databases").
///
/// The file is one header line, one line per row, and one trailer line:
///
///     {"format":"gatehouse-export","schema":6,"tables":["clients",…],"tokens":true,"version":1,…}
///     {"row":{"id":"…","name":"…",…},"table":"clients"}
///     {"end":true,"rows":1234}
///
/// Rows are copied column by column as stored: password and secret hashes stay hashes, and values sealed
/// with `secrets_key` (private signing keys, provider client secrets) stay sealed, so the importing side
/// needs the same `secrets_key`. `version` is the file format's; `schema` is the database schema
/// (migration) version the rows fit. A file without its trailer (an export that stopped half-way) is
/// refused and nothing is imported.
public enum Transfer {
    public static let format = "gatehouse-export"
    /// The largest integer a cell may hold (2^53: JSON-safe; every time and counter is far below it).
    static let maxInteger: UInt64 = 1 << 53
    public static let version = 1

    /// What an export holds. Tables are durable state; `tokenTables` are left out by `--no-tokens`.
    /// Authorization codes (at most 10 minutes) and pending upstream sign-ins are never exported: a
    /// sign-in in progress while the database moves starts again. A test checks that every table of the
    /// schema is one of these or `neverExported`, so a new table must be classified here.
    public static let tables: [String] = [
        "gatehouse_settings", "scopes", "clients", "users", "signing_keys", "providers", "identities",
        "user_groups", "memberships", "services", "service_permissions", "consents", "failure_counters",
        "revoked_access_tokens", "webhook_outbox", "grants", "refresh_tokens", "sessions", "deleted_users",
        "audit_events",
    ]
    public static let tokenTables: Set<String> = ["grants", "refresh_tokens", "sessions"]
    /// (`activity_counts` only feeds the dashboard's last hour and day.)
    public static let neverExported: Set<String> = [
        "gatehouse_migrations", "authorization_codes", "upstream_flows", "activity_counts",
    ]
    /// Tables whose rows mean the database is in use: `import` refuses to write into it.
    static let occupancyTables = ["users", "clients", "signing_keys", "providers", "grants", "user_groups", "services"]
    /// Rows every migrated database has (they do not mean it is in use).
    static let migrationRows: [String: String] = ["services": "name <> 'gatehouse'"]

    /// A failure with a message for the operator; nothing was written.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Rows written or read, per table.
    public struct Summary: Sendable, CustomStringConvertible {
        public var rows: [String: Int] = [:]
        public var total: Int { rows.values.reduce(0, +) }
        public var description: String {
            let parts = rows.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            return "\(total) rows" + (parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")")
        }
    }

    enum Cell: Codable, Sendable, Equatable {
        case text(String)
        case integer(Int64)
        case null

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .null; return }
            if let i = try? c.decode(Int64.self) { self = .integer(i); return }
            self = .text(try c.decode(String.self))
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .text(let s): try c.encode(s)
            case .integer(let i): try c.encode(i)
            case .null: try c.encodeNil()
            }
        }
    }

    struct Header: Codable {
        var format: String
        var version: Int
        var schema: Int
        var tables: [String]
        var tokens: Bool
        var created_at: Int64
    }

    /// Any line: a header, a row or the trailer (decoded by which fields it has).
    struct Line: Codable {
        var format: String?
        var version: Int?
        var schema: Int?
        var tables: [String]?
        var tokens: Bool?
        var created_at: Int64?
        var table: String?
        var row: [String: Cell]?
        var end: Bool?
        var rows: Int?
    }

    struct RowLine: Encodable {
        let table: String
        let row: [String: Cell]
    }

    struct Trailer: Encodable {
        let end = true
        let rows: Int
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try JSONEncoder.sortedWithoutEscapingSlashes.encode(value), as: UTF8.self)
    }
}

/// One column of a table: its name and whether it holds integers (BIGINT/INTEGER) or text.
struct ColumnInfo: Sendable {
    let name: String
    let isInteger: Bool
}

extension SQLStore {
    /// The columns of `table` in this database, from its catalog.
    static func columns(of table: String, _ db: any SQLDatabase, isPostgres: Bool) async throws -> [ColumnInfo] {
        let rows: [any SQLRow]
        if isPostgres {
            rows = try await db.raw(
                """
                SELECT column_name AS name, data_type AS type FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = \(bind: table) ORDER BY ordinal_position
                """
            ).all()
        } else {
            rows = try await db.raw("SELECT name, type FROM pragma_table_info(\(bind: table)) ORDER BY cid").all()
        }
        return try rows.map { row in
            let type = try row.decode(column: "type", as: String.self).lowercased()
            return ColumnInfo(name: try row.decode(column: "name", as: String.self), isInteger: type.contains("int"))
        }
    }

    /// Every table of the schema (for the test that each one is classified for export).
    package func schemaTables() async throws -> [String] {
        let isPostgres = backend.isPostgres
        return try await backend.read { db in
            let rows = try await db.raw(
                isPostgres
                    ? "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
                    : "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).all()
            return try rows.map { try $0.decode(column: "name", as: String.self) }.sorted()
        }
    }

    /// Writes the export, line by line, to `write` (each call one line without its newline), from one
    /// consistent snapshot of the database: a server may keep running meanwhile.
    public func export(tokens: Bool, write: @escaping @Sendable (String) throws -> Void) async throws -> Transfer.Summary {
        let pending = try await pendingMigrations()
        guard pending.isEmpty else {
            throw Transfer.Failure("the database has pending migrations (\(pending.map(String.init).joined(separator: ", "))): run `gatehouse migrate` first")
        }
        let tables = Transfer.tables.filter { tokens || !Transfer.tokenTables.contains($0) }
        let header = Transfer.Header(
            format: Transfer.format, version: Transfer.version, schema: Migrations.latestVersion, tables: tables,
            tokens: tokens, created_at: clock.nowSeconds)
        try write(try Transfer.encode(header))
        let isPostgres = backend.isPostgres
        let summary = try await backend.snapshot { db in
            var summary = Transfer.Summary()
            for table in tables {
                let columns = try await Self.columns(of: table, db, isPostgres: isPostgres)
                let failure = Mutex<(any Error)?>(nil)
                let count = Atomic<Int>(0)
                try await db.raw("SELECT * FROM \(ident: table)").run { row in
                    do {
                        var cells: [String: Transfer.Cell] = [:]
                        for column in columns {
                            if try row.decodeNil(column: column.name) {
                                cells[column.name] = .null
                            } else if column.isInteger {
                                cells[column.name] = .integer(try row.decode(column: column.name, as: Int64.self))
                            } else {
                                cells[column.name] = .text(try row.decode(column: column.name, as: String.self))
                            }
                        }
                        try write(try Transfer.encode(Transfer.RowLine(table: table, row: cells)))
                        count.add(1, ordering: .relaxed)
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                    }
                }
                if let error = failure.withLock({ $0 }) { throw error }
                summary.rows[table] = count.load(ordering: .relaxed)
            }
            return summary
        }
        try write(try Transfer.encode(Transfer.Trailer(rows: summary.total)))
        return summary
    }

    /// Reads an export (`next()` returns each line without its newline, `nil` at the end) into this
    /// database, which must be new: no tables yet, or migrated and without users, clients, keys,
    /// providers, grants, groups or services. Everything is written in one transaction: a file that is
    /// malformed, truncated or from an unknown format version leaves the database as it was. The schema
    /// is migrated to the export's version first and to the latest after.
    public func importExport(next: @escaping @Sendable () throws -> String?) async throws -> Transfer.Summary {
        guard let first = try next() else { throw Transfer.Failure("the file is empty: not a Gatehouse export") }
        guard let line = try? JSONDecoder().decode(Transfer.Line.self, from: Data(first.utf8)),
            line.format == Transfer.format, let version = line.version
        else { throw Transfer.Failure("line 1: not a Gatehouse export (no \"format\":\"\(Transfer.format)\" header)") }
        guard version == Transfer.version else {
            throw Transfer.Failure("unsupported export format version \(version): this Gatehouse reads version \(Transfer.version) (import with the Gatehouse release that exported it, or a newer one)")
        }
        guard let schema = line.schema, let tables = line.tables, line.tokens != nil else {
            throw Transfer.Failure("line 1: the header lacks schema, tables or tokens")
        }
        guard schema <= Migrations.latestVersion else {
            throw Transfer.Failure("the export is of database schema \(schema), newer than this Gatehouse's (\(Migrations.latestVersion)): upgrade Gatehouse first")
        }
        guard schema >= 1 else { throw Transfer.Failure("line 1: schema \(schema) is not a schema version") }
        for table in tables where !Transfer.tables.contains(table) {
            throw Transfer.Failure("line 1: unknown table \(table)")
        }

        // The target: new (no migrations table), or at exactly the export's schema and unused.
        let applied: [Int]
        do {
            let pending = try await Migrations.pending(backend)
            applied = Migrations.all.map(\.version).filter { !pending.contains($0) }
        } catch {
            applied = []  // no migrations table: a new database
        }
        if applied.isEmpty {
            _ = try await Migrations.migrate(backend, clock: clock, upTo: schema)
        } else if applied != Migrations.all.map(\.version).filter({ $0 <= schema }) {
            throw Transfer.Failure("the database is at schema version \(applied.max() ?? 0) and the export at \(schema): import into a new, empty database")
        }
        let isPostgres = backend.isPostgres
        let summary: Transfer.Summary
        do {
            summary = try await importRows(tables: tables, schema: schema, isPostgres: isPostgres, next: next)
        } catch {
            // A refused file leaves the database as a newly migrated one (not stuck at an older schema).
            if applied.isEmpty { _ = try? await Migrations.migrate(backend, clock: clock) }
            throw error
        }
        _ = try await Migrations.migrate(backend, clock: clock)
        return summary
    }

    private func importRows(
        tables: [String], schema: Int, isPostgres: Bool, next: @escaping @Sendable () throws -> String?
    ) async throws -> Transfer.Summary {
        try await backend.transaction { db in
            for table in Transfer.occupancyTables {
                let condition = Transfer.migrationRows[table].map { " WHERE " + $0 } ?? ""
                let row = try await db.raw("SELECT COUNT(*) AS n FROM \(ident: table)\(unsafeRaw: condition)").first()
                if let n = try row?.decode(column: "n", as: Int64.self), n > 0 {
                    throw Transfer.Failure("the database is not empty (table \(table) has \(n) rows): import into a new, empty database")
                }
            }
            var columns: [String: [String: ColumnInfo]] = [:]
            for table in tables {
                let found = try await Self.columns(of: table, db, isPostgres: isPostgres)
                guard !found.isEmpty else { throw Transfer.Failure("line 1: there is no table \(table) at schema \(schema)") }
                columns[table] = Dictionary(uniqueKeysWithValues: found.map { ($0.name, $0) })
                // What migrations put there (built-in scopes, shared settings) is replaced by the export's.
                try await db.raw("DELETE FROM \(ident: table)").run()
            }

            var summary = Transfer.Summary()
            var batch = InsertBatch()
            var lineNumber = 1
            var ended = false
            while let text = try next() {
                lineNumber += 1
                if ended {
                    if text.isEmpty { continue }
                    throw Transfer.Failure("line \(lineNumber): data after the end of the export")
                }
                guard let line = try? JSONDecoder().decode(Transfer.Line.self, from: Data(text.utf8)) else {
                    throw Transfer.Failure("line \(lineNumber): not a JSON object of a Gatehouse export")
                }
                if line.end == true {
                    guard line.rows == summary.total + batch.count else {
                        throw Transfer.Failure("line \(lineNumber): the export says \(line.rows.map(String.init) ?? "no") rows, the file has \(summary.total + batch.count)")
                    }
                    ended = true
                    continue
                }
                guard let table = line.table, let row = line.row else {
                    throw Transfer.Failure("line \(lineNumber): neither a row nor the end of the export")
                }
                guard let known = columns[table] else {
                    throw Transfer.Failure("line \(lineNumber): table \(table) is not in the export's header")
                }
                for (name, cell) in row {
                    guard let column = known[name] else {
                        throw Transfer.Failure("line \(lineNumber): table \(table) has no column \(name) at schema \(schema)")
                    }
                    switch (cell, column.isInteger) {
                    case (.text, true), (.integer, false):
                        throw Transfer.Failure("line \(lineNumber): \(table).\(name) has the wrong type")
                    case (.integer(let i), true) where i.magnitude > Transfer.maxInteger:
                        // Times and counters are far below 2^53; larger values would overflow later arithmetic.
                        throw Transfer.Failure("line \(lineNumber): \(table).\(name) is out of range")
                    default: break
                    }
                }
                if !batch.accepts(table: table, columns: row.keys.sorted()) {
                    summary.rows[batch.table, default: 0] += try await batch.flush(db)
                }
                batch.add(table: table, row: row)
            }
            guard ended else {
                throw Transfer.Failure("the file ends before the export's last line (was the export interrupted?): nothing imported")
            }
            if !batch.isEmpty { summary.rows[batch.table, default: 0] += try await batch.flush(db) }
            try await self.checkSealedValues(db)
            return summary
        }
    }

    /// Before the import commits: every private key and provider secret opens with this installation's
    /// `secrets_key`, and with a `secrets_key` none is stored in clear (an export of such an installation
    /// never holds one; a file that does was made by hand).
    private func checkSealedValues(_ db: any SQLDatabase) async throws {
        let sealed: [(table: String, id: String, value: String?, context: String)] =
            try await db.raw("SELECT kid, private_pem FROM signing_keys").all().map {
                let kid = try $0.decode(column: "kid", as: String.self)
                return ("signing key", kid, try $0.decode(column: "private_pem", as: String?.self), Self.privateKeyContext(kid))
            }
            + db.raw("SELECT id, client_secret FROM providers").all().map {
                let id = try $0.decode(column: "id", as: String.self)
                return ("provider", id, try $0.decode(column: "client_secret", as: String?.self), Self.providerSecretContext(id))
            }
        for item in sealed {
            guard let value = item.value else { continue }
            if secrets != nil, !value.hasPrefix(SecretBox.prefix) {
                throw Transfer.Failure("\(item.table) \(item.id) is stored unencrypted, but secrets_key is set: refused")
            }
            do {
                _ = try openSecret(value, context: item.context)
            } catch {
                throw Transfer.Failure("\(item.table) \(item.id) does not open with this secrets_key: import with the secrets_key of the installation that exported it")
            }
        }
    }

    /// `gatehouse backup --to FILE`: a consistent copy of an SQLite database file (`VACUUM INTO`, safe
    /// while a server writes to it), created readable by its owner only. PostgreSQL: an error that says
    /// to use pg_dump.
    public func backup(to path: String) async throws {
        switch url {
        case .postgres(let host, let port, let user, _, let database, _):
            // Each value shell-quoted when it needs it: the line is meant to be pasted.
            func q(_ s: String) -> String {
                s.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "-_./:@".unicodeScalars.contains($0) })
                    ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
            }
            throw Transfer.Failure(
                "backup copies an SQLite file; for PostgreSQL use pg_dump: pg_dump --format=custom --host=\(q(host)) --port=\(port) --username=\(q(user)) --file=\(q(path)) \(q(database)) (docs/operations.md, \"Backups\")")
        case .sqliteMemory:
            throw Transfer.Failure("an in-memory database has nothing to back up")
        case .sqliteFile:
            break
        }
        let fm = FileManager.default
        // An empty file of our own, mode 0600 from the start, that VACUUM INTO then fills.
        do {
            try PrivateFile.create(path).close()
        } catch let failure as PrivateFile.Failure {
            throw Transfer.Failure("cannot back up to \(failure)")
        }
        do {
            try await backend.read { db in try await db.raw("VACUUM INTO \(bind: path)").run() }
        } catch {
            try? fm.removeItem(atPath: path)
            throw Transfer.Failure("backup to \(path) failed: \(error)")
        }
    }
}

/// Consecutive rows of one table with the same columns, inserted together (up to 200 per statement).
private struct InsertBatch {
    private(set) var table = ""
    private var columns: [String] = []
    private var rows: [[String: Transfer.Cell]] = []

    var count: Int { rows.count }
    var isEmpty: Bool { rows.isEmpty }

    func accepts(table: String, columns: [String]) -> Bool {
        rows.isEmpty || (table == self.table && columns == self.columns && rows.count < 200)
    }

    mutating func add(table: String, row: [String: Transfer.Cell]) {
        if rows.isEmpty {
            self.table = table
            columns = row.keys.sorted()
        }
        rows.append(row)
    }

    mutating func flush(_ db: any SQLDatabase) async throws -> Int {
        defer { rows.removeAll(keepingCapacity: true) }
        guard !rows.isEmpty else { return 0 }
        var insert = db.insert(into: SQLIdentifier(table)).columns(columns.map { SQLIdentifier($0) as any SQLExpression })
        for row in rows {
            insert = insert.values(
                columns.map { name -> any SQLExpression in
                    switch row[name] ?? .null {
                    case .text(let s): SQLBind(s)
                    case .integer(let i): SQLBind(i)
                    case .null: SQLLiteral.null
                    }
                })
        }
        try await insert.run()
        return rows.count
    }
}
