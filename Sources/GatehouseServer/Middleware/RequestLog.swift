import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// The outermost middleware: gives every request an id and, with `access_log`, writes one `info` line when
/// it has been answered.
///
/// The id is the request's `X-Request-Id` when that is a safe token (1–128 of `A–Z a–z 0–9 . _ ~ : + / = -`),
/// so a proxy's id carries through; otherwise a new random one. It is returned in `X-Request-Id` on every
/// response and is `RequestID.current` while the request runs, so every line logged for it carries
/// `request_id` (through `RequestID.metadataProvider`, which `LogFormat.bootstrap` installs).
///
/// The access line has `method`, `route` (the route template, never the path as sent or its query string,
/// which may hold a code or a token), `status`, `duration_ms`, `remote_address` (after `trusted_proxies`)
/// and, where a handler established it, `client_id`.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    let accessLog: Bool
    /// A server span around each sampled request (`otel_endpoint`; `RequestSpan`).
    var tracing: TraceSampler?
    let settings: ServerSettings
    /// Requests by route template, method and status class, and their latency.
    let metrics: GatehouseMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let id = Self.requestID(request.headers[.xRequestID])
        // Audit events recorded while the request runs name its id and client address.
        let audit = AuditRequest.Info(requestID: id, clientAddress: settings.clientAddress(request, context))
        return try await AuditRequest.$current.withValue(audit) { try await RequestID.$current.withValue(id) {
            var response: Response
            if let tracing, RequestSpan.traced(request, sampler: tracing) {
                response = try await RequestSpan.around(request, context: context) {
                    try await run(request, context: context, next: next)
                }
            } else {
                response = try await run(request, context: context, next: next)
            }
            response.headers[.xRequestID] = id
            return response
        } }
    }

    private func run(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            // Refusals of the router (404, 405, a body over Hummingbird's limit) that no inner middleware
            // answered: answered here, so they get an id too.
            response = try HTTP.problem(error, request: request, context: context)
        } catch {
            logger.error("unhandled error", metadata: ["detail": .string("\(type(of: error))")])
            response = Response(status: .internalServerError, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"error":"server_error"}"#)))
        }
        let elapsed = ContinuousClock.now - start
        // Hummingbird names no route, or `NotFound`, when none matched.
        let route = context.endpointPath.flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "unmatched"
        metrics.httpRequest(
            route: route, method: request.method.rawValue, status: Int(response.status.code), duration: elapsed)
        if accessLog {
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            var fields: Logger.Metadata = [
                "method": .string(request.method.rawValue),
                "route": .string(route),
                "status": .stringConvertible(Int(response.status.code)),
                "duration_ms": .stringConvertible((ms * 1000).rounded() / 1000),
            ]
            if let address = settings.clientAddress(request, context) {
                fields["remote_address"] = .string(address)
            }
            if let client = context.facts.clientID { fields["client_id"] = .string(client) }
            logger.info("request", metadata: fields)
        }
        return response
    }

    /// The request's own id when it is a safe token, else a new one (22 base64url characters, 128 bits).
    static func requestID(_ given: String?) -> String {
        if let given, (1...128).contains(given.utf8.count), given.utf8.allSatisfy(isSafe) { return given }
        return Secrets.identifier()
    }

    private static func isSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "+"),
            UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}

/// The id of the request being handled (set by `RequestLogMiddleware` for the request's task).
public enum RequestID {
    @TaskLocal public static var current: String?

    /// Adds `request_id` to every line logged while a request runs, whichever logger writes it.
    public static let metadataProvider = Logger.MetadataProvider {
        guard let id = current else { return [:] }
        return ["request_id": .string(id)]
    }
}

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-Id")!
}
