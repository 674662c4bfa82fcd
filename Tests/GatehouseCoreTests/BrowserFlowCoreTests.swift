import Foundation
import Testing

@testable import GatehouseCore

@Suite("PKCE, redirect matching, ID token hashes")
struct BrowserFlowCoreTests {
    /// RFC 7636 Appendix B.
    @Test func pkceS256MatchesTheRFCExample() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        #expect(PKCE.challenge(for: verifier) == challenge)
        #expect(PKCE.verify(verifier: verifier, challenge: challenge))
        #expect(!PKCE.verify(verifier: verifier + "x", challenge: challenge))
        #expect(PKCE.isValidVerifier(verifier))
        #expect(!PKCE.isValidVerifier(String(repeating: "a", count: 42)))  // §4.1: at least 43
        #expect(!PKCE.isValidVerifier(String(repeating: "a", count: 129)))  // at most 128
        #expect(!PKCE.isValidVerifier(String(repeating: "a", count: 42) + "+"))  // outside the alphabet
        #expect(PKCE.isValidChallenge(challenge))
        #expect(!PKCE.isValidChallenge(challenge + "A"))
        #expect(!PKCE.isValidChallenge(String(challenge.dropLast()) + "="))
    }

    @Test func redirectURIsMatchExactlyExceptLoopbackPorts() {
        let registered = "https://app.example.com/cb"
        #expect(RedirectURI.matches(registered: registered, requested: registered))
        for attack in [
            "https://APP.example.com/cb", "https://app.example.com/CB", "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1", "https://app.example.com/cb/..", "https://app.example.com/cb/%2E%2E",
            "https://app.example.com/cb/..;/", "https://app.example.com@evil.com/cb",
            "https://app.example.com.evil.com/cb", "https://app.example.com:443/cb", "http://app.example.com/cb",
            "https://app.example.com/cbx", "javascript:alert(1)", "data:text/html,x", "",
        ] {
            #expect(!RedirectURI.matches(registered: registered, requested: attack), "\(attack)")
        }
        // RFC 8252 §7.3: loopback IP literals may vary the port, nothing else.
        #expect(RedirectURI.matches(registered: "http://127.0.0.1/cb", requested: "http://127.0.0.1:53123/cb"))
        #expect(RedirectURI.matches(registered: "http://127.0.0.1:8000/cb", requested: "http://127.0.0.1:9/cb"))
        #expect(RedirectURI.matches(registered: "http://[::1]/cb", requested: "http://[::1]:4000/cb"))
        #expect(!RedirectURI.matches(registered: "http://127.0.0.1/cb", requested: "http://127.0.0.1:53123/cb2"))
        #expect(!RedirectURI.matches(registered: "http://127.0.0.1/cb", requested: "http://localhost:53123/cb"))
        #expect(!RedirectURI.matches(registered: "http://127.0.0.1/cb", requested: "http://127.0.0.1:x/cb"))
        #expect(!RedirectURI.matches(registered: "http://127.0.0.1/cb", requested: "http://127.0.0.1.evil.com/cb"))
        #expect(!RedirectURI.matches(registered: "http://127.0.0.1/cb", requested: "http://127.0.0.1:80@evil.com/cb"))
        #expect(!RedirectURI.matches(registered: "https://127.0.0.1/cb", requested: "https://127.0.0.1:8443/cb"))
    }

    @Test func responsesKeepTheRedirectURIsQueryAndEncodeValues() {
        #expect(
            RedirectURI.appending([("code", "a b&c"), ("state", nil), ("iss", "https://as.example")], to: "https://c.example/cb?x=1")
                == "https://c.example/cb?x=1&code=a%20b%26c&iss=https%3A%2F%2Fas.example")
        #expect(RedirectURI.appending([("state", "s")], to: "https://c.example/cb") == "https://c.example/cb?state=s")
    }

    /// OIDC Core §3.1.3.6 (the example in §A.3 uses RS256 → SHA-256): left half, base64url.
    @Test func atHashIsTheLeftHalfOfTheHash() {
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
        #expect(IDTokenClaims.halfHash(token, algorithm: .rs256) == "77QmUPtjPfzWtF2AnpK9RQ")
        #expect(IDTokenClaims.halfHash(token, algorithm: .es256) == "77QmUPtjPfzWtF2AnpK9RQ")
        #expect(IDTokenClaims.halfHash(token, algorithm: .es384).count == 32)  // 24 bytes
        #expect(IDTokenClaims.halfHash(token, algorithm: .edDSA).count == 43)  // 32 bytes
    }

    @Test func errorDescriptionsKeepToTheAllowedCharacters() {
        let e = OAuthError.invalidRequest.with(description: "bad \"value\" \\ é\n")
        #expect(e.safeDescription == "bad ?value? ? ??")
    }
}

@Suite("python-social-auth redirect_state (lego profile)")
struct RedirectStateTests {
    @Test func onlyOneRedirectStateParameterIsRemoved() {
        #expect(RedirectURI.withoutRedirectState("https://app.example/complete/lego/?redirect_state=abc") == "https://app.example/complete/lego/")
        #expect(RedirectURI.withoutRedirectState("https://app.example/cb?x=1&redirect_state=abc") == "https://app.example/cb?x=1")
        #expect(RedirectURI.withoutRedirectState("https://app.example/cb") == nil)
        #expect(RedirectURI.withoutRedirectState("https://app.example/cb?other=1") == nil)
        #expect(RedirectURI.withoutRedirectState("https://app.example/cb?redirect_state=a&redirect_state=b") == nil)
        // Nothing else is relaxed: the rest must still match exactly.
        #expect(
            !RedirectURI.matches(
                registered: "https://app.example/cb",
                requested: RedirectURI.withoutRedirectState("https://app.example/cb/evil?redirect_state=a")!))
    }
}
