import Foundation
import GatehouseCore
import GatehouseResourceServer
import HTTPTypes
import Hummingbird
import Logging

/// Decoding requests and encoding OAuth responses: the only place that knows how an `OAuthError`
/// becomes HTTP (RFC 6749 §5.2).
enum HTTP {
    static let maxBodySize = 64 * 1024
    /// Sorted keys: stable documents (metadata) and readable responses.
    static let jsonEncoder = JSONEncoder.sortedWithoutEscapingSlashes

    /// Reads the parameters of a POST to an OAuth endpoint (the rules are `RequestParameters.decodeBody`).
    static func parameters(_ request: inout Request) async throws -> RequestParameters {
        let body = await body(&request)
        return try RequestParameters.decodeBody(
            body.map { Data($0.readableBytesView) }, contentType: request.headers[.contentType],
            query: request.uri.query)
    }

    /// The body, at most `maxBodySize` bytes; nil (413) when larger. A declared `Content-Length` over the
    /// limit is refused before anything is read.
    private static func body(_ request: inout Request) async -> ByteBuffer? {
        if let declared = request.headers[.contentLength], let length = Int(declared), length > maxBodySize { return nil }
        return try? await request.collectBody(upTo: maxBodySize)
    }

    /// The query string's parameters (GET requests of the browser pages and legacy APIs).
    static func query(_ request: Request) throws -> RequestParameters {
        try RequestParameters.decodeForm(Data((request.uri.query ?? "").utf8))
    }

    /// A browser form's body (`RequestParameters.decodeFormBody`).
    static func formBody(_ request: inout Request) async throws -> RequestParameters {
        let body = await body(&request)
        return try RequestParameters.decodeFormBody(
            body.map { Data($0.readableBytesView) }, contentType: request.headers[.contentType])
    }

    /// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1, the resource-server library's
    /// `BearerToken`), or of another scheme in `schemes` (Lego's `JWT`); nil when absent, malformed or of
    /// another scheme.
    static func bearerToken(_ request: Request, schemes: Set<String> = ["bearer"]) -> String? {
        try? BearerToken.fromAuthorizationHeader(request.headers[.authorization], schemes: schemes)
    }

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

    /// A refusal of the router itself (no such route: 404; a method the route lacks: 405) as RFC 9457 problem
    /// details, keeping the error's headers (`Allow`). HEAD answers have no body.
    static func problem(_ error: any HTTPResponseError, request: Request, context: some RequestContext) throws
        -> Response
    {
        var response = try error.response(from: request, context: context)
        guard request.method != .head else { return response }
        let status = response.status
        response.headers[.contentType] = "application/problem+json"
        response.headers[.cacheControl] = "no-store"
        let detail = status.code == 404 ? "There is nothing at this address." : status.code == 405 ? "This method is not allowed here." : status.reasonPhrase
        response.body = .init(
            byteBuffer: ByteBuffer(string: #"{"detail":"\#(detail)","status":\#(status.code),"title":"\#(status.reasonPhrase)","type":"about:blank"}"#))
        return response
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
    static func describe(_ text: String) -> String { OAuthError.safeDescription(text) }

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
        settings.clientAddress(request, context)
    }
}

extension ServerSettings {
    /// The client's IP address: the TCP peer, or behind `trusted_proxies` the address they forwarded.
    func clientAddress(_ request: Request, _ context: GatehouseRequestContext) -> String? {
        ClientAddressResolver(trusted: trustedProxies, header: forwardedHeader).resolve(
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
