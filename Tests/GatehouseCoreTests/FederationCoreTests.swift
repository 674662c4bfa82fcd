import Crypto
import Foundation
import JWTKit
import Testing

@testable import GatehouseCore

@Suite("Federation, token exchange and hooks (core)")
struct FederationCoreTests {
    @Test func providerValidationNamesTheWrongOption() {
        func fails(_ p: ProviderRecord, _ fragment: String) {
            #expect(throws: Administration.ValidationError.self) { try p.validate() }
            do { try p.validate() } catch { #expect("\(error)".contains(fragment), "\(error)") }
        }
        let ok = ProviderRecord(id: "gh", kind: .github, name: "GitHub", clientID: "id", clientSecret: "s")
        #expect(throws: Never.self) { try ok.validate() }
        fails(ProviderRecord(id: "Bad Id", kind: .github, name: "x", clientID: "id", clientSecret: "s"), "--id")
        fails(ProviderRecord(id: "corp", kind: .oidc, name: "x", clientID: "id", clientSecret: "s"), "--issuer")
        fails(ProviderRecord(id: "corp", kind: .oidc, name: "x", clientID: "id", clientSecret: "s", issuer: "http://sso.example"), "https")
        fails(ProviderRecord(id: "l", kind: .oauth2, name: "x", clientID: "id", clientSecret: "s", authorizeURL: "https://a.example"), "--token-url")
        fails(ProviderRecord(id: "gh", kind: .github, name: "x", clientID: "id", clientSecret: ""), "secret")
        fails(ProviderRecord(id: "gh", kind: .github, name: "x", clientID: "id", clientSecret: "s", claims: ["role": "admin"]), "--claim")
        // Loopback http is allowed (development, tests).
        #expect(throws: Never.self) {
            try ProviderRecord(id: "dev", kind: .oidc, name: "x", clientID: "id", clientSecret: "s", issuer: "http://127.0.0.1:9000").validate()
        }
    }

    @Test func presetsFillEndpointsAndClaims() {
        let gh = ProviderRecord(id: "gh", kind: .github, name: "GitHub", clientID: "id", clientSecret: "s").resolved
        #expect(gh.tokenURL == "https://github.com/login/oauth/access_token")
        #expect(gh.claims["username"] == "login")
        let google = ProviderRecord(id: "g", kind: .google, name: "Google", clientID: "id", clientSecret: "s").resolved
        #expect(google.issuer == "https://accounts.google.com")
        #expect(google.isOIDC && google.scope.contains("openid"))
        let oidc = ProviderRecord(id: "c", kind: .oidc, name: "C", clientID: "i", clientSecret: "s", issuer: "https://x", scope: Scope(["email"])).resolved
        #expect(oidc.scope.contains("openid"))
    }

    @Test func userDetailTemplatesArePercentEncoded() throws {
        #expect(try UpstreamClient.fill("https://x.example/users/{username}/", with: ["username": "a/../b c"]) == "https://x.example/users/a%2F..%2Fb%20c/")
        #expect(throws: UpstreamError.self) { try UpstreamClient.fill("https://x.example/users/{username}/", with: [:]) }
    }

    @Test func claimMappingFollowsDottedPaths() throws {
        let client = UpstreamClient(http: NoHTTP(), clock: .system)
        let p = ProviderRecord(
            id: "l", kind: .oauth2, name: "L", clientID: "i", clientSecret: "s", authorizeURL: "https://a", tokenURL: "https://t",
            userinfoURL: "https://u", claims: ["id": "data.pk", "username": "data.login", "email_verified": "verified"]
        ).resolved
        let identity = try client.map(
            ["data": ["pk": 7, "login": "neo"], "email": "neo@example.com", "verified": true, "name": NSNull()], provider: p)
        #expect(identity == ExternalIdentity(subject: "7", username: "neo", email: "neo@example.com", emailVerified: true, name: nil, picture: nil))
        #expect(throws: UpstreamError.self) { try client.map(["email": "x"], provider: p) }
    }

