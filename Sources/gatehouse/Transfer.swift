import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer
import Synchronization

// `gatehouse export`, `gatehouse import` and `gatehouse backup` (docs/operations.md, "Backups" and
// "Moving databases").

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write every durable table to a JSON Lines file (or standard output), from one consistent snapshot.",
        discussion: """
            Users keep their password hashes, clients their secret hashes, and values sealed with secrets_key stay \
            sealed: import with the same secrets_key. Moves an installation between databases while it runs:
              gatehouse export --database sqlite://gatehouse.sqlite | gatehouse import --database postgres://…
            """)
    @OptionGroup var common: CommonOptions
    @Option(help: "Write to this file (created readable by its owner only; never overwritten). Default: standard output.")
    var to: String?
    @Flag(help: "Leave out grants, refresh tokens and browser sessions (everyone signs in again after an import).")
    var noTokens = false

    func run() async throws {
        let output: LineWriter
        if let to {
            output = try LineWriter(creating: to)
        } else {
            output = LineWriter(handle: .standardOutput)
        }
        let summary: Transfer.Summary
        do {
            summary = try await common.withStore(migrating: false) { store, _ in
                try await store.export(tokens: !noTokens) { try output.write($0) }
            }
            try output.finish()
        } catch {
            output.abandon()
            if let failure = error as? Transfer.Failure { throw CLIError(failure.description) }
            throw error
        }
        struct Out: Encodable { let rows: [String: Int]; let total: Int; let file: String? }
        let text = "exported \(summary)" + (to.map { " to \($0)" } ?? "")
        if to != nil {
            try common.print(json: Out(rows: summary.rows, total: summary.total, file: to), text: text)
        } else {
            // Standard output is the export itself.
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a `gatehouse export` file into a new, empty database (all or nothing).",
        discussion: """
            The database must be new (or only migrated). The whole file is written in one transaction: a file that is \
            truncated, malformed or of an unknown format version changes nothing. Use the secrets_key of the exporting \
            installation.
            """)
    @OptionGroup var common: CommonOptions
    @Argument(help: "The export file; - or nothing: standard input.")
    var file: String = "-"

    func run() async throws {
        let reader: LineReader
        if file == "-" {
            reader = LineReader(handle: .standardInput)
        } else {
            guard let handle = FileHandle(forReadingAtPath: file) else { throw CLIError("cannot read \(file)") }
            reader = LineReader(handle: handle)
        }
        let summary = try await common.withStore(migrating: false) { store, _ in
            let summary: Transfer.Summary
            // The sealed values are checked against secrets_key inside the import, before it commits.
            do {
                summary = try await store.importExport { try reader.next() }
            } catch let failure as Transfer.Failure {
                throw CLIError("import failed, nothing imported: \(failure)")
            } catch let failure as LineReader.Failure {
                throw CLIError("import failed, nothing imported: \(failure)")
            }
            return summary
        }
        struct Out: Encodable { let rows: [String: Int]; let total: Int }
        try common.print(json: Out(rows: summary.rows, total: summary.total), text: "imported \(summary)")
    }
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy an SQLite database to a new file, consistently, while the server runs (PostgreSQL: use pg_dump).")
    @OptionGroup var common: CommonOptions
    @Option(help: "The backup file to create (readable by its owner only; never overwritten).")
    var to: String

    func run() async throws {
        try await common.withStore(migrating: false) { store, config in
            do {
                try await store.backup(to: to)
            } catch let failure as Transfer.Failure {
                throw CLIError(failure.description)
            }
            struct Out: Encodable { let database: String; let file: String; let bytes: Int }
            let bytes = (try? FileManager.default.attributesOfItem(atPath: to))?[.size] as? Int ?? 0
            try common.print(
                json: Out(database: config.database.description, file: to, bytes: bytes),
                text: "backed up \(config.database) to \(to) (\(bytes) bytes)")
        }
    }
}

/// Lines of a file or pipe, read in 64 KiB chunks; a line longer than 64 MiB is an error (not an export).
final class LineReader: Sendable {
    struct Failure: Error, CustomStringConvertible { let description: String }
    private struct State {
        var buffer: [UInt8] = []
        var start = 0
        var atEnd = false
    }
    private let handle: FileHandle
    private let state = Mutex(State())
    static let maximumLine = 64 << 20

    init(handle: FileHandle) { self.handle = handle }

    func next() throws -> String? {
        try state.withLock { s in
            while true {
                if let newline = s.buffer[s.start...].firstIndex(of: UInt8(ascii: "\n")) {
                    var line = Array(s.buffer[s.start..<newline])
                    s.start = newline + 1
                    if line.last == UInt8(ascii: "\r") { line.removeLast() }
                    return String(decoding: line, as: UTF8.self)
                }
                if s.atEnd {
                    guard s.start < s.buffer.count else { return nil }
                    let line = Array(s.buffer[s.start...])
                    s.start = s.buffer.count
                    return String(decoding: line, as: UTF8.self)
                }
                if s.buffer.count - s.start > Self.maximumLine {
                    throw Failure(description: "a line longer than 64 MiB: not a Gatehouse export")
                }
                if s.start > 0 {
                    s.buffer.removeFirst(s.start)
                    s.start = 0
                }
                let chunk = try handle.read(upToCount: 64 << 10) ?? Data()
                if chunk.isEmpty { s.atEnd = true } else { s.buffer.append(contentsOf: chunk) }
            }
        }
    }
}

/// Lines to a file or standard output, buffered. A file is created readable by its owner only (an export
/// holds password hashes and, without secrets_key, private keys) and removed again when the export fails.
final class LineWriter: Sendable {
    private let handle: FileHandle
    private let path: String?
    private let buffer = Mutex<[UInt8]>([])

    init(handle: FileHandle) {
        self.handle = handle
        self.path = nil
    }

    init(creating path: String) throws {
        do {
            self.handle = try PrivateFile.create(path)
        } catch let failure as PrivateFile.Failure {
            throw CLIError("cannot export to \(failure)")
        }
        self.path = path
    }

    func write(_ line: String) throws {
        let full: [UInt8]? = buffer.withLock { b in
            b.append(contentsOf: line.utf8)
            b.append(UInt8(ascii: "\n"))
            guard b.count >= 256 << 10 else { return nil }
            defer { b.removeAll(keepingCapacity: true) }
            return b
        }
        if let full { try handle.write(contentsOf: full) }
    }

    func finish() throws {
        let rest = buffer.withLock { b in defer { b.removeAll() }; return b }
        if !rest.isEmpty { try handle.write(contentsOf: rest) }
        if path != nil {
            try handle.synchronize()
            try handle.close()
        }
    }

    func abandon() {
        guard let path else { return }
        try? handle.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}
