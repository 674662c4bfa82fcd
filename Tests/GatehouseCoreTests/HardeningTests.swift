import Crypto
import Foundation
import JWTKit
import Testing

@testable import GatehouseCore

/// Security-review regressions that need no database: client addresses behind proxies, secrets at rest,
/// whose upstream token it is, and publish-before-sign key plans.
@Suite("Hardening")
struct HardeningTests {
    // MARK: trusted proxies (Forwarded, X-Forwarded-For)

    @Test(arguments: [
        // peer, trusted, header the proxy sets, Forwarded, X-Forwarded-For, expected
        ("203.0.113.9", "", "x-forwarded-for", "", "198.51.100.1", "203.0.113.9"),  // no trusted proxies: ignored
        ("127.0.0.1", "127.0.0.1/32", "x-forwarded-for", "", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "127.0.0.1", "x-forwarded-for", "", "198.51.100.1, 10.0.0.5", "10.0.0.5"),  // rightmost untrusted
        ("127.0.0.1", "127.0.0.1,10.0.0.0/8", "x-forwarded-for", "", "198.51.100.1, 10.0.0.5", "198.51.100.1"),
        // The client's own Forwarded header is not read when the proxy sets X-Forwarded-For (and vice versa).
        ("127.0.0.1", "127.0.0.1", "x-forwarded-for", "for=192.0.2.66", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "127.0.0.1", "forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43", "198.51.100.1", "192.0.2.60"),
        ("127.0.0.1", "127.0.0.1", "forwarded", #"for="[2001:db8:cafe::17]:4711""#, "", "2001:db8:cafe::17"),
        ("127.0.0.1", "127.0.0.1", "forwarded", "for=unknown", "", "127.0.0.1"),  // obfuscated: the proxy is the client
        ("127.0.0.1", "127.0.0.1", "forwarded", "", "198.51.100.1", "127.0.0.1"),
        ("203.0.113.9", "127.0.0.1", "forwarded", "for=192.0.2.60", "", "203.0.113.9"),  // peer not trusted
        ("::ffff:127.0.0.1", "127.0.0.1", "x-forwarded-for", "", "192.0.2.7", "192.0.2.7"),  // IPv4-mapped peer
        ("::1", "::1/128", "x-forwarded-for", "", "2001:db8::1", "2001:db8::1"),
        ("127.0.0.1", "127.0.0.1", "x-forwarded-for", "", "not-an-ip", "127.0.0.1"),
    ])
    func clientAddressBehindProxies(
        peer: String, trusted: String, header: String, forwarded: String, xff: String, expected: String
    ) {
        let networks = trusted.split(separator: ",").compactMap { IPNetwork(String($0)) }
        let resolver = ClientAddressResolver(trusted: networks, header: ForwardedHeader(rawValue: header)!)
        let got = resolver.resolve(
            peer: peer, forwarded: forwarded.isEmpty ? [] : [forwarded], xForwardedFor: xff.isEmpty ? [] : [xff])
        #expect(got == expected)
    }

    @Test func networksParseAndMatch() {
        #expect(IPNetwork("10.0.0.0/8")!.contains(IPAddress("10.200.3.4")!))
        #expect(!IPNetwork("10.0.0.0/8")!.contains(IPAddress("11.0.0.1")!))
        #expect(IPNetwork("2001:db8::/32")!.contains(IPAddress("2001:db8:ffff::1")!))
        #expect(!IPNetwork("2001:db8::/32")!.contains(IPAddress("10.0.0.1")!))
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/-1", "::/129", ""] { #expect(IPNetwork(bad) == nil, "\(bad)") }
        // IPv6 addresses count per /64.
        #expect(PasswordAuthenticator.addressKey("2001:db8:1:2:aaaa::1") == PasswordAuthenticator.addressKey("2001:db8:1:2:bbbb::9"))
        #expect(PasswordAuthenticator.addressKey("2001:db8:1:3::1") != PasswordAuthenticator.addressKey("2001:db8:1:2::1"))
        #expect(PasswordAuthenticator.addressKey(nil) == "address:unknown")
    }

    // MARK: secrets at rest

    static let keyA = Data((0..<32).map { UInt8($0) }).base64EncodedString()
    static let keyB = Data((0..<32).map { UInt8(255 - $0) }).base64EncodedString()

    @Test func secretsSealOpenAndRotate() throws {
        let a = try SecretBox(base64Keys: [Self.keyA])
        let sealed = try a.seal("-----BEGIN PRIVATE KEY-----x", context: "signing_keys.private_pem:k1")
        #expect(sealed.hasPrefix(SecretBox.prefix) && !sealed.contains("PRIVATE KEY"))
        #expect(try a.open(sealed, context: "signing_keys.private_pem:k1") == "-----BEGIN PRIVATE KEY-----x")
        // Bound to its row: the same value under another row's context does not open.
        #expect(throws: SecretBox.Failure.self) { try a.open(sealed, context: "signing_keys.private_pem:k2") }
        // Plaintext rows (written before a key was configured) read as they are.
        #expect(try a.open("plain", context: "x") == "plain")
        // Rotation: B first seals, A still opens old rows; B alone does not know A's id.
        let ba = try SecretBox(base64Keys: [Self.keyB, Self.keyA])
        #expect(try ba.open(sealed, context: "signing_keys.private_pem:k1") == "-----BEGIN PRIVATE KEY-----x")
        let resealed = try ba.seal("v", context: "c")
        #expect(!ba.isCurrent(sealed) && ba.isCurrent(resealed))
        let b = try SecretBox(base64Keys: [Self.keyB])
        #expect(throws: SecretBox.Failure.unknownKey(id: a.keys[0].id, what: "signing_keys.private_pem:k1")) {
            try b.open(sealed, context: "signing_keys.private_pem:k1")
        }
        #expect(throws: SecretBox.Failure.noKey(what: "c")) { try SecretBox.open(sealed, context: "c", keys: []) }
        // A tampered value fails closed.
        var tampered = Array(sealed)
        tampered[tampered.count - 3] = tampered[tampered.count - 3] == "A" ? "B" : "A"
        #expect(throws: SecretBox.Failure.self) { try a.open(String(tampered), context: "signing_keys.private_pem:k1") }
        // Malformed keys are refused by position, never echoed.
        #expect(throws: SecretBox.Failure.malformedKey(index: 2)) { try SecretBox(base64Keys: [Self.keyA, "c2hvcnQ="]) }
        #expect(SecretBox.parseKeyList("a, b\nc\n# comment\n\n") == ["a", "b", "c"])
        #expect(!"\(SecretBox.Failure.undecryptable(what: "x"))".contains(Self.keyA))
    }