    @Test func auditEventsGoOnlyToHooksThatAskForThem() {
        let plain = WebhookConfig(url: "https://h.example.com", secret: "s")
        #expect(plain.wants(Events.userCreated))
        #expect(!plain.wants("audit.user.disabled"))
        let all = WebhookConfig(url: "https://h.example.com", secret: "s", events: [Events.auditAll])
        #expect(all.wants("audit.user.disabled"))
        #expect(all.wants("audit.signin.failed"))
        #expect(!all.wants(Events.userCreated))  // listing events replaces the defaults
        let one = WebhookConfig(url: "https://h.example.com", secret: "s", events: ["audit.user.disabled", Events.userLogin])
        #expect(one.wants("audit.user.disabled"))
        #expect(!one.wants("audit.user.deleted"))
        #expect(one.wants(Events.userLogin))
    }

    @Test func importedBcryptHashesAreCheckedAndNormalised() {
        let b = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
        #expect(PasswordHasher.isBcryptHash(b))
        #expect(PasswordHasher.isBcryptHash("$2y$" + b.dropFirst(4)))
        #expect(PasswordHasher.normalizedBcryptHash("$2y$" + b.dropFirst(4)) == b)
        #expect(!PasswordHasher.isBcryptHash("$2b$31$" + b.dropFirst(7)))  // a cost that makes sign-ins take minutes
        #expect(!PasswordHasher.isBcryptHash("$2b$+5$" + b.dropFirst(7)))
        #expect(!PasswordHasher.isBcryptHash("$2x$10$" + b.dropFirst(7)))
        #expect(!PasswordHasher.isBcryptHash(String(b.dropLast())))
        #expect(!PasswordHasher.isBcryptHash(b.dropLast() + "!"))
    }

