import Foundation

/// Redirect URI rules (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1, OAuth 2.1 §2.3.1).
public enum RedirectURI {
    /// The out-of-band value still used by command-line clients.
    public static let outOfBand = "urn:ietf:wg:oauth:2.0:oob"

    /// Registration: absolute, no fragment (§3.1.2), no user info, no wildcards; https, or http on a
    /// loopback address (RFC 8252 §7.3), or a private-use scheme in reverse-domain form (RFC 8252 §7.1);
    /// never `javascript:`, `data:`, `vbscript:` or `file:`.
    public static func validateForRegistration(_ uri: String) throws {
        func fail(_ why: String) -> Administration.ValidationError {
            Administration.ValidationError("invalid redirect URI '\(uri)': \(why)")
        }
        if uri == outOfBand { return }
        guard !uri.isEmpty, uri.count <= 2000, !uri.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F })
        else { throw fail("empty, too long, or contains spaces or control characters") }
        guard !uri.contains("#") else { throw fail("fragments are not allowed") }
        guard !uri.contains("*") else { throw fail("wildcards are not allowed") }
        guard let components = URLComponents(string: uri), let scheme = components.scheme?.lowercased() else {
            throw fail("not an absolute URI")
        }
        guard !["javascript", "data", "vbscript", "file", "about", "blob"].contains(scheme) else {
            throw fail("the \(scheme): scheme is not allowed")
        }
        guard components.user == nil, components.password == nil else { throw fail("user info is not allowed") }
        switch scheme {
        case "https":
            guard let host = components.host, !host.isEmpty else { throw fail("missing host") }
        case "http":
            // RFC 8252 §7.3 / §8.3: loopback IP literals, not the name "localhost".
            guard let host = components.host, isLoopback(host), host.lowercased() != "localhost" else {
                throw fail("http is only allowed for loopback addresses (127.0.0.1, [::1]); use https")
            }
        default:
            // RFC 8252 §7.1: private-use schemes are reverse domain names, e.g. com.example.app:/callback.
            guard scheme.contains(".") else {
                throw fail("custom schemes must be reverse-domain names such as com.example.app")
            }
        }
    }

    /// `localhost`, `::1`, or an IPv4 literal in 127.0.0.0/8 (not a name that merely starts with "127.").
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h == "::1" { return true }
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets[0] == "127" else { return false }
        return octets.allSatisfy { o in !o.isEmpty && o.count <= 3 && o.allSatisfy(\.isASCII) && UInt8(o) != nil }
    }

    /// Whether a requested redirect URI matches a registered one (RFC 9700 §4.1.3, OAuth 2.1 §4.1.2.1):
    /// exact string comparison, with one exception: an `http` loopback IP literal (127.0.0.1 or [::1]) may
    /// carry any port, since native apps bind an ephemeral one (RFC 8252 §7.3). Everything else — case,
    /// path, query, trailing slash, encoding — must be identical.
    public static func matches(registered: String, requested: String) -> Bool {
        if Secrets.constantTimeEquals(registered, requested) { return true }
        guard let r = withoutLoopbackPort(registered), let q = withoutLoopbackPort(requested) else { return false }
        return r == q
    }

    /// `requested` without one `redirect_state` query parameter (python-social-auth's), or nil when it has
    /// none. Only that parameter is removed; everything else must still match exactly.
    public static func withoutRedirectState(_ requested: String) -> String? {
        guard !requested.contains("#"), let q = requested.firstIndex(of: "?") else { return nil }
        let base = requested[..<q]
        let pairs = requested[requested.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false)
        let kept = pairs.filter { !$0.hasPrefix("redirect_state=") }
        guard pairs.count - kept.count == 1 else { return nil }
        return kept.isEmpty ? String(base) : base + "?" + kept.joined(separator: "&")
    }

    /// `http://127.0.0.1:PORT/rest` → `http://127.0.0.1/rest` (same for `[::1]`); `nil` for anything else.
    static func withoutLoopbackPort(_ uri: String) -> String? {
        let prefix = "http://"
        guard uri.hasPrefix(prefix) else { return nil }
        let rest = uri.dropFirst(prefix.count)
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<end]
        for host in ["127.0.0.1", "[::1]"] where authority.hasPrefix(host) {
            let port = authority.dropFirst(host.count)
            if port.isEmpty { return prefix + host + rest[end...] }
            guard port.first == ":", (2...6).contains(port.count), port.dropFirst().allSatisfy(\.isASCII),
                port.dropFirst().allSatisfy(\.isNumber)
            else { return nil }
            return prefix + host + rest[end...]
        }
        return nil
    }

    /// Adds query parameters to a redirect URI (RFC 6749 §4.1.2: keep its existing query), skipping nil values.
    public static func appending(_ parameters: [(String, String?)], to uri: String) -> String {
        let query = parameters.compactMap { name, value in value.map { "\(FormEncoding.encode(name))=\(FormEncoding.encode($0))" } }
            .joined(separator: "&")
        guard !query.isEmpty else { return uri }
        return uri + (uri.contains("?") ? "&" : "?") + query
    }
}