    // MARK: whose upstream token it is (critical finding)

    typealias HTTP = FederationCoreTests.StaticHTTP

    static func provider(
        userinfo: String = "https://api.example/users/{username}/", whoami: String? = nil, introspection: String? = nil,
        foreign: Bool = false
    ) -> ProviderRecord {
        ProviderRecord(
            id: "site", kind: .oauth2, name: "Site", clientID: "our-client", clientSecret: "our-secret",
            authorizeURL: "https://api.example/authorize", tokenURL: "https://api.example/token", userinfoURL: userinfo,
            whoamiURL: whoami, introspectionURL: introspection, allowForeignTokens: foreign)
    }

    /// A site whose templated profile endpoint answers anyone's profile to any valid token (as many do).
    static let leaky = [
        "https://api.example/users/victim/": #"{"id": 1, "username": "victim", "email": "victim@example.com"}"#,
        "https://api.example/users/mallory/": #"{"id": 2, "username": "mallory"}"#,
        "https://api.example/me/": #"{"id": 2, "username": "mallory"}"#,
    ]

    @Test func parametersNeverIdentify() async throws {
        // Only a templated URL: nothing establishes the subject, so exchange is refused for the provider.
        let onlyTemplate = UpstreamClient(http: HTTP(responses: Self.leaky), clock: .system)
        await #expect {
            _ = try await onlyTemplate.identity(forAccessToken: "mallorys", provider: Self.provider(), parameters: ["username": "victim"])
        } throws: { ($0 as? UpstreamError)?.kind == .unsupported && "\($0)".contains("site") }
        #expect(Self.provider().exchangeNote?.contains("cannot establish") == true)

