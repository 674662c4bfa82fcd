import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

/// The authorization-code grant end to end: PKCE (RFC 7636, S256 only), single-use short-lived codes bound
/// to client and redirect URI (RFC 6749 §4.1.2, §4.1.3; RFC 9700 §4.2.4, §4.8), and the out-of-band URI.
@Suite("Authorization code grant")
struct AuthorizationCodeTests {
    /// A signed-in browser and a user.
    static func signedIn(_ h: Harness) async throws -> (Browser, UserRecord) {
        let user = try await h.makeUser()
        let browser = Browser(h)
        let r = try await browser.signIn(user.username)
        #expect(r.status == .seeOther)
        return (browser, user)
    }

    @Test(arguments: TestDatabase.available)
    func publicClientWithPKCE(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(isPublic: true)
            let (browser, user) = try await Self.signedIn(h)
            try await h.remember(app, for: user)
            let pkce = Harness.PKCEPair()
            let r = try await browser.get(Harness.authorizePath(app, pkce: pkce))
            #expect(r.status == .found)
            #expect(r.header("Cache-Control") == "no-store")
            let q = r.redirectParameters
            #expect(q["state"] == "st-123")
            #expect(q["iss"] == Harness.issuer)
            let code = try #require(q["code"])
            // 256 bits of randomness, base64url: 43 characters. Only its hash is stored.
            #expect(code.utf8.count == 43)
            let stored = try #require(try await h.store.authorizationCode(hash: Secrets.hash(code)))
            #expect(stored.hash != code)
            #expect(stored.expiresAt - stored.createdAt == 60)
            #expect(stored.userID == user.id)

            let t = try await h.redeem(app, code: code, verifier: pkce.verifier)
            #expect(t.status == .ok, "\(t.body)")
            #expect(t.header("Cache-Control") == "no-store")
            #expect(t.string("token_type") == "Bearer")
            #expect(t.string("scope") == "openid")
            #expect(t.string("id_token") != nil)
            let claims = Harness.decodeJWT(try #require(t.string("access_token"))).claims
            #expect(claims["sub"] as? String == user.id)
            #expect(claims["client_id"] as? String == app.id)
        }
    }

