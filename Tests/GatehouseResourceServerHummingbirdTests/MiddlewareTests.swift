import Foundation
import GatehouseResourceServerHummingbird
import GatehouseResourceServerTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import GatehouseCore
@testable import GatehouseResourceServer

/// RFC 6750 §3 answers from the Hummingbird middleware.
@Suite("Hummingbird middleware")
struct MiddlewareTests {
    static func app(_ verifier: TokenVerifier) -> some ApplicationProtocol {
        let router = Router(context: BasicAccessTokenContext.self)
        let api = router.group("notes").add(middleware: BearerTokenMiddleware(verifier: verifier))
        api.add(middleware: RequireScopes(["notes:read"]))
            .get { _, context in "hello \(context.accessToken?.subject ?? "?")" }
        router.group("admin").add(middleware: BearerTokenMiddleware(verifier: verifier))
            .add(middleware: RequireScopes(["notes:admin", "root"], mode: .any))
            .get { _, _ in "admin" }
        return Application(router: router)
    }

    @Test func answersPerRFC6750() async throws {
        let key = try SigningKey.generate(.es256)
        let v = FakeIssuer(keys: [key]).verifier(now: Now())
        let good = try await Mint.token(key)
        try await Self.app(v).test(.router) { client in
            try await client.execute(uri: "/notes", method: .get, headers: [.authorization: "Bearer \(good)"]) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body) == "hello user-1")
            }
            try await client.execute(uri: "/notes", method: .get) { r in
                #expect(r.status == .unauthorized)
                #expect(r.headers[.wwwAuthenticate] == #"Bearer realm="api""#)
                #expect(String(buffer: r.body) == #"{"error":"auth.authorization_header_missing"}"#)
            }
            // A token in the query string is ignored.
            try await client.execute(uri: "/notes?access_token=\(good)", method: .get) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(uri: "/notes", method: .get, headers: [.authorization: "Bearer \(good)x"]) { r in
                #expect(r.status == .unauthorized)
                #expect(r.headers[.wwwAuthenticate] == #"Bearer realm="api", error="invalid_token""#)
            }
            try await client.execute(uri: "/notes", method: .get, headers: [.authorization: "Basic abc"]) { r in
                #expect(r.status == .unauthorized)
                #expect(r.headers[.wwwAuthenticate] == #"Bearer realm="api""#)  // another scheme: no error code
                #expect(String(buffer: r.body) == #"{"error":"auth.authorization_token_type_not_supported"}"#)
            }
            try await client.execute(uri: "/notes", method: .get, headers: [.authorization: "Bearer a b"]) { r in
                #expect(r.status == .badRequest)  // RFC 6750 §3.1 invalid_request
                #expect(r.headers[.wwwAuthenticate] == #"Bearer realm="api", error="invalid_request""#)
                #expect(String(buffer: r.body) == #"{"error":"auth.authorization_token_invalid_format"}"#)
            }
            try await client.execute(uri: "/admin", method: .get, headers: [.authorization: "Bearer \(good)"]) { r in
                #expect(r.status == .forbidden)
                #expect(r.headers[.wwwAuthenticate] == #"Bearer realm="api", error="insufficient_scope", scope="notes:admin root""#)
            }
            let admin = try await Mint.token(key, claims: Mint.claims(scope: "root"))
            try await client.execute(uri: "/admin", method: .get, headers: [.authorization: "Bearer \(admin)"]) { r in
                #expect(r.status == .ok)
            }
        }
    }
}
