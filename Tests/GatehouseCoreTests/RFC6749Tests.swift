import Foundation
import Synchronization
import Testing

@testable import GatehouseCore
import GatehouseResourceServerTestSupport

/// RFC 6749: scope syntax (§3.3), parameters (§3.1/§3.2), client authentication (§2.3.1), errors (§5.2).
@Suite("RFC 6749")
struct RFC6749Tests {
    @Test(arguments: [
        ("read write", ["read", "write"]),
        ("read,write", ["read", "write"]),
        ("read, write  read", ["read", "write"]),
        ("", []),
        ("a:b/c.d", ["a:b/c.d"]),
    ])
    func scopeParsing(text: String, tokens: [String]) throws {
        let scope = try #require(Scope(parsing: text))
        #expect(scope.tokens == tokens)
        #expect(scope.description == tokens.joined(separator: " "))
    }

    @Test(arguments: ["re\"ad", "a\\b", "caf\u{E9}", "tab\tsep"])
    func scopeRejectsCharactersOutsideTheGrammar(text: String) {
        #expect(Scope(parsing: text) == nil)
    }

    @Test func scopeSetOperations() {
        let granted = Scope(["read", "write"])
        #expect(Scope(["read"]).isSubset(of: granted))
        #expect(!Scope(["read", "admin"]).isSubset(of: granted))
        #expect(granted.intersection(Scope(["write", "x"])) == Scope(["write"]))
    }

    @Test func repeatedParametersAreInvalidRequests() throws {
        let p = RequestParameters(pairs: [("scope", "a"), ("scope", "b"), ("grant_type", "x"), ("empty", ""), ("resource", "r1"), ("resource", "r2")])
        #expect(throws: OAuthError.self) { try p.single("scope") }
        #expect(try p.single("grant_type") == "x")
        #expect(try p.single("empty") == nil)
        #expect(try p.single("absent") == nil)
        #expect(p.all("resource") == ["r1", "r2"])
        do {
            _ = try p.required("absent")
            Issue.record("expected an error")
        } catch let e as OAuthError {
            #expect(e.code == "invalid_request")
            #expect(e.description.contains("absent"))
        }
    }

    @Test(arguments: [
        // id:secret form-urlencoded, per §2.3.1 / Appendix B
        ("Basic " + Data("client:secret".utf8).base64EncodedString(), "client", "secret"),
        ("basic " + Data("a%3Ab:p%40ss+word".utf8).base64EncodedString(), "a:b", "p@ss word"),
        ("Basic " + Data("id:".utf8).base64EncodedString(), "id", ""),
        ("Basic " + Data("id:with:colon".utf8).base64EncodedString(), "id", "with:colon"),
    ])
    func basicCredentials(header: String, id: String, secret: String) throws {
        let parsed = try ClientAuthenticator.parseBasic(header)
        #expect(parsed.id == id)
        #expect(parsed.secret == secret)
    }

    @Test(arguments: ["Bearer x", "Basic", "Basic !!!", "Basic " + Data("nocolon".utf8).base64EncodedString(),
                      "Basic " + Data(":secret".utf8).base64EncodedString(), "Basic " + Data("%zz:x".utf8).base64EncodedString()])
    func malformedBasicIsInvalidClient(header: String) {
        #expect { try ClientAuthenticator.parseBasic(header) } throws: { ($0 as? OAuthError)?.code == "invalid_client" }
    }

    @Test func errorsCarryStatusAndKeepDebugPrivate() {
        #expect(OAuthError.invalidClient.status == 401)
        #expect(OAuthError.invalidGrant.status == 400)
        #expect(OAuthError.serverError.status == 500)
        let e = OAuthError.invalidGrant.with(description: "public", debug: "private")
        #expect(e.code == "invalid_grant")
        #expect(e.description == "public")
        #expect(e.debug == "private")
    }
}

/// Redirect URI registration rules (RFC 6749 §3.1.2, RFC 8252 §7, SECURITY.md).
@Suite("Redirect URIs")
struct RedirectURITests {
    @Test(arguments: [
        "https://app.example.com/callback", "https://app.example.com/cb?x=1", "http://127.0.0.1/cb",
        "http://127.0.0.1:8000/cb", "http://[::1]:9000/cb", "com.example.app:/oauth",
        "urn:ietf:wg:oauth:2.0:oob",
    ])
    func accepted(uri: String) {
        #expect(throws: Never.self) { try RedirectURI.validateForRegistration(uri) }
    }

