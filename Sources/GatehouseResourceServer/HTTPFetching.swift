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

/// `HTTPFetching` over AsyncHTTPClient, with a timeout and a response size limit.
public struct AsyncHTTPClientFetcher: HTTPFetching {
    let client: HTTPClient
    let timeout: TimeAmount
    static let maxBody = 1 << 20

    public init(client: HTTPClient = .shared, timeout: TimeAmount = .seconds(5)) {
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
        let response = try await client.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: Self.maxBody)
        return FetchedResponse(
            status: Int(response.status.code), body: Array(body.readableBytesView),
            maxAge: CacheControl.maxAge(response.headers["Cache-Control"].joined(separator: ",")))
    }
}

enum FormEncoder {
    static func encode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
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
