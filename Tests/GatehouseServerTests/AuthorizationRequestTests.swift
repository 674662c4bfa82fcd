import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

/// The authorization endpoint's request validation (RFC 6749 §3.1.2, §4.1.2.1; RFC 9700 §4.1; RFC 9207;
/// RFC 8252 §7.3): which requests show an error page, which redirect back with an error.
@Suite("Authorization requests")
struct AuthorizationRequestTests {
    /// An error page: 400, HTML, and never a Location header (no open redirect).
    static func expectErrorPage(_ r: Harness.Reply, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == .badRequest, "\(label): status \(r.status)", sourceLocation: sourceLocation)
        #expect(r.isHTMLPage, "\(label): content type \(r.contentType)", sourceLocation: sourceLocation)
        #expect(r.location == nil, "\(label): redirected to \(r.location ?? "")", sourceLocation: sourceLocation)
        #expect(r.header("X-Frame-Options") == "DENY", sourceLocation: sourceLocation)
    }

    /// An error redirect to `redirectURI` with `error`, `error_description`, `state` and `iss`, and no code.
    static func expectErrorRedirect(
        _ r: Harness.Reply, _ error: String, to redirectURI: String = Harness.redirect, state: String? = "st-123",
        status: HTTPResponse.Status = .found, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(r.status == status, "\(error): status \(r.status) \(r.body.prefix(200))", sourceLocation: sourceLocation)
        let location = r.location ?? ""
        #expect(location.hasPrefix(redirectURI + "?"), "\(error): Location \(location)", sourceLocation: sourceLocation)
        let q = r.redirectParameters
        #expect(q["error"] == error, "expected \(error), got \(q["error"] ?? "nil")", sourceLocation: sourceLocation)
        #expect(q["error_description"]?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(q["state"] == state, sourceLocation: sourceLocation)
        #expect(q["iss"] == Harness.issuer, sourceLocation: sourceLocation)
        #expect(q["code"] == nil, sourceLocation: sourceLocation)
    }

    /// SECURITY.md's attack table: none of these may be taken for `https://app.example.com/cb`, even for a
    /// signed-in user of a client that skips consent (an accepted URI would receive a code).
    @Test(arguments: TestDatabase.available)
    func redirectURIAttacksShowAnErrorPage(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let user = try await h.makeUser()
            let browser = Browser(h)
            #expect(try await browser.signIn(user.username).status == .seeOther)
            // The registered URI itself works (the attacks below are refused for the URI, not the session).
            _ = try await browser.code(Harness.authorizePath(app))

            let attacks = [
                "https://APP.example.com/cb", "HTTPS://app.example.com/cb", "https://app.example.com/CB",
                "https://app.example.com/cb?x=1", "https://app.example.com/cb?", "https://app.example.com/cb/",
                "https://app.example.com/cb/extra", "https://app.example.com/cbx", "https://app.example.com/cb/../cb",
                "https://app.example.com/x/../cb", "https://app.example.com/cb/%2E%2E/cb", "https://app.example.com/%2E%2E/cb",
                "https://app.example.com/cb/..;/evil", "https://app.example.com/..;/cb", "https://app.example.com@evil.com/cb",
                "https://evil.com@app.example.com/cb", "https://app.example.com:443/cb", "https://app.example.com.evil.com/cb",
                "https://app.example.com/cb#frag", "http://app.example.com/cb", "https://app.example.com/cb%20",
                "https://app.example.com/c%62", "//app.example.com/cb", " https://app.example.com/cb",
                "javascript:alert(1)//https://app.example.com/cb", "javascript://app.example.com/cb%0Aalert(1)",
                "data:text/html,<script>alert(1)</script>", "https://evil.com/cb",
            ]
            for uri in attacks {
                let r = try await browser.get(Harness.authorizePath(app, redirectURI: uri))
                Self.expectErrorPage(r, uri)
                // Even prompt=none, which answers without a page, must not redirect there.
                let silent = try await browser.get(Harness.authorizePath(app, redirectURI: uri, [("prompt", "none")]))
                Self.expectErrorPage(silent, "prompt=none \(uri)")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func unknownClientMissingOrRepeatedRedirectURI(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let two = try await h.makeApp(redirectURIs: [Harness.redirect, "https://app.example.com/other"])
            let one = try await h.makeApp()
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)

            // Two registered: redirect_uri is required.
            Self.expectErrorPage(try await browser.get(Harness.authorizePath(two, [("redirect_uri", nil)])), "missing with two")
            // Exactly one registered: still required (OAuth 2.1 §4.1.1, OIDC Core §3.1.2.1).
            Self.expectErrorPage(try await browser.get(Harness.authorizePath(one, [("redirect_uri", nil)])), "missing with one")
            Self.expectErrorPage(try await browser.get(Harness.authorizePath(one, [("redirect_uri", "")])), "empty")
            // The second registered URI works as well, exactly.
            let second = try await browser.get(Harness.authorizePath(two, redirectURI: "https://app.example.com/other"))
            #expect(second.location?.hasPrefix("https://app.example.com/other?code=") == true)

            // Unknown, missing, or repeated client_id; repeated redirect_uri.
            let unknown = Harness.App(id: "no-such-client", secret: "", record: one.record)
            Self.expectErrorPage(try await browser.get(Harness.authorizePath(unknown)), "unknown client")
            Self.expectErrorPage(try await browser.get(Harness.authorizePath(one, [("client_id", nil)])), "no client_id")
            Self.expectErrorPage(
                try await browser.get(Harness.authorizePath(one) + "&client_id=" + one.id), "repeated client_id")
            Self.expectErrorPage(
                try await browser.get(Harness.authorizePath(one) + "&redirect_uri=https%3A%2F%2Fevil.com%2Fcb"),
                "repeated redirect_uri")
            // Unknown client with an error that would otherwise redirect (bad response_type): still a page.
            Self.expectErrorPage(
                try await browser.get(Harness.authorizePath(unknown, [("response_type", "token")])), "unknown + token")
            // The page, not a redirect, also without a session.
            let anonymous = Browser(h)
            Self.expectErrorPage(try await anonymous.get(Harness.authorizePath(two, redirectURI: "https://evil.com/cb")), "anon")
        }
    }

    /// A registered query is part of the URI: it must be repeated exactly and is kept in the response.
    @Test(arguments: TestDatabase.available)
    func registeredQueryMustMatchExactly(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let registered = "https://app.example.com/cb?tenant=a"
            let app = try await h.makeApp(redirectURIs: [registered])
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            for uri in ["https://app.example.com/cb?tenant=b", "https://app.example.com/cb", "https://app.example.com/cb?tenant=a&x=1",
                        "https://app.example.com/cb?x=1&tenant=a", "https://app.example.com/cb?TENANT=a"]
            {
                Self.expectErrorPage(try await browser.get(Harness.authorizePath(app, redirectURI: uri)), uri)
            }
            let ok = try await browser.get(Harness.authorizePath(app, redirectURI: registered))
            #expect(ok.location?.hasPrefix(registered + "&code=") == true, "\(ok.location ?? "")")
            #expect(ok.redirectParameters["tenant"] == "a")
            let code = try #require(ok.redirectParameters["code"])
            #expect(try await h.redeem(app, code: code, redirectURI: registered).status == .ok)
        }
    }

    /// RFC 8252 §7.3: loopback IP literals may use any port; nothing else about them may vary.
    @Test(arguments: TestDatabase.available)
    func loopbackRedirectMayVaryOnlyThePort(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(redirectURIs: ["http://127.0.0.1/cb", "http://[::1]/cb"], isPublic: true)
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            try await h.remember(app, for: user)
            let pkce = Harness.PKCEPair()

            for uri in ["http://127.0.0.1:53123/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb"] {
                let r = try await browser.get(Harness.authorizePath(app, pkce: pkce, redirectURI: uri))
                #expect(r.status == .found, "\(uri)")
                #expect(r.location?.hasPrefix(uri + "?code=") == true, "\(uri): \(r.location ?? "")")
            }
            // The code is bound to the exact URI used, port included.
            let code = try await browser.code(Harness.authorizePath(app, pkce: pkce, redirectURI: "http://127.0.0.1:53123/cb"))
            #expect(try await h.redeem(app, code: code, redirectURI: "http://127.0.0.1:9999/cb", verifier: pkce.verifier).error
                == "invalid_grant")
            let code2 = try await browser.code(Harness.authorizePath(app, pkce: pkce, redirectURI: "http://127.0.0.1:53123/cb"))
            #expect(try await h.redeem(app, code: code2, redirectURI: "http://127.0.0.1:53123/cb", verifier: pkce.verifier).status
                == .ok)

            for uri in [
                "http://127.0.0.1:53123/cb2", "http://localhost:53123/cb", "http://localhost/cb", "https://127.0.0.1:53123/cb",
                "http://127.0.0.1:53123/CB", "http://127.0.0.1:53123/cb/", "http://127.0.0.1:53123/cb?x=1",
                "http://127.0.0.1:53123@evil.com/cb", "http://127.0.0.1@evil.com/cb", "http://127.0.0.1.evil.com:53123/cb",
                "http://127.0.0.2:53123/cb", "http://127.0.0.1:abc/cb", "http://127.0.0.1:/cb", "http://127.0.0.1:5312345/cb",
                "http://[::1]:8080/cb2",
            ] {
                Self.expectErrorPage(try await browser.get(Harness.authorizePath(app, pkce: pkce, redirectURI: uri)), uri)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func registrationRefusesUnsafeURIs(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let bad = [
                "https://app.example.com/cb#frag", "https://app.example.com/cb#", "http://app.example.com/cb",
                "http://localhost/cb", "http://localhost:8080/cb", "javascript:alert(1)", "JavaScript:alert(1)",
                "data:text/html,hello", "vbscript:msgbox", "file:///etc/passwd", "https://*.example.com/cb",
                "https://user:pw@app.example.com/cb", "https://user@app.example.com/cb", "/relative/cb", "cb", "",
                "myapp:/cb", "https://app.example.com/c b", "https:///cb",
            ]
            for uri in bad {
                await #expect(throws: Administration.ValidationError.self, "redirect \(uri)") {
                    _ = try await h.makeApp(redirectURIs: [uri])
                }
                await #expect(throws: Administration.ValidationError.self, "post-logout \(uri)") {
                    _ = try await h.makeApp(postLogoutRedirectURIs: [uri])
                }
            }
            // The out-of-band URI is a redirect URI, never a post-logout target.
            await #expect(throws: Administration.ValidationError.self) {
                _ = try await h.makeApp(postLogoutRedirectURIs: [RedirectURI.outOfBand])
            }
            // What is allowed.
            let ok = try await h.makeApp(
                redirectURIs: [
                    "https://app.example.com/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb", "com.example.app:/cb",
                    RedirectURI.outOfBand,
                ],
                postLogoutRedirectURIs: ["https://app.example.com/", "http://127.0.0.1:3000/bye", "com.example.app:/bye"])
            #expect(ok.record.redirectURIs.count == 5)
            #expect(try await h.store.client(id: ok.id)?.postLogoutRedirectURIs.count == 3)
        }
    }

    /// After the redirect URI is validated, errors go back to it with `error`, `state` and `iss`.
    @Test(arguments: TestDatabase.available)
    func errorsRedirectWithStateAndIssuer(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            let cases: [([(String, String?)], String)] = [
                ([("response_type", "token")], "unsupported_response_type"),
                ([("response_type", "code id_token")], "unsupported_response_type"),
                ([("response_type", "id_token")], "unsupported_response_type"),
                ([("response_type", nil)], "invalid_request"),
                ([("scope", "openid admin")], "invalid_scope"),
                ([("scope", "openid \"x")], "invalid_scope"),
                ([("request", "eyJhbGciOiJub25lIn0.e30.")], "request_not_supported"),
                ([("request_uri", "https://evil.com/request.jwt")], "request_uri_not_supported"),
                ([("registration", "{}")], "registration_not_supported"),
                ([("response_mode", "fragment")], "invalid_request"),
                ([("response_mode", "form_post")], "invalid_request"),
                ([("prompt", "bogus")], "invalid_request"),
                ([("prompt", "none login")], "invalid_request"),
                ([("max_age", "-1")], "invalid_request"),
                ([("max_age", "soon")], "invalid_request"),
                ([("id_token_hint", "not.a.jwt")], "invalid_request"),
                ([("code_challenge_method", "plain"), ("code_challenge", String(repeating: "a", count: 43))], "invalid_request"),
            ]
            for (extra, error) in cases {
                let r = try await browser.get(Harness.authorizePath(app, extra))
                Self.expectErrorRedirect(r, error)
            }
            // Duplicated parameters (other than client_id/redirect_uri) are invalid_request, redirected.
            for name in ["scope", "response_type", "nonce", "prompt", "code_challenge"] {
                let r = try await browser.get(Harness.authorizePath(app) + "&\(name)=x&\(name)=y")
                Self.expectErrorRedirect(r, "invalid_request")
            }
            // A repeated state cannot be echoed: the error still carries iss but no state.
            let twoStates = try await browser.get(Harness.authorizePath(app) + "&state=other")
            Self.expectErrorRedirect(twoStates, "invalid_request", state: nil)
            // Without state, none comes back.
            Self.expectErrorRedirect(
                try await browser.get(Harness.authorizePath(app, state: nil, [("response_type", "token")])),
                "unsupported_response_type", state: nil)
            // Unknown parameters are ignored.
            let unknown = try await browser.get(Harness.authorizePath(app, [("foo", "bar"), ("ui_locales", "de"), ("display", "page"), ("acr_values", "1"), ("claims_locales", "fr")]))
            #expect(unknown.redirectParameters["code"] != nil)
            #expect(unknown.redirectParameters["iss"] == Harness.issuer)
            #expect(unknown.redirectParameters["state"] == "st-123")
        }
    }

    @Test(arguments: TestDatabase.available)
    func clientWithoutTheCodeGrantIsUnauthorized(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(scope: "openid", grantTypes: ["client_credentials"])
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            Self.expectErrorRedirect(try await browser.get(Harness.authorizePath(app)), "unauthorized_client")
            // And without a session as well: the error comes before the login page.
            Self.expectErrorRedirect(try await Browser(h).get(Harness.authorizePath(app)), "unauthorized_client")
        }
    }

    /// The POST form of the authorization endpoint (OIDC Core §3.1.2.1) behaves the same, answered with 303.
    @Test(arguments: TestDatabase.available)
    func postToTheAuthorizationEndpoint(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            let pairs = Harness.query(Harness.authorizePath(app)).map { ($0.key, $0.value) }
            let r = try await browser.post("/oauth2/authorize", pairs)
            #expect(r.status == .seeOther)
            #expect(r.redirectParameters["code"] != nil)
            let bad = try await browser.post("/oauth2/authorize", pairs.filter { $0.0 != "redirect_uri" } + [("redirect_uri", "https://evil.com/cb")])
            Self.expectErrorPage(bad, "POST evil")
            // A cross-site POST carries no (SameSite=Lax) session cookie: it is repeated as a GET, which does.
            let crossSite = try await h.post("/oauth2/authorize", pairs)
            #expect(crossSite.status == .seeOther)
            let again = try #require(crossSite.location)
            #expect(again.hasPrefix("/oauth2/authorize?"))
            #expect(Harness.query(again)["client_id"] == app.id)
            #expect(Harness.query(again)["redirect_uri"] == Harness.redirect)
            let followed = try await browser.get(again)
            #expect(followed.status == .found)
            #expect(followed.redirectParameters["code"] != nil)
        }
    }
}
