import Foundation

/// A database location: `sqlite://PATH`, `sqlite::memory:`, or `postgres://user:pass@host:port/db`
/// (also `postgresql://`, with `?sslmode=disable|prefer|require`).
public enum DatabaseURL: Sendable, Equatable, CustomStringConvertible {
    case sqliteFile(path: String)
    case sqliteMemory
    case postgres(host: String, port: Int, user: String, password: String?, database: String, sslMode: SSLMode)

    /// PostgreSQL TLS (`sslmode`): off, when offered, or required.
    public enum SSLMode: String, Sendable { case disable, prefer, require }

    /// A database URL that could not be read, with the reason.
    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static let `default` = DatabaseURL.sqliteFile(path: "gatehouse.sqlite")

    public init(parsing raw: String) throws {
        let s = raw.trimmingCharacters(in: .whitespaces)
        if s == "sqlite::memory:" || s == "sqlite://:memory:" {
            self = .sqliteMemory
        } else if s.hasPrefix("sqlite://") {
            let path = String(s.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw ParseError(description: "sqlite:// needs a file path, e.g. sqlite://gatehouse.sqlite") }
            self = .sqliteFile(path: path.removingPercentEncoding ?? path)
        } else if s.hasPrefix("postgres://") || s.hasPrefix("postgresql://") {
            guard let c = URLComponents(string: s), let host = c.host, !host.isEmpty else {
                throw ParseError(description: "expected postgres://user:pass@host:port/database")
            }
            let database = String(c.path.drop(while: { $0 == "/" }))
            guard !database.isEmpty else { throw ParseError(description: "the postgres URL names no database") }
            guard let user = c.user, !user.isEmpty else { throw ParseError(description: "the postgres URL names no user") }
            var mode = SSLMode.prefer
            if let value = c.queryItems?.first(where: { $0.name == "sslmode" })?.value {
                guard let m = SSLMode(rawValue: value) else {
                    throw ParseError(description: "sslmode must be disable, prefer or require")
                }
                mode = m
            }
            self = .postgres(
                host: host, port: c.port ?? 5432, user: user.removingPercentEncoding ?? user,
                password: c.password.map { $0.removingPercentEncoding ?? $0 }, database: database, sslMode: mode)
        } else {
            throw ParseError(description: "expected sqlite://PATH, sqlite::memory: or postgres://user:pass@host:port/db")
        }
    }

    /// Printable form with the password hidden.
    public var description: String {
        switch self {
        case .sqliteFile(let path): return "sqlite://\(path)"
        case .sqliteMemory: return "sqlite::memory:"
        case .postgres(let host, let port, let user, let password, let database, _):
            return "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
        }
    }
}
