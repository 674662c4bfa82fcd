import Foundation

/// How the body or query of a request to one of our endpoints becomes `RequestParameters`: the rules of
/// RFC 6749 §3.1–§3.2 and §2.3.1 (form bodies, no credentials in URLs) and the JSON bodies some existing
/// clients send. The HTTP layer only collects the bytes (`nil` when the body exceeded its limit).
extension RequestParameters {
    /// A POST to an OAuth endpoint: `application/x-www-form-urlencoded` (the standard) or
    /// `application/json`. Parameters in the query string are refused: credentials never travel in URLs.
    public static func decodeBody(_ body: Data?, contentType: String?, query: String?) throws -> RequestParameters {
        if let query, !query.isEmpty {
            throw OAuthError.invalidRequest.with(description: "Send parameters in the request body, not the URL.")
        }
        guard let body else { throw tooLarge }
        let contentType = mediaType(contentType)
        if contentType == "application/json" {
            return try decodeJSON(body)
        }
        if contentType == "application/x-www-form-urlencoded" || (contentType.isEmpty && body.isEmpty) {
            return try decodeForm(body)
        }
        throw OAuthError.invalidRequest.with(
            description: "Unsupported content type; use application/x-www-form-urlencoded or application/json.")
    }

    /// A form POSTed by a browser page: only `application/x-www-form-urlencoded` (or an empty body).
    public static func decodeFormBody(_ body: Data?, contentType: String?) throws -> RequestParameters {
        guard let body else { throw tooLarge }
        guard mediaType(contentType) == "application/x-www-form-urlencoded" || body.isEmpty else {
            throw OAuthError.invalidRequest.with(description: "Send the form as application/x-www-form-urlencoded.")
        }
        return try decodeForm(body)
    }

    /// The media type of a Content-Type header (RFC 9110 §8.3.1): before any `;` parameters, without
    /// surrounding whitespace, lowercased. Compared whole, so `application/jsonp` is not JSON.
    static func mediaType(_ header: String?) -> String {
        guard let header else { return "" }
        let type = header.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return type.trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// application/x-www-form-urlencoded (WHATWG URL §5.1), keeping repeated names; also query strings.
    public static func decodeForm(_ data: Data) throws -> RequestParameters {
        guard let text = String(data: data, encoding: .utf8) else {
            throw OAuthError.invalidRequest.with(description: "The request body is not UTF-8.")
        }
        var pairs: [(String, String)] = []
        for part in text.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = FormEncoding.decode(kv[0]), let value = FormEncoding.decode(kv.count > 1 ? kv[1] : "") else {
                throw OAuthError.invalidRequest.with(description: "The request body has malformed percent-encoding.")
            }
            // NUL is never meaningful in a parameter (and PostgreSQL refuses it in text).
            guard !name.utf8.contains(0), !value.utf8.contains(0) else { throw nul }
            pairs.append((name, value))
        }
        return RequestParameters(pairs: pairs)
    }

    /// A JSON object whose members are strings (arrays of strings for repeatable parameters such as
    /// `resource`); numbers are read as their text, null as absent. Booleans, objects and NUL characters (in
    /// keys, values or array items) are refused.
    public static func decodeJSON(_ data: Data) throws -> RequestParameters {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw OAuthError.invalidRequest.with(description: "The request body is not a JSON object.")
        }
        // JSONSerialization keeps the last of repeated keys; a repeated parameter must be refused. (A body
        // the key scan cannot read, such as one starting with a byte-order mark, is not an object to it.)
        guard let keys = TopLevelJSONKeys.scan(data) else {
            throw OAuthError.invalidRequest.with(description: "The request body is not a JSON object.")
        }
        guard keys.count == object.count else {
            throw OAuthError.invalidRequest.with(description: "A parameter must not be repeated.")
        }
        var values: [String: [String]] = [:]
        for (k, v) in object {
            guard !k.utf8.contains(0) else { throw nul }
            switch v {
            case let s as String:
                guard !s.utf8.contains(0) else { throw nul }
                values[k] = [s]
            case let list as [Any]:
                let strings = list.compactMap { $0 as? String }
                guard strings.count == list.count else {
                    throw OAuthError.invalidRequest.with(description: "The parameter \(k) must be a string.")
                }
                guard !strings.contains(where: { $0.utf8.contains(0) }) else { throw nul }
                values[k] = strings
            case let n as NSNumber:
                // JSONSerialization reads true and false as NSNumber too (of Objective-C type `c`, or `B`; JSON
                // numbers come as integers or doubles): a boolean is not a parameter value.
                let type = String(cString: n.objCType)
                guard type != "c", type != "B" else {
                    throw OAuthError.invalidRequest.with(description: "The parameter \(k) must be a string.")
                }
                values[k] = [n.stringValue]
            case is NSNull: continue
            default: throw OAuthError.invalidRequest.with(description: "The parameter \(k) must be a string.")
            }
        }
        return RequestParameters(values)
    }

    static let tooLarge = OAuthError.invalidRequest.with(description: "The request body is too large.")
    static let nul = OAuthError.invalidRequest.with(description: "A parameter contains a NUL character.")
}

/// The keys of a JSON object's top level, as written (escapes decoded), duplicates kept; `nil` when the
/// text is not an object. Values are skipped, not parsed (JSONSerialization parses them).
enum TopLevelJSONKeys {
    static func scan(_ data: Data) -> [String]? {
        let b = [UInt8](data)
        var i = 0
        func ws() { while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 } }
        /// Skips a string starting at b[i] == '"'; returns its raw bytes including quotes.
        func string() -> ArraySlice<UInt8>? {
            let start = i
            i += 1
            while i < b.count {
                if b[i] == UInt8(ascii: "\\") { i += 2; continue }
                if b[i] == UInt8(ascii: "\"") { i += 1; return b[start..<i] }
                i += 1
            }
            return nil
        }
        func value() -> Bool {
            var depth = 0
            while i < b.count {
                switch b[i] {
                case UInt8(ascii: "\""): guard string() != nil else { return false }; continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if depth == 0 { return true }
                    depth -= 1
                case UInt8(ascii: ","): if depth == 0 { return true }
                default: break
                }
                i += 1
            }
            return false
        }
        ws()
        guard i < b.count, b[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var keys: [String] = []
        ws()
        if i < b.count, b[i] == UInt8(ascii: "}") { return keys }
        while i < b.count {
            ws()
            guard i < b.count, b[i] == UInt8(ascii: "\""), let raw = string(),
                let key = (try? JSONSerialization.jsonObject(with: Data(raw), options: .fragmentsAllowed)) as? String
            else { return nil }
            keys.append(key)
            ws()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            guard value() else { return nil }
            if b[i] == UInt8(ascii: "}") { return keys }
            i += 1  // ","
        }
        return nil
    }
}
