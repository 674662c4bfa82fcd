import Foundation
@testable import GatehouseCore
import JWTKit
import Synchronization

@testable import GatehouseResourceServer

/// An issuer without a network: discovery and JWKS served from memory, requests counted.
final class FakeIssuer: HTTPFetching {
    static let issuer = "https://issuer.example.test"
    private let state = Mutex<(keys: [SigningKey], jwksFetches: Int, introspection: [String: String], introspections: Int)>(([], 0, [:], 0))
    /// When set, the JWKS endpoint fails (the issuer is down).
    let down = Mutex(false)
    /// Extra raw JWK objects published next to the keys (e.g. kinds the verifier must skip).
    let extraJWKs = Mutex<[String]>([])
    var jwksFetches: Int { state.withLock { $0.jwksFetches } }
    var introspections: Int { state.withLock { $0.introspections } }

    init(keys: [SigningKey]) { state.withLock { $0.keys = keys } }
    func publish(_ keys: [SigningKey]) { state.withLock { $0.keys = keys } }
    func setIntrospection(token: String, answer: String) { state.withLock { $0.introspection[token] = answer } }

    func get(_ url: String) async throws -> FetchedResponse {
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

    func postForm(_ url: String, form: [(String, String)], basicAuth: (String, String)?) async throws -> FetchedResponse {
        guard url == Self.issuer + "/introspect", basicAuth?.0 == "rs", basicAuth?.1 == "rs-secret" else {
            return FetchedResponse(status: 401, body: [])
        }
        let token = form.first { $0.0 == "token" }?.1 ?? ""
        let answer = state.withLock { s -> String in s.introspections += 1; return s.introspection[token] ?? #"{"active":false}"# }
        return FetchedResponse(status: 200, body: Array(answer.utf8))
    }
}

/// A settable clock.
final class Now: Sendable {
    private let t = Mutex<Date>(Date(timeIntervalSince1970: 1_800_000_000))
    var date: Date { t.withLock { $0 } }
    func advance(_ s: TimeInterval) { t.withLock { $0 += s } }
    var closure: @Sendable () -> Date { { [self] in date } }
}

/// Mints tokens the way an issuer would (or a forger would).
enum Mint {
    static func claims(
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

    struct Payload: JWTPayload {
        var claims: [String: JSONValue]
        init(_ c: [String: JSONValue]) { claims = c }
        init(from decoder: any Decoder) throws { claims = try [String: JSONValue](from: decoder) }
        func encode(to encoder: any Encoder) throws { try claims.encode(to: encoder) }
        func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    /// Signs with `key` (its kid unless `kid` overrides), header `typ` and extra header fields.
    static func token(
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
    static func raw(header: String, claims: [String: JSONValue], signature: String = "") throws -> String {
        let h = Base64URL.encode(Data(header.utf8))
        let p = Base64URL.encode(try JSONEncoder().encode(claims))
        return "\(h).\(p).\(signature)"
    }
}
