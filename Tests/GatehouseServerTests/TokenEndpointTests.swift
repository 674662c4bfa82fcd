import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import HummingbirdTesting
import JWTKit
import Testing

/// RFC 6749 §3.2, §4.4, §5; RFC 9068; RFC 8707 — through the router, on every database.
@Suite("Token endpoint")
struct TokenEndpointTests {
    @Test(arguments: TestDatabase.available)
    func clientCredentialsIssuesAnRFC9068Token(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let r = try await h.token(c)
            #expect(r.status == .ok)
            #expect(r.headers[.cacheControl] == "no-store")
            #expect(r.string("token_type") == "Bearer")
            #expect(r["expires_in"] as? Int == 600)
            #expect(r.string("scope") == "read write")
            #expect(r["refresh_token"] == nil)  // RFC 6749 §4.4.3
            let token = try #require(r.string("access_token"))
            let (header, claims) = Harness.decodeJWT(token)
            #expect(header["typ"] as? String == "at+jwt")
            #expect(header["alg"] as? String == "ES256")
            #expect(claims["iss"] as? String == Harness.issuer)
            #expect(claims["sub"] as? String == c.id)
            #expect(claims["client_id"] as? String == c.id)
            #expect(claims["aud"] as? String == Harness.issuer)
            #expect(claims["scope"] as? String == "read write")
            #expect((claims["jti"] as? String)?.isEmpty == false)
            let iat = try #require(claims["iat"] as? Int)
            let exp = try #require(claims["exp"] as? Int)
            #expect(exp - iat == 600)
            #expect(iat == 1_800_000_000)  // whole seconds from the injected clock

            // The signature verifies against the published JWKS.
            let jwks = try await h.get("/.well-known/jwks.json")
            let keys = JWTKeyCollection()
            try await keys.add(jwksJSON: jwks.body)
            struct Payload: JWTPayload { var client_id: String; func verify(using algorithm: some JWTAlgorithm) throws {} }
            let verified = try await keys.verify(token, as: Payload.self)
            #expect(verified.client_id == c.id)
        }
    }

    @Test(arguments: TestDatabase.available)
    func clientAuthenticationMethodsAndBodyFormats(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            // client_secret_post
            let post = try await h.post("/oauth2/token", [("grant_type", "client_credentials"), ("client_id", c.id), ("client_secret", c.secret)])
            #expect(post.status == .ok)
            // JSON body
            let json = try await h.post(
                "/oauth2/token", contentType: "application/json",
                rawBody: #"{"grant_type":"client_credentials","client_id":"\#(c.id)","client_secret":"\#(c.secret)","scope":"read"}"#)
            #expect(json.status == .ok)
            #expect(json.string("scope") == "read")
            // Media-type parameters and case do not matter (RFC 9110 §8.3.1).
            for type in ["Application/JSON; charset=utf-8", "application/json ;charset=UTF-8"] {
                let typed = try await h.post(
                    "/oauth2/token", contentType: type,
                    rawBody: #"{"grant_type":"client_credentials","client_id":"\#(c.id)","client_secret":"\#(c.secret)"}"#)
                #expect(typed.status == .ok, "\(type)")
            }
            let form = try await h.post(
                "/oauth2/token", contentType: "application/x-www-form-urlencoded; charset=UTF-8",
                rawBody: "grant_type=client_credentials&client_id=\(c.id)&client_secret=\(c.secret)")
            #expect(form.status == .ok)
            // Basic with client_id repeated in the body is fine when it matches.
            let both = try await h.post("/oauth2/token", [("grant_type", "client_credentials"), ("client_id", c.id)], auth: c)
            #expect(both.status == .ok)
        }
    }

    @Test(arguments: TestDatabase.available)
    func scopeDefaultsCommaListsAndResources(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient(scope: "read write admin", defaultScope: "read", resources: ["https://api.example.test/"])
            #expect(try await h.token(c).string("scope") == "read")
            let comma = try await h.token(c, [("grant_type", "client_credentials"), ("scope", "write,admin")])
            #expect(comma.string("scope") == "write admin")
            let withResource = try await h.token(
                c, [("grant_type", "client_credentials"), ("resource", "https://api.example.test/")])
            #expect(withResource.status == .ok)
            let claims = Harness.decodeJWT(try #require(withResource.string("access_token"))).claims
            #expect(claims["aud"] as? String == "https://api.example.test/")
        }
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        let name: String
        let params: [(String, String)]
        let auth: Auth
        var contentType = "application/x-www-form-urlencoded"
        var rawBody: String? = nil
        var query = ""
        let status: Int
        let error: String
        enum Auth: Sendable { case good, wrongSecret, none, unknownClient, malformed, basicAndPost, bearer }
        var testDescription: String { name }
    }

    static let refusals: [Refusal] = [
        .init(name: "no client authentication", params: [("grant_type", "client_credentials")], auth: .none, status: 401, error: "invalid_client"),
        .init(name: "wrong secret", params: [("grant_type", "client_credentials")], auth: .wrongSecret, status: 401, error: "invalid_client"),
        .init(name: "unknown client", params: [("grant_type", "client_credentials")], auth: .unknownClient, status: 401, error: "invalid_client"),
        .init(name: "malformed Basic header", params: [("grant_type", "client_credentials")], auth: .malformed, status: 401, error: "invalid_client"),
        .init(name: "Bearer instead of Basic", params: [("grant_type", "client_credentials")], auth: .bearer, status: 401, error: "invalid_client"),
        .init(name: "two authentication methods", params: [("grant_type", "client_credentials")], auth: .basicAndPost, status: 400, error: "invalid_request"),
        .init(name: "missing grant_type", params: [], auth: .good, status: 400, error: "invalid_request"),
        .init(name: "repeated grant_type", params: [("grant_type", "client_credentials"), ("grant_type", "client_credentials")], auth: .good, status: 400, error: "invalid_request"),
        .init(name: "repeated scope", params: [("grant_type", "client_credentials"), ("scope", "read"), ("scope", "write")], auth: .good, status: 400, error: "invalid_request"),
        .init(name: "unknown grant type", params: [("grant_type", "urn:example:magic")], auth: .good, status: 400, error: "unsupported_grant_type"),
        .init(name: "implicit is not a grant", params: [("grant_type", "implicit")], auth: .good, status: 400, error: "unsupported_grant_type"),
        .init(name: "grant not registered for client", params: [("grant_type", "password"), ("username", "a"), ("password", "b")], auth: .good, status: 400, error: "unauthorized_client"),
        .init(name: "scope not allowed", params: [("grant_type", "client_credentials"), ("scope", "read admin")], auth: .good, status: 400, error: "invalid_scope"),
        .init(name: "malformed scope", params: [("grant_type", "client_credentials"), ("scope", "re\"ad")], auth: .good, status: 400, error: "invalid_scope"),
        .init(name: "resource not registered", params: [("grant_type", "client_credentials"), ("resource", "https://other.example/")], auth: .good, status: 400, error: "invalid_target"),
        .init(name: "resource not absolute", params: [("grant_type", "client_credentials"), ("resource", "api")], auth: .good, status: 400, error: "invalid_target"),
        .init(name: "resource with fragment", params: [("grant_type", "client_credentials"), ("resource", "https://api.example.test/#x")], auth: .good, status: 400, error: "invalid_target"),
        .init(name: "credentials in the query string", params: [("grant_type", "client_credentials")], auth: .good, query: "?client_secret=leak", status: 400, error: "invalid_request"),
        .init(name: "unsupported content type", params: [], auth: .good, contentType: "text/plain", rawBody: "grant_type=client_credentials", status: 400, error: "invalid_request"),
        .init(name: "body over 64 KiB", params: [], auth: .good, rawBody: "grant_type=client_credentials&pad=" + String(repeating: "a", count: 70_000), status: 400, error: "invalid_request"),
        .init(name: "content type that only starts like a form", params: [], auth: .good, contentType: "application/x-www-form-urlencodedX", rawBody: "grant_type=client_credentials", status: 400, error: "invalid_request"),
        .init(name: "content type that only starts like JSON", params: [], auth: .good, contentType: "application/jsonp", rawBody: #"{"grant_type":"client_credentials"}"#, status: 400, error: "invalid_request"),
        .init(name: "malformed JSON", params: [], auth: .good, contentType: "application/json", rawBody: "{grant_type:", status: 400, error: "invalid_request"),
        .init(name: "JSON with an object value", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":{"a":1}}"#, status: 400, error: "invalid_request"),
        .init(name: "JSON with a boolean value", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":"client_credentials","scope":true}"#, status: 400, error: "invalid_request"),
        .init(name: "NUL in a JSON array item", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":"client_credentials","resource":["https://a\u0000b"]}"#, status: 400, error: "invalid_request"),
        .init(name: "NUL in a JSON key", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":"client_credentials","x\u0000":"1"}"#, status: 400, error: "invalid_request"),
        .init(name: "JSON after a byte-order mark", params: [], auth: .good, contentType: "application/json", rawBody: "\u{FEFF}" + #"{"grant_type":"client_credentials"}"#, status: 400, error: "invalid_request"),
        .init(name: "bad percent-encoding", params: [], auth: .good, rawBody: "grant_type=%zz", status: 400, error: "invalid_request"),
        .init(name: "repeated JSON key", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":"client_credentials","scope":"read","scope":"write"}"#, status: 400, error: "invalid_request"),
        .init(name: "repeated JSON key, escaped", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":"client_credentials","scope":"read","sc\u006fpe":"write"}"#, status: 400, error: "invalid_request"),
        .init(name: "NUL in a form value", params: [], auth: .good, rawBody: "grant_type=client_credentials&scope=re%00ad", status: 400, error: "invalid_request"),
        .init(name: "NUL in a JSON value", params: [], auth: .good, contentType: "application/json", rawBody: #"{"grant_type":"client_credentials","scope":"re\u0000ad"}"#, status: 400, error: "invalid_request"),
        .init(name: "implausible client id", params: [("grant_type", "client_credentials"), ("client_id", String(repeating: "a", count: 65)), ("client_secret", "x")], auth: .none, status: 401, error: "invalid_client"),
    ]

    @Test(arguments: refusals)
    func refusesBadRequests(_ refusal: Refusal) async throws {
        try await Harness.run(.sqlite) { h in
            let c = try await h.makeClient(resources: ["https://api.example.test/"])
            var params = refusal.params
            var authorization: String? = nil
            switch refusal.auth {
            case .good: authorization = Harness.basic(c.id, c.secret)
            case .wrongSecret: authorization = Harness.basic(c.id, c.secret + "x")
            case .none: break
            case .unknownClient: authorization = Harness.basic("no-such-client", c.secret)
            case .malformed: authorization = "Basic !!!notbase64"
            case .bearer: authorization = "Bearer abc"
            case .basicAndPost:
                authorization = Harness.basic(c.id, c.secret)
                params.append(("client_secret", c.secret))
            }
            let r = try await h.post(
                "/oauth2/token" + refusal.query, params, authorization: authorization, contentType: refusal.contentType,
                rawBody: refusal.rawBody)
            #expect(Int(r.status.code) == refusal.status, "\(refusal.name): \(r.body)")
            #expect(r.error == refusal.error, "\(refusal.name): \(r.body)")
            #expect(r.string("error_description")?.isEmpty == false)
            #expect(r.headers[.cacheControl] == "no-store")
            if refusal.status == 401 { #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Basic") == true) }
            // Nothing secret leaks into errors.
            #expect(!r.body.contains(c.secret))
        }
    }

    /// error_description keeps to RFC 6749 §5.2's characters even when it quotes the request.
    @Test func errorDescriptionsAreSanitised() async throws {
        try await Harness.run(.sqlite) { h in
            let c = try await h.makeClient()
            let r = try await h.token(c, [("grant_type", "evil\n\"grant\\" + String(repeating: "x", count: 500))])
            #expect(r.error == "unsupported_grant_type")
            let d = try #require(r.string("error_description"))
            #expect(!d.contains("\n") && !d.contains("\"") && !d.contains("\\"))
            #expect(d.count <= 203)
        }
    }

    @Test func publicClientsCannotUseClientCredentials() async throws {
        try await Harness.run(.sqlite) { h in
            // Registration refuses it…
            await #expect(throws: Administration.ValidationError.self) {
                _ = try await h.makeClient(isPublic: true)
            }
            // …and the endpoint refuses it even if such a row exists.
            let record = ClientRecord(
                id: "pub", name: "p", secretHash: nil, redirectURIs: [], grantTypes: ["client_credentials"], scope: .empty,
                defaultScope: .empty, resources: [], skipConsent: false, createdAt: 0, updatedAt: 0)
            try await h.store.insertClient(record)
            let r = try await h.post("/oauth2/token", [("grant_type", "client_credentials"), ("client_id", "pub")])
            #expect(r.status == .badRequest)
            #expect(r.error == "unauthorized_client")
            // A public client presenting a secret fails authentication.
            let withSecret = try await h.post("/oauth2/token", [("grant_type", "client_credentials")], auth: ("pub", "guess"))
            #expect(withSecret.error == "invalid_client")
        }
    }

    @Test func onlyPOSTAndSecurityHeaders() async throws {
        try await Harness.run(.sqlite) { h in
            for path in ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"] {
                let r = try await h.get(path)
                #expect(r.status == .methodNotAllowed)
                #expect(r.headers[.allow] == "POST")
                #expect(r.error == "invalid_request")
            }
            for path in ["/.well-known/openid-configuration", "/oauth2/token", "/nope"] {
                let r = try await h.get(path)
                #expect(r.headers[.init("X-Frame-Options")!] == "DENY")
                #expect(r.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
                #expect(r.headers[.init("Referrer-Policy")!] == "no-referrer")
            }
            let close = try await h.client.execute(uri: "/healthz", method: .get, headers: [.connection: "close"]) { $0 }
            #expect(close.headers[.connection] == "close")
        }
    }

    @Test(arguments: TestDatabase.available)
    func passwordGrant(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient(grantTypes: ["refresh_token"], scope: "read", allowPassword: true)
            let user = try await h.admin.createUser(username: "alice", email: nil, name: nil, password: "correct horse")
            let ok = try await h.token(c, [("grant_type", "password"), ("username", "Alice"), ("password", "correct horse")])
            #expect(ok.status == .ok, "\(ok.body)")
            #expect(ok.string("refresh_token") != nil)
            let claims = Harness.decodeJWT(try #require(ok.string("access_token"))).claims
            #expect(claims["sub"] as? String == user.id)  // opaque id, never the username
            #expect(claims["grant_id"] != nil)

            let wrong = try await h.token(c, [("grant_type", "password"), ("username", "alice"), ("password", "wrong horse")])
            let unknown = try await h.token(c, [("grant_type", "password"), ("username", "bob"), ("password", "wrong horse")])
            #expect(wrong.error == "invalid_grant")
            #expect(unknown.error == "invalid_grant")
            #expect(wrong.string("error_description") == unknown.string("error_description"))  // no enumeration
            let missing = try await h.token(c, [("grant_type", "password"), ("username", "alice")])
            #expect(missing.error == "invalid_request")
            // A name no account can have is refused the same way, without work.
            let bogus = try await h.token(c, [("grant_type", "password"), ("username", String(repeating: "z", count: 5000)), ("password", "x")])
            #expect(bogus.error == "invalid_grant")
            #expect(bogus.string("error_description") == unknown.string("error_description"))
        }
    }

    /// Guesses sent in parallel are counted before the slow hash check, so they cannot exceed the limit.
    @Test func parallelPasswordGuessesAreCounted() async throws {
        try await Harness.run(.sqlite) { h in
            let c = try await h.makeClient(grantTypes: ["client_credentials"], scope: "read", allowPassword: true)
            _ = try await h.admin.createUser(username: "dave", email: nil, name: nil, password: "correct horse")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        _ = try await h.token(c, [("grant_type", "password"), ("username", "dave"), ("password", "guess guess")])
                    }
                }
                try await group.waitForAll()
            }
            let r = try await h.token(c, [("grant_type", "password"), ("username", "dave"), ("password", "correct horse")])
            #expect(r.error == "invalid_grant")
        }
    }

    @Test func passwordGrantLocksOutAfterRepeatedFailures() async throws {
        try await Harness.run(.sqlite) { h in
            let c = try await h.makeClient(grantTypes: ["client_credentials"], scope: "read", allowPassword: true)
            _ = try await h.admin.createUser(username: "carol", email: nil, name: nil, password: "correct horse")
            for _ in 0..<10 {
                let r = try await h.token(c, [("grant_type", "password"), ("username", "carol"), ("password", "nope nope")])
                #expect(r.error == "invalid_grant")
                h.testClock.advance(seconds: 30)  // past the progressive delay: each attempt is a real failure
            }
            let locked = try await h.token(c, [("grant_type", "password"), ("username", "carol"), ("password", "correct horse")])
            #expect(locked.error == "invalid_grant")
            #expect(locked.string("error_description")?.contains("Too many") == true)
            h.testClock.advance(seconds: 15 * 60)
            let later = try await h.token(c, [("grant_type", "password"), ("username", "carol"), ("password", "correct horse")])
            #expect(later.status == .ok)
            #expect(later.string("refresh_token") == nil)  // client not registered for refresh_token
        }
    }
}