        // A who-am-I URL, but foreign tokens not allowed: refused (the token may be another app's).
        let whoami = Self.provider(whoami: "https://api.example/me/")
        await #expect {
            _ = try await onlyTemplate.identity(forAccessToken: "mallorys", provider: whoami, parameters: [:])
        } throws: { ($0 as? UpstreamError)?.kind == .unsupported }
        #expect(whoami.exchangeNote?.contains("allow-foreign-tokens") == true)

        // With the opt-in: the subject is who the token belongs to; naming the victim is refused.
        let foreign = Self.provider(whoami: "https://api.example/me/", foreign: true)
        #expect(foreign.exchangeNote == nil)
        let me = try await onlyTemplate.identity(forAccessToken: "mallorys", provider: foreign, parameters: [:])
        #expect(me.subject == "2" && me.username == "mallory")
        await #expect {
            _ = try await onlyTemplate.identity(forAccessToken: "mallorys", provider: foreign, parameters: ["username": "victim"])
        } throws: { ($0 as? UpstreamError)?.kind == .rejected }
        let own = try await onlyTemplate.identity(forAccessToken: "mallorys", provider: foreign, parameters: ["username": "mallory"])
        #expect(own.subject == "2")
        // A subject is never truncated into another one.
        let long = String(repeating: "9", count: 501)
        let longHTTP = HTTP(responses: ["https://api.example/me/": #"{"id": "\#(long)", "username": "x"}"#])
        await #expect(throws: UpstreamError.self) {
            _ = try await UpstreamClient(http: longHTTP, clock: .system).identity(forAccessToken: "t", provider: foreign, parameters: [:])
        }
        // The token itself is never a template parameter (it would land in a URL).
        #expect(TokenExchangeGrant.templateParameters(RequestParameters(["subject_token": ["t"], "username": ["u"]])) == ["username": "u"])
    }

    @Test func introspectionBindsTokensToOurClient() async throws {
        let url = "https://api.example/introspect"
        func client(_ answer: String, status: Int = 200) -> (UpstreamClient, HTTP) {
            let http = HTTP(responses: Self.leaky, posts: [url: (status, answer)])
            return (UpstreamClient(http: http, clock: .system), http)
        }
        let p = Self.provider(introspection: url)
        #expect(p.exchangeNote == nil)
        let (ours, http) = client(#"{"active": true, "sub": "7", "id": 7, "client_id": "our-client", "username": "erin"}"#)
        let identity = try await ours.identity(forAccessToken: "t", provider: p, parameters: [:])
        #expect(identity.subject == "7" && identity.username == "erin")
        // Authenticated as our client at the provider (RFC 7662 §2.1), token in the body.
        let call = try #require(http.seen.first { $0.method == "POST" })
        #expect(call.headers.contains { $0 == ("Authorization", "Basic " + Data("our-client:our-secret".utf8).base64EncodedString()) })
        #expect(call.body.contains("token=t"))
        // Another app's token: refused unless foreign tokens are allowed.
        let (theirs, _) = client(#"{"active": true, "sub": "7", "id": "7", "client_id": "other-app"}"#)
        await #expect {
            _ = try await theirs.identity(forAccessToken: "t", provider: p, parameters: [:])
        } throws: { ($0 as? UpstreamError)?.kind == .rejected }
        var lenient = p
        lenient.allowForeignTokens = true
        #expect(try await theirs.identity(forAccessToken: "t", provider: lenient, parameters: [:]).subject == "7")
        // `aud` containing our client id binds too; inactive tokens never pass.
        let (aud, _) = client(#"{"active": true, "id": 8, "aud": ["x", "our-client"]}"#)
        #expect(try await aud.identity(forAccessToken: "t", provider: p, parameters: [:]).subject == "8")
        let (inactive, _) = client(#"{"active": false}"#)
        await #expect(throws: UpstreamError.self) { _ = try await inactive.identity(forAccessToken: "t", provider: lenient, parameters: [:]) }
        // Subject from introspection, then the template only for that same person.
        let (bound, _) = client(#"{"active": true, "id": 2, "client_id": "our-client"}"#)
        await #expect(throws: UpstreamError.self) {
            _ = try await bound.identity(forAccessToken: "t", provider: p, parameters: ["username": "victim"])
        }
        let detailed = try await bound.identity(forAccessToken: "t", provider: p, parameters: ["username": "mallory"])
        #expect(detailed.subject == "2" && detailed.username == "mallory")

        // RFC 7662's `sub` is not the field sign-in maps (`id`): an upstream *username* "1" must not become
        // the account of the person whose numeric id is 1. Without the mapped field: refused, or asked of
        // the fixed who-am-I URL with the (bound) token.
        for answer in [#"{"active": true, "sub": "1", "client_id": "our-client"}"#,
                       #"{"active": true, "sub": "1", "id": null, "client_id": "our-client"}"#] {
            let (subOnly, _) = client(answer)
            await #expect {
                _ = try await subOnly.identity(forAccessToken: "t", provider: p, parameters: [:])
            } throws: { ($0 as? UpstreamError)?.kind == .unsupported }
            var withWhoami = p
            withWhoami.whoamiURL = "https://api.example/me/"
            let me = try await subOnly.identity(forAccessToken: "t", provider: withWhoami, parameters: [:])
            #expect(me.subject == "2" && me.username == "mallory")  // /me/ says whose it is
        }
    }

    @Test func githubChecksTheTokenBelongsToOurApp() async throws {
        let check = "https://api.github.com/applications/our-client/token"
        let p = ProviderRecord(id: "github", kind: .github, name: "GitHub", clientID: "our-client", clientSecret: "s")
        #expect(p.exchangeNote == nil)
        let ok = HTTP(
            responses: ["https://api.github.com/user/emails": #"[{"email": "o@example.com", "primary": true, "verified": true}]"#],
            posts: [check: (200, #"{"user": {"id": 42, "login": "octo"}}"#)])
        let identity = try await UpstreamClient(http: ok, clock: .system).identity(forAccessToken: "gho_x", provider: p, parameters: [:])
        #expect(identity.subject == "42" && identity.username == "octo" && identity.email == "o@example.com" && identity.emailVerified)
        #expect(ok.seen.first?.body.contains("gho_x") == true)
        // 404: a token of another app (or none).
        let other = HTTP(responses: [:], posts: [check: (404, #"{"message": "Not Found"}"#)])
        await #expect(throws: UpstreamError.self) {
            _ = try await UpstreamClient(http: other, clock: .system).identity(forAccessToken: "gho_y", provider: p, parameters: [:])
        }
    }

    // MARK: publish before sign

    @Test func rotatedKeysArePublishedBeforeTheySign() {
        let old = SigningKeyRecord(kid: "old", algorithm: .es256, privatePEM: "p", createdAt: 100, deactivatedAt: 1070, retiredAt: nil)
        let new = SigningKeyRecord(
            kid: "new", algorithm: .es256, privatePEM: "p", createdAt: 1000, deactivatedAt: nil, retiredAt: nil, activatesAt: 1070)
        let before = KeyRing.plan([old, new], now: 1000, retention: 700)
        #expect(before.signing?.kid == "old")
        #expect(before.published.map(\.kid).sorted() == ["new", "old"])
        let after = KeyRing.plan([old, new], now: 1070, retention: 700)
        #expect(after.signing?.kid == "new")
        #expect(after.published.map(\.kid).sorted() == ["new", "old"])
        #expect(KeyRing.plan([old, new], now: 1770, retention: 700).toRetire == ["old"])
        // A revoked key is neither published nor used, at once.
        var revoked = new
        revoked.revokedAt = 1080
        let plan = KeyRing.plan([old, revoked], now: 1080, retention: 700)
        #expect(plan.published.map(\.kid) == ["old"])
        #expect(KeyRing.publishLead(keyReloadInterval: 10) == 70)
    }
}