    @Test(arguments: [
        "http://app.example.com/cb", "https://app.example.com/cb#frag", "javascript:alert(1)",
        "data:text/html,hi", "JAVASCRIPT:alert(1)", "vbscript:x", "file:///etc/passwd", "https://user:pw@app.example.com/cb",
        "https://*.example.com/cb", "/relative/cb", "myapp:/cb", "https:///nohost", "", "https://app.example.com/a b",
        "http://127.0.0.1.evil.example/cb", "http://localhost:3000/cb",
    ])
    func refused(uri: String) {
        #expect(throws: Administration.ValidationError.self) { try RedirectURI.validateForRegistration(uri) }
    }
}

/// Secrets: generation, hashing, constant-time comparison.
@Suite("Secrets")
struct SecretsTests {
    @Test func secretsAre256BitRandomBase64URL() {
        let a = Secrets.generate(), b = Secrets.generate()
        #expect(a.count == 43)
        #expect(a != b)
        #expect(Base64URL.decode(a)?.count == 32)
        #expect(!a.contains("+") && !a.contains("/") && !a.contains("="))
    }

    /// Client ids go on command lines: none may look like an option.
    @Test func identifiersNeverStartWithADashOrUnderscore() {
        for _ in 0..<2000 {
            let id = Secrets.identifier()
            #expect(id.count == 22)
            #expect(!id.hasPrefix("-") && !id.hasPrefix("_"))
        }
    }

    @Test func hashesAreSHA256HexAndVerifyInConstantTime() {
        // SHA-256("abc")
        #expect(Secrets.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Secrets.verify("abc", hash: Secrets.hash("abc")))
        #expect(!Secrets.verify("abd", hash: Secrets.hash("abc")))
        #expect(Secrets.constantTimeEquals("same", "same"))
        #expect(!Secrets.constantTimeEquals("same", "sane"))
        #expect(!Secrets.constantTimeEquals("short", "longer"))
    }

    @Test func passwordsUseBcryptAndUnknownUsersFail() async throws {
        let hasher = PasswordHasher(cost: 4)
        let hash = try await hasher.hash("correct horse")
        #expect(hash.hasPrefix("$2"))
        #expect(try await hasher.verify("correct horse", hash: hash))
        #expect(try await hasher.verify("wrong horse", hash: hash) == false)
        #expect(try await hasher.verify("anything", hash: nil) == false)
    }

    /// Beyond its limit the password gate refuses at once (503) instead of queueing.
    @Test func passwordGateRefusesWhenFull() async throws {
        let gate = Gate(limit: 1)
        let holding = Flag()
        let (stream, release) = AsyncStream<Void>.makeStream()
        async let first: Void = gate.run {
            holding.set()
            for await _ in stream { break }
        }
        let entered = try await waitUntil { holding.isSet }
        try #require(entered, "the first call did not enter the gate within 5 s")
        do {
            try await gate.run {}
            Issue.record("expected temporarily_unavailable")
        } catch let e as OAuthError {
            #expect(e.code == "temporarily_unavailable")
            #expect(e.status == 503)
        }
        release.yield()
        release.finish()
        try await first
        try await gate.run {}  // free again
    }

    @Test(arguments: [(1, 10, 0), (5, 10, 0), (6, 10, 1), (7, 10, 2), (9, 10, 8), (2, 4, 0), (3, 4, 1), (40, 100, 0),
                      (51, 100, 1), (60, 100, 30)])
    func progressiveDelay(failures: Int, limit: Int, seconds: Int64) {
        #expect(LoginThrottle.delay(afterFailures: failures, limit: limit) == seconds)
    }
}

/// Set by one task, read by another.
private final class Flag: Sendable {
    private let state = Mutex(false)
    func set() { state.withLock { $0 = true } }
    var isSet: Bool { state.withLock { $0 } }
}


final class MutableClock: @unchecked Sendable {
    var seconds: Double = 1_800_000_000
    var clock: Clock { Clock { [self] in Date(timeIntervalSince1970: seconds) } }
}
