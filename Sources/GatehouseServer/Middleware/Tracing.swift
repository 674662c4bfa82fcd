import GatehouseCore
import HTTPTypes
import Hummingbird
import Instrumentation
import NIOHTTP1
import Synchronization
import Tracing

/// One server span per request when tracing is on (`otel_endpoint`), named by method and route template;
/// `RequestLogMiddleware` runs each request inside it, so the access line carries its `trace_id`. A W3C
/// `traceparent` (and `tracestate`) on the request makes it a child of the caller's trace; the span's
/// context is current while the handler runs, so the database spans and the outgoing calls to providers and
/// webhooks (which carry `traceparent` on) belong to it.
///
/// Gatehouse's own rather than Hummingbird's `TracingMiddleware`, which records the path as sent and the
/// query string: those may hold an authorization code, a state or a token. This one records the route
/// template, the method, the status and the request id, nothing the client chose.
enum RequestSpan {
    /// Whether the request gets a span: always when it carries a `traceparent` (the tracer follows the
    /// caller's sampled flag), else with the sampler's probability. An unsampled new request thus costs
    /// no span at all (the tracer's own sampler, parent-based always-on, would still make one and draw its
    /// ids under a lock).
    static func traced(_ request: Request, sampler: TraceSampler) -> Bool {
        request.headers[.traceparent] != nil || sampler.sample()
    }

    static func around(
        _ request: Request, context: GatehouseRequestContext, _ body: () async throws -> Response
    ) async throws -> Response {
        var parent = ServiceContext.current ?? .topLevel
        InstrumentationSystem.instrument.extract(request.headers, into: &parent, using: HTTPFieldsExtractor())
        let method = request.method.rawValue
        let span = InstrumentationSystem.tracer.startSpan(method, context: parent, ofKind: .server)
        span.attributes["http.request.method"] = method
        if let id = RequestID.current { span.attributes["gatehouse.request_id"] = id }
        defer { span.end() }
        do {
            // Children (grant, database, upstream calls) only under a recorded span.
            let current = span.isRecording ? TraceContext.recording(span.context) : span.context
            let response = try await ServiceContext.$current.withValue(current) { try await body() }
            finish(span, method: method, context: context, status: Int(response.status.code))
            return response
        } catch {
            finish(span, method: method, context: context, status: 500)
            throw error
        }
    }

    private static func finish(_ span: any Span, method: String, context: GatehouseRequestContext, status: Int) {
        let route = context.endpointPath.flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "unmatched"
        span.operationName = "\(method) \(route)"
        span.attributes["http.route"] = route
        span.attributes["http.response.status_code"] = status
        if let client = context.facts.clientID { span.attributes["gatehouse.client_id"] = client }
        if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
    }
}

/// The share of new traces recorded (`otel_sampling_ratio`): a lock-free draw per request (SplitMix64 over
/// an atomic counter seeded at random; uniform enough for sampling, and no system call).
final class TraceSampler: Sendable {
    let ratio: Double
    private let state: Atomic<UInt64>
    private let threshold: UInt64

    init(ratio: Double) {
        self.ratio = ratio
        self.state = Atomic(UInt64.random(in: .min ... .max))
        self.threshold = ratio >= 1 ? .max : UInt64(ratio * Double(UInt64.max))
    }

    func sample() -> Bool {
        guard ratio > 0 else { return false }
        guard ratio < 1 else { return true }
        var z = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return z < threshold
    }
}

extension HTTPField.Name {
    static let traceparent = Self("traceparent")!
}

/// Reads `traceparent` / `tracestate` from a request's fields, within W3C Trace Context's bounds: a
/// `traceparent` of version 00 is exactly 55 characters of `0-9 a-f -`, and a `tracestate` at most 512
/// characters in at most 32 entries (the limits a vendor may truncate to). Anything else is left out, so a
/// request can neither make every outgoing call carry tens of kilobytes of its headers nor reach the tracer
/// with a malformed value (whose warning would print the request's headers).
struct HTTPFieldsExtractor: Extractor {
    static let maxTraceState = 512

    func extract(key: String, from fields: HTTPFields) -> String? {
        guard let name = HTTPField.Name(key) else { return nil }
        let values = fields[values: name]
        guard values.count == 1, let value = values.first else { return nil }
        switch key.lowercased() {
        case "traceparent":
            return Self.isTraceParent(value) ? value : nil
        case "tracestate":
            guard value.utf8.count <= Self.maxTraceState, value.split(separator: ",").count <= 32,
                value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F })
            else { return nil }
            return value
        default:
            return nil
        }
    }

    /// `00-<32 hex>-<16 hex>-<2 hex>`, lower case, ids not all zero.
    static func isTraceParent(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard bytes.count == 55, bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0"),
            bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-")
        else { return false }
        func hex(_ range: Range<Int>) -> Bool {
            bytes[range].allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
        func zero(_ range: Range<Int>) -> Bool { bytes[range].allSatisfy { $0 == 0x30 } }
        return hex(3..<35) && hex(36..<52) && hex(53..<55) && !zero(3..<35) && !zero(36..<52)
    }
}

/// Writes the current trace context into an outgoing request's headers (AsyncHTTPClient).
struct HTTPHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout HTTPHeaders) {
        headers.replaceOrAdd(name: key, value: value)
    }
}