    @Test func webhookSignatureIsHMACOverTimestampAndBody() {
        let body = #"{"event":"user.login"}"#
        let signature = Events.signature(secret: "0123456789abcdef", timestamp: 1700000000, body: body)
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data("1700000000.\(body)".utf8), using: SymmetricKey(data: Data("0123456789abcdef".utf8)))
        #expect(signature == "t=1700000000,v1=" + Data(mac).hexString)
    }

    /// A hook printed into a log line (the service group logs what it starts) shows neither its secret nor
    /// the URL's credentials or query, which often carry a token.
    @Test func webhookDescriptionRedactsSecretAndURLToken() {
        let hook = WebhookConfig(url: "https://ops:hunter2@hook.example/in?token=s3cr3t#x", secret: "0123456789abcdef")
        for shown in ["\(hook)", String(reflecting: hook), "\([hook])"] {
            #expect(!shown.contains("0123456789abcdef") && !shown.contains("s3cr3t") && !shown.contains("hunter2"))
            #expect(shown.contains("https://hook.example/in?…"))
        }
    }

    @Test func deliveryBacksOffThenGivesUp() {
        let hook = WebhookConfig(url: "https://hook.example", secret: "0123456789abcdef")
        let delivery = WebhookDelivery(hooks: [hook], retryBase: 5)
        var r = OutboxRecord(id: "e", event: "user.login", url: hook.url, payload: "{}", nextAttemptAt: 0, createdAt: 0)
        r = delivery.outcome(r, status: 500, error: nil, now: 100)
        #expect(r.attempts == 1 && r.nextAttemptAt == 105 && r.deliveredAt == nil && r.lastError == "HTTP 500")
        r = delivery.outcome(r, status: nil, error: "connection refused", now: 200)
        #expect(r.nextAttemptAt == 210)
        #expect(Events.backoff(afterFailures: 30, base: 5) == 3600)
        for _ in 0..<20 where r.failedAt == nil { r = delivery.outcome(r, status: 502, error: nil, now: 300) }
        #expect(r.attempts == Events.maxAttempts && r.failedAt == 300)
        let ok = delivery.outcome(OutboxRecord(id: "f", event: "x", url: hook.url, payload: "{}", nextAttemptAt: 0, createdAt: 0), status: 204, error: nil, now: 7)
        #expect(ok.deliveredAt == 7)
        #expect(delivery.headers(for: ok, now: 7)?.contains { $0.0 == "Gatehouse-Signature" } == true)
        #expect(delivery.headers(for: OutboxRecord(id: "g", event: "x", url: "https://gone", payload: "{}", nextAttemptAt: 0, createdAt: 0), now: 7) == nil)
        // token.issued only for hooks that ask for it.
        #expect(!hook.wants(Events.tokenIssued) && hook.wants(Events.userCreated))
        #expect(WebhookConfig(url: "u", secret: "s", events: [Events.tokenIssued]).wants(Events.tokenIssued))
    }

    /// A provider's ID token exchanged (RFC 8693 id_token type): valid only with our client id as audience.
    @Test func idTokenExchangeNeedsOurAudience() async throws {
        let key = try SigningKey.generate(.es256)
        let jwks = String(decoding: try JSONEncoder().encode(["keys": [try key.publicJWK()]]), as: UTF8.self)
        let issuer = "https://sso.example"
        let http = StaticHTTP(responses: [
            issuer + "/.well-known/openid-configuration": #"{"issuer":"\#(issuer)","authorization_endpoint":"\#(issuer)/a","token_endpoint":"\#(issuer)/t","jwks_uri":"\#(issuer)/jwks"}"#,
            issuer + "/jwks": jwks,
        ])
        let client = UpstreamClient(http: http, clock: .system)
        let provider = ProviderRecord(id: "sso", kind: .oidc, name: "SSO", clientID: "gatehouse", clientSecret: "s", issuer: issuer)
        let signer = JWTKeyCollection()
        await key.add(to: signer)
        let now = Int64(Date().timeIntervalSince1970)
        func token(aud: String) async throws -> String {
            try await signer.sign(
                IDTokenClaims(
                    iss: issuer, sub: "user-7", aud: Audience([aud]), exp: now + 300, iat: now, auth_time: nil, nonce: nil,
                    azp: nil, at_hash: nil, sid: nil),
                kid: JWKIdentifier(string: key.kid))
        }
        let identity = try await client.identity(forIDToken: try await token(aud: "gatehouse"), provider: provider)
        #expect(identity.subject == "user-7")
        await #expect(throws: UpstreamError.self) {
            _ = try await client.identity(forIDToken: try await token(aud: "another-app"), provider: provider)
        }
    }

    /// Canned answers by URL (GET), and by URL for POSTs; unknown URLs answer 404. Records the requests.
    final class StaticHTTP: UpstreamHTTP, @unchecked Sendable {
        let responses: [String: String]
        let posts: [String: (Int, String)]
        private let lock = NSLock()
        private var _seen: [(method: String, url: String, headers: [(String, String)], body: String)] = []
        var seen: [(method: String, url: String, headers: [(String, String)], body: String)] { lock.withLock { _seen } }
        init(responses: [String: String], posts: [String: (Int, String)] = [:]) {
            self.responses = responses
            self.posts = posts
        }
        func get(_ url: String, headers: [(String, String)]) async throws -> UpstreamResponse {
            lock.withLock { _seen.append(("GET", url, headers, "")) }
            guard let body = responses[url] else { return UpstreamResponse(status: 404, body: []) }
            return UpstreamResponse(status: 200, body: Array(body.utf8))
        }
        func postForm(_ url: String, form: [(String, String)], headers: [(String, String)]) async throws -> UpstreamResponse {
            lock.withLock { _seen.append(("POST", url, headers, FormEncoding.encode(form))) }
            guard let (status, body) = posts[url] else { return UpstreamResponse(status: 404, body: []) }
            return UpstreamResponse(status: status, body: Array(body.utf8))
        }
        func postJSON(_ url: String, body: String, headers: [(String, String)]) async throws -> UpstreamResponse {
            lock.withLock { _seen.append(("POST", url, headers, body)) }
            guard let (status, answer) = posts[url] else { return UpstreamResponse(status: 404, body: []) }
            return UpstreamResponse(status: status, body: Array(answer.utf8))
        }
    }

    struct NoHTTP: UpstreamHTTP {
        func get(_ url: String, headers: [(String, String)]) async throws -> UpstreamResponse { UpstreamResponse(status: 500, body: []) }
        func postForm(_ url: String, form: [(String, String)], headers: [(String, String)]) async throws -> UpstreamResponse {
            UpstreamResponse(status: 500, body: [])
        }
        func postJSON(_ url: String, body: String, headers: [(String, String)]) async throws -> UpstreamResponse {
            UpstreamResponse(status: 500, body: [])
        }
    }
}
