import Foundation
import GatehouseCore
import GatehouseResourceServer
import JWTKit
import Synchronization

// Helpers shared by GatehouseResourceServerTests and GatehouseResourceServerHummingbirdTests. A regular
// target (built by `swift build -c release` too), so public API only: no `@testable import`.

/// An issuer without a network: discovery and JWKS served from memory, requests counted.
public final class FakeIssuer: HTTPFetching {
    public static let issuer = "https://issuer.example.test"
    /// The audience the verifiers from `verifier(now:interval:)` accept (and `Mint.claims` puts in `aud`).
    public static let audience = "https://api.example.test"
    private let state = Mutex<(keys: [SigningKey], jwksFetches: Int, introspection: [String: String], introspections: Int)>(([], 0, [:], 0))
    /// When set, the JWKS endpoint fails (the issuer is down).
    public let down = Mutex(false)
    /// Extra raw JWK objects published next to the keys (e.g. kinds the verifier must skip).
    public let extraJWKs = Mutex<[String]>([])
    public var jwksFetches: Int { state.withLock { $0.jwksFetches } }
    public var introspections: Int { state.withLock { $0.introspections } }

    public init(keys: [SigningKey]) { state.withLock { $0.keys = keys } }
    public func publish(_ keys: [SigningKey]) { state.withLock { $0.keys = keys } }
    public func setIntrospection(token: String, answer: String) { state.withLock { $0.introspection[token] = answer } }

    /// A verifier for `FakeIssuer.issuer` and `FakeIssuer.audience` that fetches from this issuer.
    public func verifier(now: Now, interval: TimeInterval = 10) -> TokenVerifier {
        var config = TokenVerifier.Configuration(issuer: Self.issuer, audiences: [Self.audience])
        config.minimumRefreshInterval = interval
        return TokenVerifier(config, fetcher: self, now: now.closure)
    }

    public func get(_ url: String) async throws -> FetchedResponse {
        switch url {
        case Self.issuer + "/.well-known/openid-configuration":
            let doc = #"{"issuer":"\#(Self.issuer)","jwks_uri":"\#(Self.issuer)/jwks","introspection_endpoint":"\#(Self.issuer)/introspect"}"#
            return FetchedResponse(status: 200, body: Array(doc.utf8))
        case Self.issuer + "/jwks":
            let keys = state.withLock { s -> [SigningKey] in s.jwksFetches += 1; return s.keys }
            if down.withLock({ $0 }) { return FetchedResponse(status: 503, body: []) }
            let encoded = try keys.map { String(decoding: try JSONEncoder().encode(try $0.publicJWK()), as: UTF8.self) }
            let body = #"{"keys":[\#((extraJWKs.withLock { $0 } + encoded).joined(separator: ","))]}"#
            return FetchedResponse(status: 200, body: Array(body.utf8), maxAge: 300)
        default:
            return FetchedResponse(status: 404, body: [])
        }
    }

    public func postForm(_ url: String, form: [(String, String)], basicAuth: (String, String)?) async throws -> FetchedResponse {
        guard url == Self.issuer + "/introspect", basicAuth?.0 == "rs", basicAuth?.1 == "rs-secret" else {
            return FetchedResponse(status: 401, body: [])
        }
        let token = form.first { $0.0 == "token" }?.1 ?? ""
        let answer = state.withLock { s -> String in s.introspections += 1; return s.introspection[token] ?? #"{"active":false}"# }
        return FetchedResponse(status: 200, body: Array(answer.utf8))
    }
}

/// A settable clock.
public final class Now: Sendable {
    private let t = Mutex<Date>(Date(timeIntervalSince1970: 1_800_000_000))
    public init() {}
    public var date: Date { t.withLock { $0 } }
    public func advance(_ s: TimeInterval) { t.withLock { $0 += s } }
    public var closure: @Sendable () -> Date { { [self] in date } }
}

/// Mints tokens the way an issuer would (or a forger would).
public enum Mint {
    public static func claims(
        iss: String? = FakeIssuer.issuer, aud: JSONValue? = .string("https://api.example.test"), sub: String = "user-1",
        scope: String = "notes:read", exp: Double = 1_800_000_600, iat: Double? = 1_800_000_000, nbf: Double? = nil,
        extra: [String: JSONValue] = [:]
    ) -> [String: JSONValue] {
        var c: [String: JSONValue] = ["sub": .string(sub), "client_id": .string("app"), "scope": .string(scope),
                                      "exp": .number(exp), "jti": .string(UUID().uuidString)]
        if let iss { c["iss"] = .string(iss) }
        if let aud { c["aud"] = aud }
        if let iat { c["iat"] = .number(iat) }
        if let nbf { c["nbf"] = .number(nbf) }
        for (k, v) in extra { c[k] = v }
        return c
    }

    public struct Payload: JWTPayload {
        public var claims: [String: JSONValue]
        public init(_ c: [String: JSONValue]) { claims = c }
        public init(from decoder: any Decoder) throws { claims = try [String: JSONValue](from: decoder) }
        public func encode(to encoder: any Encoder) throws { try claims.encode(to: encoder) }
        public func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    /// Signs with `key` (its kid unless `kid` overrides), header `typ` and extra header fields.
    public static func token(
        _ key: SigningKey, claims: [String: JSONValue] = Mint.claims(), typ: String? = "at+jwt", kid: String? = nil,
        headerExtra: [String: String] = [:]
    ) async throws -> String {
        let collection = JWTKeyCollection()
        await key.add(to: collection)
        var header = JWTHeader()
        header.typ = typ
        header.kid = kid ?? key.kid
        for (k, v) in headerExtra { header.fields[k] = .string(v) }
        return try await collection.sign(Payload(claims), header: header)
    }

    /// A token with arbitrary header and payload JSON and a given signature segment.
    public static func raw(header: String, claims: [String: JSONValue], signature: String = "") throws -> String {
        let h = Base64URL.encode(Data(header.utf8))
        let p = Base64URL.encode(try JSONEncoder().encode(claims))
        return "\(h).\(p).\(signature)"
    }
}

/// Whether `condition` holds within `timeout`, polled every few milliseconds: a wait on a condition with a
/// deadline instead of a sleep that merely hopes it holds by then.
public func waitUntil(timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try await condition() { return true }
        if clock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
}
