import AsyncHTTPClient
import Foundation
import GatehouseCore
import NIOCore
import NIOHTTP1
import Tracing

/// Outgoing HTTP for federation and webhooks: no redirects (a token must never be re-sent elsewhere), one
/// deadline per exchange, a 1 MiB response limit.
struct UpstreamHTTPClient: UpstreamHTTP {
    static let shared: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        // A refused connection is retried until the connect timeout: keep it short, so a provider or hook that
        // is down fails in about 2 s rather than hanging a sign-in page or the webhook worker.
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(10))
        // No spans of AsyncHTTPClient's own: they record the full URL (a webhook's query token) and add a
        // second traceparent. Gatehouse's client span (below) is the only one, and injects once.
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()
    let timeout: TimeAmount = .seconds(10)
    static let maxBody = 1 << 20

    func get(_ url: String, headers: [(String, String)]) async throws -> UpstreamResponse {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return try await execute(request)
    }

    func postForm(_ url: String, form: [(String, String)], headers: [(String, String)]) async throws -> UpstreamResponse {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: FormEncoding.encode(form)))
        return try await execute(request)
    }

    func postJSON(_ url: String, body: String, headers: [(String, String)]) async throws -> UpstreamResponse {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(string: body))
        return try await execute(request)
    }

    /// In a client span (when tracing is on) whose `traceparent` the request carries to the provider or hook.
    private func execute(_ request: HTTPClientRequest) async throws -> UpstreamResponse {
        let span = TraceContext.childSpan("HTTP \(request.method.rawValue)", ofKind: .client)
        defer { span?.end() }
        span?.attributes["http.request.method"] = request.method.rawValue
        if let host = URL(string: request.url)?.host { span?.attributes["server.address"] = host }
        var request = request
        // The span's trace context, or (a request that is not sampled) the caller's, with its sampled flag.
        if let context = span?.context ?? ServiceContext.current {
            InstrumentationSystem.instrument.inject(context, into: &request.headers, using: HTTPHeadersInjector())
        }
        do {
            let response = try await Self.shared.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: Self.maxBody)
            span?.attributes["http.response.status_code"] = Int(response.status.code)
            return UpstreamResponse(status: Int(response.status.code), body: Array(body.readableBytesView))
        } catch {
            span?.setStatus(SpanStatus(code: .error))
            throw UpstreamError(.unavailable, "The provider could not be reached.", detail: "\(Redaction.url(request.url)): \(error)")
        }
    }
}