    /// HEAD answers like GET on safe routes, and never runs a GET route that changes state: a HEAD of an
    /// authorization request (a link preview of it) issues no code.
    @Test(arguments: TestDatabase.available)
    func headIsSafe(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, _) = try await Self.signedIn(h)
            for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json", "/login", "/healthz"] {
                let get = try await browser.get(path)
                let head = try await browser.head(path)
                #expect(head.status == get.status, "\(path)")
                #expect(head.body.isEmpty, "\(path)")
                #expect(head.header("Content-Type") == get.header("Content-Type"), "\(path)")
            }
            let unauthorized = try await h.head("/oauth2/userinfo")
            #expect(unauthorized.status == .unauthorized && unauthorized.header("WWW-Authenticate") != nil)
            let path = Harness.authorizePath(app, pkce: Harness.PKCEPair())
            for unsafe in [path, "/oauth2/logout", "/oauth2/oob", "/login/github/callback?state=x"] {
                let r = try await browser.head(unsafe)
                #expect(r.status == .methodNotAllowed && r.header("Allow") == "GET", "\(unsafe)")
            }
            // The same request by GET does issue a code (so the HEAD above really was refused, not broken).
            #expect(try await browser.get(path).status == .found)
        }
    }

    @Test(arguments: TestDatabase.available)
    func pkceIsRequiredForPublicClientsAndS256Only(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(isPublic: true)
            let (browser, user) = try await Self.signedIn(h)
            try await h.remember(app, for: user)
            let good = Harness.PKCEPair().challenge
            let cases: [[(String, String?)]] = [
                [],  // public client without a challenge
                [("code_challenge", good), ("code_challenge_method", "plain")],
                [("code_challenge", good), ("code_challenge_method", "s256")],
                [("code_challenge", good)],  // method omitted means plain (RFC 7636 §4.3)
                [("code_challenge_method", "S256")],  // method without a challenge
                [("code_challenge", String(good.dropLast())), ("code_challenge_method", "S256")],  // 42 characters
                [("code_challenge", good + "A"), ("code_challenge_method", "S256")],  // 44
                [("code_challenge", String(good.dropLast()) + "="), ("code_challenge_method", "S256")],
                [("code_challenge", String(good.dropLast()) + "+"), ("code_challenge_method", "S256")],
                [("code_challenge", String(good.dropLast()) + "."), ("code_challenge_method", "S256")],
                [("code_challenge", String(repeating: "a", count: 128)), ("code_challenge_method", "S256")],
            ]
            for extra in cases {
                let r = try await browser.get(Harness.authorizePath(app, extra))
                AuthorizationRequestTests.expectErrorRedirect(r, "invalid_request")
            }
            // Confidential clients may omit PKCE, but `plain` is refused for them too.
            let confidential = try await h.makeApp()
            _ = try await browser.code(Harness.authorizePath(confidential))
            AuthorizationRequestTests.expectErrorRedirect(
                try await browser.get(
                    Harness.authorizePath(confidential, [("code_challenge", good), ("code_challenge_method", "plain")])),
                "invalid_request")
        }
    }

    @Test(arguments: TestDatabase.available)
    func verifierMissingWrongOrMalformedIsInvalidGrant(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            for isPublic in [true, false] {
                let app = try await h.makeApp(isPublic: isPublic)
                let (browser, user) = try await Self.signedIn(h)
                try await h.remember(app, for: user)
                let pkce = Harness.PKCEPair()
                let other = Harness.PKCEPair()
                let bad: [String?] = [
                    nil, other.verifier, pkce.challenge,  // missing, wrong, the challenge itself ("plain")
                    String(pkce.verifier.prefix(42)),  // too short
                    String(repeating: "a", count: 129),  // too long
                    pkce.verifier + "!",  // not unreserved
                    " " + pkce.verifier,
                ]
                for verifier in bad {
                    let code = try await browser.code(Harness.authorizePath(app, pkce: pkce))
                    let r = try await h.redeem(app, code: code, verifier: verifier)
                    #expect(r.status == .badRequest, "public \(isPublic), verifier \(verifier ?? "nil")")
                    #expect(r.error == "invalid_grant", "public \(isPublic), verifier \(verifier ?? "nil")")
                }
                // A verifier of the maximum length with only unreserved characters works.
                let long = Harness.PKCEPair(verifier: String(repeating: "A-._~z09", count: 16))
                let code = try await browser.code(Harness.authorizePath(app, pkce: long))
                #expect(try await h.redeem(app, code: code, verifier: long.verifier).status == .ok)
            }
        }
    }

    /// RFC 9700 §4.8.2: a code issued without a challenge refuses a verifier.
    @Test(arguments: TestDatabase.available)
    func pkceDowngradeIsRefused(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, _) = try await Self.signedIn(h)
            let code = try await browser.code(Harness.authorizePath(app))
            let r = try await h.redeem(app, code: code, verifier: Harness.PKCEPair().verifier)
            #expect(r.error == "invalid_grant")
            // The same kind of code without a verifier works.
            let code2 = try await browser.code(Harness.authorizePath(app))
            #expect(try await h.redeem(app, code: code2).status == .ok)
        }
    }

    /// A second redemption fails and revokes what the first issued (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
    @Test(arguments: TestDatabase.available)
    func codesAreSingleUseAndReplayRevokesTheTokens(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()  // authorization_code + refresh_token, no offline_access registered
            let (browser, _) = try await Self.signedIn(h)
            let code = try await browser.code(Harness.authorizePath(app, scope: "openid profile"))
            let first = try await h.redeem(app, code: code)
            #expect(first.status == .ok)
            let access = try #require(first.string("access_token"))
            let refresh = try #require(first.string("refresh_token"))
            #expect(try await h.isActive(access))
            #expect(try await h.isActive(refresh) == false)  // refresh tokens are only introspectable by their client

            let second = try await h.redeem(app, code: code)
            #expect(second.status == .badRequest)
            #expect(second.error == "invalid_grant")
            #expect(second.header("Cache-Control") == "no-store")
            #expect(try await h.isActive(access) == false)
            let refreshed = try await h.token(app.credentials, [("grant_type", "refresh_token"), ("refresh_token", refresh)])
            #expect(refreshed.error == "invalid_grant")
            // UserInfo refuses the revoked access token as well.
            let info = try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(access)"])
            #expect(info.status == .unauthorized)
            // A third try is still refused.
            #expect(try await h.redeem(app, code: code).error == "invalid_grant")
        }
    }

    @Test(arguments: TestDatabase.available)
    func codesExpireAfterSixtySeconds(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, _) = try await Self.signedIn(h)
            let late = try await browser.code(Harness.authorizePath(app))
            let inTime = try await browser.code(Harness.authorizePath(app))
            h.testClock.advance(seconds: 59)
            #expect(try await h.redeem(app, code: inTime).status == .ok)
            h.testClock.advance(seconds: 2)
            let r = try await h.redeem(app, code: late)
            #expect(r.error == "invalid_grant")
        }
    }

    @Test(arguments: TestDatabase.available)
    func codesAreBoundToClientAndRedirectURI(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(redirectURIs: [Harness.redirect, "https://app.example.com/other"])
            let thief = try await h.makeApp()  // same redirect URI registered
            let (browser, _) = try await Self.signedIn(h)
            let code = try await browser.code(Harness.authorizePath(app))

            #expect(try await h.redeem(thief, code: code).error == "invalid_grant")
            // Wrong, missing, or differently written redirect_uri.
            #expect(try await h.redeem(app, code: code, redirectURI: "https://app.example.com/other").error == "invalid_grant")
            #expect(try await h.redeem(app, code: code, redirectURI: "https://app.example.com/cb/").error == "invalid_grant")
            let missing = try await h.post(
                "/oauth2/token", [("grant_type", "authorization_code"), ("code", code)], auth: app.credentials)
            #expect(missing.error == "invalid_grant")
            // Wrong client credentials are a client error, not a grant error.
            let wrongSecret = try await h.post(
                "/oauth2/token", [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect)],
                auth: (app.id, "wrong"))
            #expect(wrongSecret.status == .unauthorized)
            #expect(wrongSecret.error == "invalid_client")
            // None of those consumed the code.
            #expect(try await h.redeem(app, code: code).status == .ok)
            // Garbage codes.
            #expect(try await h.redeem(app, code: "garbage").error == "invalid_grant")
            #expect(try await h.redeem(app, code: String(repeating: "x", count: 300)).error == "invalid_grant")
        }
    }

    /// A code sent once per request: a repeated `code` is invalid_request and consumes nothing.
    @Test(arguments: TestDatabase.available)
    func repeatedTokenParametersAreInvalidRequest(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, _) = try await Self.signedIn(h)
            let code = try await browser.code(Harness.authorizePath(app))
            let r = try await h.post(
                "/oauth2/token",
                [("grant_type", "authorization_code"), ("code", code), ("code", code), ("redirect_uri", Harness.redirect)],
                auth: app.credentials)
            #expect(r.error == "invalid_request")
            #expect(try await h.redeem(app, code: code).status == .ok)
        }
    }

    /// 50 concurrent redemptions of one code: exactly one succeeds; the rest are replays.
    @Test(arguments: TestDatabase.available)
    func fiftyConcurrentRedemptions(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(isPublic: true)
            let (browser, user) = try await Self.signedIn(h)
            try await h.remember(app, for: user)
            let pkce = Harness.PKCEPair()
            let code = try await browser.code(Harness.authorizePath(app, pkce: pkce))
            let replies = try await withThrowingTaskGroup(of: Harness.Reply.self) { group in
                for _ in 0..<50 { group.addTask { try await h.redeem(app, code: code, verifier: pkce.verifier) } }
                var all: [Harness.Reply] = []
                for try await r in group { all.append(r) }
                return all
            }
            let ok = replies.filter { $0.status == .ok }
            #expect(ok.count == 1)
            #expect(replies.filter { $0.error == "invalid_grant" }.count == 49)
            #expect(replies.allSatisfy { $0.status == .ok || $0.status == .badRequest })
            // The losers were replays: the winner's tokens are revoked.
            if let winner = ok.first?.string("access_token") {
                #expect(try await h.isActive(winner) == false)
            }
        }
    }

    /// urn:ietf:wg:oauth:2.0:oob: always after the consent page (never silently), the code shown on our page
    /// and carried there in a cookie scoped to it (never in the URL); errors are shown, never redirected.
    @Test(arguments: TestDatabase.available)
    func outOfBandCodes(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let oob = RedirectURI.outOfBand
            let app = try await h.makeApp(redirectURIs: [oob], isPublic: true)
            let (browser, user) = try await Self.signedIn(h)
            try await h.remember(app, for: user)
            let pkce = Harness.PKCEPair()

            // Even a remembered consent does not skip the page for the out-of-band URI.
            let consent = try await browser.get(Harness.authorizePath(app, pkce: pkce))
            #expect(consent.status == .ok)
            #expect(consent.body.contains(#"id="consent-form""#))
            let allowed = try await browser.submit(consent, to: "/consent", [("decision", "allow"), ("remember", "on")])
            #expect(allowed.status == .seeOther)
            #expect(allowed.location == "/oauth2/oob")  // no code in the URL
            let cookie = try #require(allowed.setCookie("__Secure-gatehouse_oob"))
            for attribute in ["Path=/oauth2/oob", "HttpOnly", "SameSite=Strict", "Secure", "Max-Age=120"] {
                #expect(cookie.contains(attribute), "\(cookie)")
            }

            let page = try await browser.get("/oauth2/oob")
            #expect(page.status == .ok)
            #expect(page.isHTMLPage)
            #expect(page.header("X-Frame-Options") == "DENY")
            let code = try #require(Harness.element(id: "code", in: page.body))
            #expect(code.utf8.count == 43)
            #expect(Harness.element(id: "state", in: page.body) == "st-123")
            // Shown once: the cookie is cleared with the page.
            #expect(page.setCookie("__Secure-gatehouse_oob")?.contains("Max-Age=0") == true)
            #expect(try await browser.get("/oauth2/oob").status == .badRequest)
            // Nobody can make the page show a code of their choosing.
            let forged = try await Browser(h).get("/oauth2/oob?code=attacker-chosen&state=x")
            #expect(forged.status == .badRequest)
            #expect(!forged.body.contains("attacker-chosen"))

            #expect(try await h.redeem(app, code: code, redirectURI: oob, verifier: pkce.verifier).status == .ok)
            // The out-of-band code is bound to that URI like any other.
            let consent2 = try await browser.get(Harness.authorizePath(app, pkce: pkce))
            #expect(consent2.status == .ok)  // "remember" does not apply to the out-of-band URI
            _ = try await browser.submit(consent2, to: "/consent", [("decision", "allow")])
            let code2 = try #require(Harness.element(id: "code", in: try await browser.get("/oauth2/oob").body))
            #expect(try await h.redeem(app, code: code2, redirectURI: Harness.redirect, verifier: pkce.verifier).error == "invalid_grant")

            // Errors for an out-of-band request are pages.
            for extra: [(String, String?)] in [[("response_type", "token")], [("scope", "admin")], [("code_challenge", nil)]] {
                let e = try await browser.get(Harness.authorizePath(app, pkce: pkce, extra))
                #expect(e.status == .badRequest)
                #expect(e.isHTMLPage)
                #expect(e.location == nil)
            }
            let denied = try await browser.get(Harness.authorizePath(app, pkce: pkce))
            let deny = try await browser.submit(denied, to: "/consent", [("decision", "deny")])
            #expect(deny.location == nil)
            #expect(deny.isHTMLPage)
            #expect(deny.body.contains("access_denied"))
            let noSession = try await Browser(h).get(Harness.authorizePath(app, pkce: pkce, [("prompt", "none")]))
            #expect(noSession.location == nil)
            #expect(noSession.body.contains("login_required"))
            let needsConsent = try await browser.get(Harness.authorizePath(app, pkce: pkce, [("prompt", "none")]))
            #expect(needsConsent.location == nil)
            #expect(needsConsent.body.contains("consent_required"))
        }
    }
}
