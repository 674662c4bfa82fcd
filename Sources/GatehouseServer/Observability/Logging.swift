import Foundation
import GatehouseCore
import Logging
import Synchronization

/// How log lines are written (`log_format`).
public enum LogFormat: String, Sendable {
    /// swift-log's `StreamLogHandler` lines on standard error, control characters escaped
    /// (`TextLogHandler`).
    case text
    /// One JSON object per line on standard error (`JSONLogHandler`).
    case json

    /// Metadata values longer than this are cut (`…`), in both formats.
    static let valueLimit = 2000

    /// Makes every logger of the process write in this format. Call once, before the first logger is made.
    /// `also`: more metadata on every line (`gatehouse serve` with tracing adds the trace and span ids).
    public func bootstrap(also: [Logger.MetadataProvider] = []) {
        let provider = Logger.MetadataProvider.multiplex([RequestID.metadataProvider] + also) ?? RequestID.metadataProvider
        switch self {
        case .text:
            LoggingSystem.bootstrap(
                { TextLogHandler(StreamLogHandler.standardError(label: $0, metadataProvider: $1)) },
                metadataProvider: provider)
        case .json:
            LoggingSystem.bootstrap({ JSONLogHandler(label: $0, metadataProvider: $1) }, metadataProvider: provider)
        }
    }
}

/// swift-log's text lines, with every message and metadata value passed through `Redaction.logValue`: a
/// value that came from a request (a client id, a username) cannot forge a log line of its own with a
/// newline, or send terminal escapes.
public struct TextLogHandler: LogHandler {
    var inner: StreamLogHandler

    public init(_ inner: StreamLogHandler) { self.inner = inner }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue.mapValues(Self.escaped) }
    }
    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }
    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue.map(Self.escaped) }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        // Messages may span lines on purpose (the start-up banner); only values are escaped there.
        inner.log(
            level: level, message: message, metadata: metadata?.mapValues(Self.escaped), source: source, file: file,
            function: function, line: line)
    }

    static func escaped(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let s): return .string(quoted(Redaction.logValue(s, limit: LogFormat.valueLimit)))
        case .stringConvertible(let v): return .string(quoted(Redaction.logValue(v.description, limit: LogFormat.valueLimit)))
        case .array(let items): return .array(items.map(escaped))
        case .dictionary(let dict): return .dictionary(dict.mapValues(escaped))
        }
    }
}

extension TextLogHandler {
    /// A value with a space, `=` or `"` in it is quoted (inner quotes and backslashes escaped), so it cannot
    /// pass for more `key=value` fields on the line.
    static func quoted(_ s: String) -> String {
        guard s.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

/// A swift-log handler that writes one JSON object per line, for log collectors (Loki, Elasticsearch,
/// CloudWatch): `time` (RFC 3339, UTC, milliseconds), `level`, `message`, `logger` (the label), then the
/// metadata as fields (`request_id`, `route`, `status`, `duration_ms`, `client_id`, …). Integer and boolean
/// metadata stay numbers and booleans; a metadata key that would shadow one of the four is written with a
/// `meta_` prefix. What goes into metadata is decided by the code that logs: Gatehouse never logs a token,
/// secret, password, code or cookie value, in either format.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    let label: String
    let write: @Sendable (String) -> Void

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.init(label: label, metadataProvider: metadataProvider, write: JSONLogHandler.standardError)
    }

    /// `write` receives each line, newline included (tests collect them).
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        var fields = self.metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let explicit { fields.merge(explicit) { _, new in new } }
        var out = "{\"time\":\"" + Self.timestamp(Date()) + "\",\"level\":\"" + level.rawValue + "\",\"message\":"
        Self.appendString(message.description, to: &out)
        out += ",\"logger\":"
        Self.appendString(label, to: &out)
        for key in fields.keys.sorted() {
            out += ","
            Self.appendString(Self.reserved.contains(key) ? "meta_" + key : key, to: &out)
            out += ":"
            Self.append(fields[key]!, to: &out)
        }
        out += "}\n"
        write(out)
    }

    static let reserved: Set<String> = ["time", "level", "message", "logger"]

    private static let lock = Mutex(())
    /// One write per line, under a lock, so lines from concurrent requests never interleave.
    @Sendable static func standardError(_ line: String) {
        lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }

    /// `2026-12-03T19:04:05.123Z`.
    static func timestamp(_ date: Date) -> String {
        date.formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
    }

    static func append(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let s): appendString(capped(s), to: &out)
        case .stringConvertible(let v):
            switch v {
            case let b as Bool: out += b ? "true" : "false"
            case let i as any BinaryInteger: out += "\(i)"
            case let d as Double where d.isFinite: out += "\(d)"
            default: appendString(capped(v.description), to: &out)
            }
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                append(item, to: &out)
            }
            out += "]"
        case .dictionary(let dict):
            out += "{"
            for (i, key) in dict.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                appendString(key, to: &out)
                out += ":"
                append(dict[key]!, to: &out)
            }
            out += "}"
        }
    }

    /// A metadata value of at most `LogFormat.valueLimit` characters (`…` marks a cut), as in the text format.
    static func capped(_ s: String) -> String {
        s.count <= LogFormat.valueLimit ? s : String(s.prefix(LogFormat.valueLimit)) + "…"
    }

    /// A JSON string (RFC 8259 §7): quotes, backslashes and control characters escaped; U+2028 and U+2029
    /// too, so a line is also a valid JavaScript literal.
    static func appendString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{2028}", "\u{2029}", "\u{7F}":
                out += String(format: "\\u%04x", scalar.value)
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
