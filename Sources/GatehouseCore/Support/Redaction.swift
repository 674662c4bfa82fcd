import Foundation

/// Forms of values that are safe to log or store as an error message.
public enum Redaction {
    /// A URL without what often carries a secret: the credentials before the host, the query (webhook and
    /// callback URLs often hold a token there; `?…` marks that one was cut) and the fragment.
    /// `scheme://host[:port]/…`: no user, path, query or fragment (a hook's token may be in its path).
    public static func origin(_ text: String) -> String {
        guard let parts = URLComponents(string: text), let scheme = parts.scheme, let host = parts.host else {
            return "<unparseable URL>"
        }
        let port = parts.port.map { ":\($0)" } ?? ""
        let rest = parts.path.isEmpty || parts.path == "/" ? (parts.query == nil ? "" : "/…") : "/…"
        return "\(scheme)://\(host)\(port)\(rest)"
    }

    public static func url(_ text: String) -> String {
        guard var parts = URLComponents(string: text), parts.scheme != nil else { return "<unparseable URL>" }
        parts.user = nil
        parts.password = nil
        let hadQuery = parts.query != nil
        parts.query = nil
        parts.fragment = nil
        return (parts.string ?? "<unparseable URL>") + (hadQuery ? "?…" : "")
    }

    /// `text` with control characters escaped (`\n`, `\u{1b}` …) and cut at `limit` characters: a value from
    /// a request, put in a log line, cannot start a line of its own or move the terminal's cursor.
    public static func logValue(_ text: String, limit: Int = 300) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= limit {
                out += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || scalar == "\u{2028}" || scalar == "\u{2029}"
                {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
