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

    /// application/x-www-form-urlencoded (WHATWG URL §5.1), keeping repeated names.
    static func parseForm(_ data: Data) throws -> RequestParameters {
        guard let text = String(data: data, encoding: .utf8) else {
            throw OAuthError.invalidRequest.with(description: "The request body is not UTF-8.")
        }
        var pairs: [(String, String)] = []
        for part in text.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(kv[0]), let value = decode(kv.count > 1 ? kv[1] : "") else {
                throw OAuthError.invalidRequest.with(description: "The request body has malformed percent-encoding.")
            }
            pairs.append((name, value))
        }
        return RequestParameters(pairs: pairs)
    }

    static func decode(_ s: Substring) -> String? { FormEncoding.decode(s) }

    /// A JSON object whose members are strings (arrays of strings for repeatable parameters such as
    /// `resource`); numbers and booleans are read as their text.
    static func parseJSON(_ data: Data) throws -> RequestParameters {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw OAuthError.invalidRequest.with(description: "The request body is not a JSON object.")
        }
        var values: [String: [String]] = [:]
        for (k, v) in object {
            switch v {
            case let s as String: values[k] = [s]
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
        var response = (try? json(Body(error: error.code, error_description: error.description),
                                   status: HTTPResponse.Status(code: error.status)))
            ?? Response(status: .internalServerError)
        if error.status == 401 {
            response.headers[.wwwAuthenticate] = "Basic realm=\"gatehouse\", charset=\"UTF-8\""
        }
        return response
    }

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

/// Headers every response carries: no framing, no sniffing, no referrer.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.contentSecurityPolicy] = "default-src 'none'; frame-ancestors 'none'"
        response.headers[.referrerPolicy] = "no-referrer"
        response.headers[.xContentTypeOptions] = "nosniff"
        // RFC 9112 §9.6: the connection closes after this response; say so, so the client does not
        // send its next request down a closing socket.
        if let connection = request.headers[.connection], connection.lowercased().contains("close") {
            response.headers[.connection] = "close"
        }
        return response
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let pragma = Self("Pragma")!
}
