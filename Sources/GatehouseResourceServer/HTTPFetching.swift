import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// An HTTP response as the verifier needs it.
public struct FetchedResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    /// `max-age` of `Cache-Control`, when present.
    public var maxAge: Int?
    public init(status: Int, body: [UInt8], maxAge: Int? = nil) {
        self.status = status
        self.body = body
        self.maxAge = maxAge
    }
}

/// How the verifier talks to the issuer (a protocol so tests can answer without a network).
public protocol HTTPFetching: Sendable {
    func get(_ url: String) async throws -> FetchedResponse
    func postForm(_ url: String, form: [(String, String)], basicAuth: (String, String)?) async throws -> FetchedResponse
}

/// `HTTPFetching` over AsyncHTTPClient: one overall deadline per exchange (head and body), a 1 MiB
/// response limit, and no redirects (a redirect could carry a token in a re-sent body elsewhere, or
/// downgrade to http).
public struct AsyncHTTPClientFetcher: HTTPFetching {
    let client: HTTPClient
    let timeout: Duration
    static let maxBody = 1 << 20

    /// A client shared by all fetchers that follows no redirects.
    public static let noRedirectClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(5))
        // No AsyncHTTPClient spans (they record full URLs); the application traces its own calls.
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    public init(client: HTTPClient = AsyncHTTPClientFetcher.noRedirectClient, timeout: Duration = .seconds(5)) {
        self.client = client
        self.timeout = timeout
    }

    public func get(_ url: String) async throws -> FetchedResponse {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        return try await execute(request)
    }

    public func postForm(_ url: String, form: [(String, String)], basicAuth: (String, String)?) async throws
        -> FetchedResponse
    {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        if let (id, secret) = basicAuth {
            let credentials = "\(FormEncoder.encode(id)):\(FormEncoder.encode(secret))"
            request.headers.add(name: "Authorization", value: "Basic " + Data(credentials.utf8).base64EncodedString())
        }
        request.body = .bytes(ByteBuffer(string: form.map { "\(FormEncoder.encode($0.0))=\(FormEncoder.encode($0.1))" }.joined(separator: "&")))
        return try await execute(request)
    }

    private func execute(_ request: HTTPClientRequest) async throws -> FetchedResponse {
        let client = self.client
        let timeout = self.timeout
        return try await withThrowingTaskGroup(of: FetchedResponse.self) { group in
            group.addTask {
                let response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
                let body = try await response.body.collect(upTo: Self.maxBody)
                return FetchedResponse(
                    status: Int(response.status.code), body: Array(body.readableBytesView),
                    maxAge: CacheControl.maxAge(response.headers["Cache-Control"].joined(separator: ",")))
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ResourceServerError.unavailable("no complete answer within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}

enum FormEncoder {
    /// RFC 3986 unreserved characters stay; every other byte is percent-encoded.
    static func encode(_ s: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// The issuer's URLs must be https; plain http only on loopback (development).
enum TransportPolicy {
    static func check(_ url: String, what: String, allowInsecure: Bool) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), let host = c.host else {
            throw ResourceServerError.unavailable("\(what) \(url) is not an absolute URL")
        }
        if scheme == "https" || allowInsecure { return }
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let octets = h.split(separator: ".")
        let loopback = h == "localhost" || h == "::1"
            || (octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil })
        guard scheme == "http", loopback else {
            throw ResourceServerError.unavailable("\(what) \(url) must use https (http only on loopback)")
        }
    }
}

enum CacheControl {
    /// `max-age=N` from a Cache-Control value; `nil` with `no-store`/`no-cache` or no max-age.
    static func maxAge(_ value: String) -> Int? {
        var age: Int?
        for directive in value.lowercased().split(separator: ",") {
            let d = directive.trimmingCharacters(in: .whitespaces)
            if d == "no-store" || d == "no-cache" { return nil }
            if d.hasPrefix("max-age="), let n = Int(d.dropFirst("max-age=".count)) { age = n }
        }
        return age
    }
}
