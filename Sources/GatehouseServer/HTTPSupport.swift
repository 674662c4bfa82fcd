import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// Decoding requests and encoding OAuth responses: the only place that knows how an `OAuthError`
/// becomes HTTP (RFC 6749 §5.2).
enum HTTP {
    static let maxBodySize = 64 * 1024
    /// Sorted keys: stable documents (metadata) and readable responses.
    static let jsonEncoder = JSONEncoder.sortedWithoutEscapingSlashes

    /// Reads the parameters of a POST to an OAuth endpoint: `application/x-www-form-urlencoded` (the
    /// standard) or `application/json` (some existing clients send JSON). Parameters in the query string
    /// are refused: credentials never travel in URLs.
    static func parameters(_ request: inout Request) async throws -> RequestParameters {
        if let query = request.uri.query, !query.isEmpty {
            throw OAuthError.invalidRequest.with(description: "Send parameters in the request body, not the URL.")
        }
        let contentType = (request.headers[.contentType] ?? "").lowercased()
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxBodySize)
        } catch {
            throw OAuthError.invalidRequest.with(description: "The request body is too large.")
        }
        let bytes = Data(body.readableBytesView)
        if contentType.hasPrefix("application/json") {
            return try parseJSON(bytes)
        }
        if contentType.hasPrefix("application/x-www-form-urlencoded") || (contentType.isEmpty && bytes.isEmpty) {
            return try parseForm(bytes)
        }
        throw OAuthError.invalidRequest.with(
            description: "Unsupported content type; use application/x-www-form-urlencoded or application/json.")
    }

    /// The query string's parameters (GET requests of the browser pages and legacy APIs).
    static func query(_ request: Request) throws -> RequestParameters {
        try parseForm(Data((request.uri.query ?? "").utf8))
    }

    /// application/x-www-form-urlencoded (WHATWG URL §5.1), keeping repeated names.
    static func parseForm(_ data: Data) throws -> RequestParameters {
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
            guard !name.utf8.contains(0), !value.utf8.contains(0) else { throw Self.nul }
            pairs.append((name, value))
        }
        return RequestParameters(pairs: pairs)
    }


    /// A JSON object whose members are strings (arrays of strings for repeatable parameters such as
    /// `resource`); numbers and booleans are read as their text.
    static func parseJSON(_ data: Data) throws -> RequestParameters {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw OAuthError.invalidRequest.with(description: "The request body is not a JSON object.")
        }
        // JSONSerialization keeps the last of repeated keys; a repeated parameter must be refused.
        guard let keys = TopLevelJSONKeys.scan(data), keys.count == object.count else {
            throw OAuthError.invalidRequest.with(description: "A parameter must not be repeated.")
        }
        var values: [String: [String]] = [:]
        for (k, v) in object {
            switch v {
            case let s as String: values[k] = [s]
                guard !s.utf8.contains(0) else { throw Self.nul }
            case let list as [Any]:
                let strings = list.compactMap { $0 as? String }
                guard strings.count == list.count else {
                    throw OAuthError.invalidRequest.with(description: "The parameter \(k) must be a string.")
                }
                values[k] = strings
            case let n as NSNumber: values[k] = [n.stringValue]
            case is NSNull: continue
            default: throw OAuthError.invalidRequest.with(description: "The parameter \(k) must be a string.")
            }
        }
        return RequestParameters(values)
    }

    /// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1), or of another scheme in `schemes`
    /// (Lego's `JWT`); nil when absent or of another scheme.
    static func bearerToken(_ request: Request, schemes: [String] = ["bearer"]) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, schemes.contains(parts[0].lowercased()) else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    static let nul = OAuthError.invalidRequest.with(description: "A parameter contains a NUL character.")

    /// HEAD must be safe (RFC 9110 §9.2.1), but Hummingbird answers HEAD by running the GET route's handler.
    /// The GET handlers that change state (issue a code, use up a state or a show-once cookie, end a session,
    /// exchange a token, start an upstream sign-in, mint a token) call this first and answer HEAD with 405,
    /// whatever path spelling reached them, so a link preview or a crawler cannot spend a one-time value.
    /// Every other GET route answers HEAD like GET, without a body.
    static func refuseHead(_ request: Request) -> Response? {
        guard request.method == .head else { return nil }
        return Response(status: .methodNotAllowed, headers: [.allow: "GET", .cacheControl: "no-store"])
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, noStore: Bool = true) throws -> Response {
        let data = try jsonEncoder.encode(value)
        return raw(Array(data), status: status, noStore: noStore)
    }

    static func raw(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, noStore: Bool, contentType: String = "application/json") -> Response {
        var headers: HTTPFields = [.contentType: contentType]
        if noStore {
            // RFC 6749 §5.1, RFC 7662 §2.2
            headers[.cacheControl] = "no-store"
            headers[.pragma] = "no-cache"
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// RFC 6749 §5.2 error response. 401 carries `WWW-Authenticate` (the client authenticates with Basic).
    static func error(_ error: OAuthError) -> Response {
        struct Body: Encodable { let error: String; let error_description: String }
        var response = (try? json(Body(error: error.code, error_description: describe(error.description)),
                                   status: HTTPResponse.Status(code: error.status)))
            ?? Response(status: .internalServerError)
        if error.status == 401 {
            response.headers[.wwwAuthenticate] = "Basic realm=\"gatehouse\", charset=\"UTF-8\""
        }
        return response
    }

    /// RFC 6749 §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E. Descriptions may
    /// quote request values, so anything else becomes `?`, and the text is cut at 200 characters.
    static func describe(_ text: String) -> String { OAuthError(code: "", description: text).safeDescription }

    /// Runs an endpoint body; OAuth errors become §5.2 responses, anything else `server_error` (logged).
    static func endpoint(_ name: String, logger: Logger, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let e as OAuthError {
            var meta: Logger.Metadata = ["endpoint": .string(name), "error": .string(e.code)]
            if let debug = e.debug { meta["detail"] = .string(debug) }
            if let event = e.event {
                meta["event"] = .string(event)
                logger.warning("security event", metadata: meta)
            } else if e.status >= 500 {
                logger.error("request failed", metadata: meta)
            } else {
                logger.debug("request refused", metadata: meta)
            }
            return error(e)
        } catch {
            logger.error("unexpected error", metadata: ["endpoint": .string(name), "detail": .string("\(error)")])
            return Self.error(.serverError)
        }
    }
}

extension GatehouseServices {
    /// The client's IP address: the TCP peer, or behind `trusted_proxies` the address they forwarded.
    func clientAddress(_ request: Request, _ context: GatehouseRequestContext) -> String? {
        ClientAddressResolver(trusted: settings.trustedProxies, header: settings.forwardedHeader).resolve(
            peer: context.remoteAddress?.ipAddress, forwarded: request.headers[values: .forwarded],
            xForwardedFor: request.headers[values: .xForwardedFor])
    }
}

extension HTTPField.Name {
    static let forwarded = Self("Forwarded")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let pragma = Self("Pragma")!
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
