import Crypto
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer
import GatehouseTestSupport
import HTTPTypes
import JWTKit
import Testing

/// OpenID Connect on top of the code flow: request parameters (Core §3.1.2.1), the ID token (§2, §3.1.3.6),
/// refresh (§12), UserInfo (§5.3 with RFC 6750) and RP-Initiated Logout 1.0.
@Suite("OpenID Connect")
struct OIDCTests {
    static let start: Int64 = 1_800_000_000

    /// Authorizes (signed in, consent skipped) and redeems: the token response.
    static func tokens(
        _ h: Harness, _ app: Harness.App, _ browser: Browser, scope: String = "openid", _ extra: [(String, String?)] = []
    ) async throws -> Harness.Reply {
        let code = try await browser.code(Harness.authorizePath(app, scope: scope, extra))
        let r = try await h.redeem(app, code: code)
        #expect(r.status == .ok, "\(r.body)")
        return r
    }

    static func signedIn(_ h: Harness, _ user: UserRecord? = nil) async throws -> (Browser, UserRecord) {
        let user = try await user.asyncOr { try await h.makeUser() }
        let browser = Browser(h)
        #expect(try await browser.signIn(user.username).status == .seeOther)
        return (browser, user)
    }

    static func isLoginPage(_ r: Harness.Reply) -> Bool {
        r.status == .ok && r.body.contains(#"id="login-form""#)
    }

    // MARK: request parameters

    @Test(arguments: TestDatabase.available)
    func promptNone(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(skipConsent: false)
            // No session: login_required, redirected with state and iss, never a page.
            let anonymous = try await Browser(h).get(Harness.authorizePath(app, [("prompt", "none")]))
            AuthorizationRequestTests.expectErrorRedirect(anonymous, "login_required")
            // A session, but consent is needed.
            let (browser, _) = try await Self.signedIn(h)
            AuthorizationRequestTests.expectErrorRedirect(
                try await browser.get(Harness.authorizePath(app, [("prompt", "none")])), "consent_required")
            // Remembered consent: a code, silently.
            let page = try await browser.get(Harness.authorizePath(app))
            _ = try await browser.submit(page, to: "/consent", [("decision", "allow"), ("remember", "on")])
            let silent = try await browser.get(Harness.authorizePath(app, [("prompt", "none")]))
            #expect(silent.status == .found)
            #expect(silent.redirectParameters["code"] != nil)
            #expect(silent.redirectParameters["iss"] == Harness.issuer)
            // prompt=none with max_age exceeded: login_required, not a page.
            h.testClock.advance(seconds: 120)
            AuthorizationRequestTests.expectErrorRedirect(
                try await browser.get(Harness.authorizePath(app, [("prompt", "none"), ("max_age", "60")])), "login_required")
        }
    }

    @Test(arguments: TestDatabase.available)
    func promptLoginAsksForThePasswordAgain(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, user) = try await Self.signedIn(h)
            let page = try await browser.get(Harness.authorizePath(app, [("prompt", "login"), ("nonce", "n1")]))
            #expect(Self.isLoginPage(page))
            let returnTo = try #require(page.hidden("return_to"))
            #expect(!returnTo.contains("prompt"))  // satisfied by the sign-in: no loop
            #expect(Harness.query(returnTo)["nonce"] == "n1")

            h.testClock.advance(seconds: 30)
            let signedIn = try await browser.signIn(user.username, returnTo: returnTo)
            #expect(signedIn.location == returnTo)
            let code = try await browser.code(try #require(signedIn.location))
            let t = try await h.redeem(app, code: code)
            let claims = Harness.decodeJWT(try #require(t.string("id_token"))).claims
            #expect(claims["auth_time"] as? Int == Int(Self.start + 30))
            #expect(claims["nonce"] as? String == "n1")
        }
    }

    @Test(arguments: TestDatabase.available)
    func maxAgeExceededAsksForThePasswordAgain(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, user) = try await Self.signedIn(h)
            // Within max_age: a code; the ID token carries auth_time.
            h.testClock.advance(seconds: 100)
            let fresh = try await Self.tokens(h, app, browser, [("max_age", "300")])
            #expect(Harness.decodeJWT(try #require(fresh.string("id_token"))).claims["auth_time"] as? Int == Int(Self.start))

            h.testClock.advance(seconds: 201)  // 301 s since sign-in
            let page = try await browser.get(Harness.authorizePath(app, [("max_age", "300")]))
            #expect(Self.isLoginPage(page))
            let returnTo = try #require(page.hidden("return_to"))
            #expect(!returnTo.contains("max_age"))
            let signedIn = try await browser.signIn(user.username, returnTo: returnTo)
            let code = try await browser.code(try #require(signedIn.location))
            let t = try await h.redeem(app, code: code)
            let claims = Harness.decodeJWT(try #require(t.string("id_token"))).claims
            #expect(claims["auth_time"] as? Int == Int(Self.start + 301))
        }
    }

    /// OIDC Core §3.1.2.1 (errata set 2): "max_age=0 is equivalent to prompt=login" — also within the
    /// second the user signed in.
    @Test(arguments: TestDatabase.available)
    func maxAgeZeroAlwaysAsksForThePassword(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, _) = try await Self.signedIn(h)
            h.testClock.advance(seconds: 1)
            #expect(Self.isLoginPage(try await browser.get(Harness.authorizePath(app, [("max_age", "0")]))))
            let (sameSecond, _) = try await Self.signedIn(h)
            let r = try await sameSecond.get(Harness.authorizePath(app, [("max_age", "0")]))
            #expect(Self.isLoginPage(r), "max_age=0 right after sign-in answered \(r.status) \(r.location ?? "")")
        }
    }

    @Test(arguments: TestDatabase.available)
    func loginHintFillsInTheUsername(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let page = try await Browser(h).get(Harness.authorizePath(app, [("login_hint", "ada@example.com")]))
            #expect(Self.isLoginPage(page))
            #expect(page.body.contains(#"name="username" type="text""#))
            #expect(page.body.contains(#"value="ada@example.com""#))
            // Escaped, not injected.
            let evil = try await Browser(h).get(Harness.authorizePath(app, [("login_hint", #""><img src=x>"#)]))
            #expect(!evil.body.contains("<img src=x>"))
            #expect(evil.body.contains("&quot;&gt;&lt;img src=x&gt;"))
            // The login page takes it directly, too.
            #expect(try await Browser(h).get("/login?login_hint=bob").body.contains(#"value="bob""#))
        }
    }

    @Test(arguments: TestDatabase.available)
    func idTokenHint(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let otherApp = try await h.makeApp()
            let (aliceBrowser, _) = try await Self.signedIn(h)
            let (bobBrowser, _) = try await Self.signedIn(h)
            let aliceHint = try #require(try await Self.tokens(h, app, aliceBrowser).string("id_token"))

            // The hint names the signed-in user: fine, also with prompt=none.
            let same = try await aliceBrowser.get(Harness.authorizePath(app, [("prompt", "none"), ("id_token_hint", aliceHint)]))
            #expect(same.redirectParameters["code"] != nil)
            // Another user is signed in: login_required with prompt=none, the login page without.
            AuthorizationRequestTests.expectErrorRedirect(
                try await bobBrowser.get(Harness.authorizePath(app, [("prompt", "none"), ("id_token_hint", aliceHint)])),
                "login_required")
            #expect(Self.isLoginPage(try await bobBrowser.get(Harness.authorizePath(app, [("id_token_hint", aliceHint)]))))
            // A hint issued to another client, an access token, or a tampered token: invalid_request.
            let access = try #require(try await Self.tokens(h, app, aliceBrowser).string("access_token"))
            var tampered = aliceHint.split(separator: ".").map(String.init)
            tampered[1] = Base64URL.encode(Data(#"{"sub":"x"}"#.utf8))
            for hint in [access, tampered.joined(separator: "."), "abc.def.ghi"] {
                AuthorizationRequestTests.expectErrorRedirect(
                    try await aliceBrowser.get(Harness.authorizePath(app, [("id_token_hint", hint)])), "invalid_request")
            }
            AuthorizationRequestTests.expectErrorRedirect(
                try await aliceBrowser.get(Harness.authorizePath(otherApp, [("id_token_hint", aliceHint)])), "invalid_request")
            // An expired hint is still a valid hint (Core §3.1.2.1).
            h.testClock.advance(seconds: 3600)
            let later = try await aliceBrowser.get(Harness.authorizePath(app, [("id_token_hint", aliceHint)]))
            #expect(later.redirectParameters["code"] != nil)
        }
    }

    // MARK: the ID token

    @Test(arguments: TestDatabase.available)
    func idTokenClaims(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, user) = try await Self.signedIn(h)
            let sessionCookie = try #require(browser.sessionCookie)
            let sessionID = try #require(try await h.store.session(hash: Secrets.hash(sessionCookie))?.id)
            h.testClock.advance(seconds: 5)
            let t = try await Self.tokens(h, app, browser, scope: "openid profile", [("nonce", "n-0S6_WzA2Mj")])
            let idToken = try #require(t.string("id_token"))
            let access = try #require(t.string("access_token"))
            let (header, claims) = Harness.decodeJWT(idToken)

            #expect(header["typ"] as? String == "JWT")
            #expect(header["alg"] as? String == "ES256")
            let kid = try h.services.keys.snapshot.signingKey.kid
            #expect(header["kid"] as? String == kid)
            #expect(header["jwk"] == nil && header["jku"] == nil)

            #expect(claims["iss"] as? String == Harness.issuer)
            #expect(claims["sub"] as? String == user.id)
            #expect(claims["sub"] as? String != user.username)
            let aud = (claims["aud"] as? String).map { [$0] } ?? (claims["aud"] as? [String]) ?? []
            #expect(aud == [app.id])
            #expect(claims["azp"] as? String == app.id)
            #expect(claims["iat"] as? Int == Int(Self.start + 5))
            #expect(claims["exp"] as? Int == Int(Self.start + 5 + 600))
            #expect(claims["auth_time"] as? Int == Int(Self.start))
            #expect(claims["nonce"] as? String == "n-0S6_WzA2Mj")
            #expect(claims["sid"] as? String == sessionID)
            // at_hash: base64url of the left half of SHA-256 of the access token (ES256).
            let digest = Array(SHA256.hash(data: Data(access.utf8)))
            #expect(claims["at_hash"] as? String == Base64URL.encode(digest.prefix(16)))
            // No profile data in the ID token itself, and no access-token claims.
            #expect(claims["scope"] == nil && claims["client_id"] == nil)

            // It verifies with the published JWKS.
            let keys = JWTKeyCollection()
            try await keys.add(jwksJSON: try await h.get("/.well-known/jwks.json").body)
            let verified = try await keys.verify(idToken, as: IDTokenClaims.self)
            #expect(verified.sub == user.id)

            // Without nonce in the request there is none in the token.
            let plain = Harness.decodeJWT(try #require(try await Self.tokens(h, app, browser).string("id_token"))).claims
            #expect(plain["nonce"] == nil)
            // Without openid there is no ID token at all.
            let noOpenID = try await Self.tokens(h, app, browser, scope: "profile")
            #expect(noOpenID["id_token"] == nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func refreshReturnsAFreshIDTokenWithoutNonce(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp()
            let (browser, user) = try await Self.signedIn(h)
            let first = try await Self.tokens(h, app, browser, [("nonce", "abc")])
            h.testClock.advance(seconds: 100)
            let r = try await h.token(
                app.credentials, [("grant_type", "refresh_token"), ("refresh_token", try #require(first.string("refresh_token")))])
            #expect(r.status == .ok)
            let idToken = try #require(r.string("id_token"))
            let (header, claims) = Harness.decodeJWT(idToken)
            #expect(header["typ"] as? String == "JWT")
            #expect(claims["nonce"] == nil)
            #expect(claims["sub"] as? String == user.id)
            #expect(claims["aud"] as? String == app.id || (claims["aud"] as? [String]) == [app.id])
            #expect(claims["auth_time"] as? Int == Int(Self.start))
            #expect(claims["iat"] as? Int == Int(Self.start + 100))
            let access = try #require(r.string("access_token"))
            #expect(claims["at_hash"] as? String == Base64URL.encode(Array(SHA256.hash(data: Data(access.utf8))).prefix(16)))
            // Narrowed to a scope without openid: no ID token.
            let narrowed = try await h.token(
                app.credentials,
                [("grant_type", "refresh_token"), ("refresh_token", try #require(r.string("refresh_token"))), ("scope", "profile")])
            if narrowed.status == .ok { #expect(narrowed["id_token"] == nil) }
        }
    }

    /// Refresh tokens: with offline_access granted when the client registered it; otherwise by grant type.
    @Test(arguments: TestDatabase.available)
    func refreshTokensAndOfflineAccess(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let (browser, _) = try await Self.signedIn(h)
            let offline = try await h.makeApp(scope: "openid profile offline_access")
            #expect(try await Self.tokens(h, offline, browser, scope: "openid profile")["refresh_token"] == nil)
            let granted = try await Self.tokens(h, offline, browser, scope: "openid offline_access")
            #expect(granted.string("refresh_token") != nil)
            #expect(granted.string("scope") == "openid offline_access")

            let plain = try await h.makeApp(scope: "openid profile")
            #expect(try await Self.tokens(h, plain, browser, scope: "openid")["refresh_token"] != nil)

            let noRefreshGrant = try await h.makeApp(scope: "openid offline_access", grantTypes: ["authorization_code"])
            #expect(try await Self.tokens(h, noRefreshGrant, browser, scope: "openid offline_access")["refresh_token"] == nil)
            #expect(try await Self.tokens(h, noRefreshGrant, browser, scope: "openid")["refresh_token"] == nil)
        }
    }

    // MARK: UserInfo

    @Test(arguments: TestDatabase.available)
    func userInfoClaimsByScope(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(scope: "openid profile email address phone")
            let user = try await h.makeUser(
                "ada", email: "ada@example.com", name: "Ada Lovelace",
                profile: UserProfile(
                    givenName: "Ada", familyName: "Lovelace", picture: "https://img.example.com/ada.png", emailVerified: true,
                    phoneNumber: "+44 20 7946 0000", address: "12 St James's Square, London"))
            let (browser, _) = try await Self.signedIn(h, user)

            func info(_ scope: String) async throws -> Harness.Reply {
                let access = try #require(try await Self.tokens(h, app, browser, scope: scope).string("access_token"))
                let r = try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(access)"])
                #expect(r.status == .ok, "\(scope): \(r.body)")
                #expect(r.header("Cache-Control") == "no-store")
                #expect(r.contentType.hasPrefix("application/json"))
                return r
            }
            let minimal = try await info("openid")
            #expect(Set(minimal.json.keys) == ["sub"])
            #expect(minimal.string("sub") == user.id)

            let profile = try await info("openid profile")
            #expect(profile.string("name") == "Ada Lovelace")
            #expect(profile.string("given_name") == "Ada")
            #expect(profile.string("family_name") == "Lovelace")
            #expect(profile.string("preferred_username") == "ada")
            #expect(profile.string("picture") == "https://img.example.com/ada.png")
            #expect(profile["updated_at"] as? Int == Int(Self.start))
            #expect(profile["email"] == nil && profile["phone_number"] == nil && profile["address"] == nil)

            let email = try await info("openid email")
            #expect(email.string("email") == "ada@example.com")
            #expect(email["email_verified"] as? Bool == true)
            #expect(email["name"] == nil)

            let other = try await info("openid address phone")
            #expect((other["address"] as? [String: Any])?["formatted"] as? String == "12 St James's Square, London")
            #expect(other.string("phone_number") == "+44 20 7946 0000")
            #expect(other["phone_number_verified"] as? Bool == false)
            #expect(other["email"] == nil)

            // POST with the token in the form body, and POST with the header.
            let access = try #require(try await Self.tokens(h, app, browser, scope: "openid email").string("access_token"))
            let posted = try await h.post("/oauth2/userinfo", [("access_token", access)])
            #expect(posted.status == .ok)
            #expect(posted.string("email") == "ada@example.com")
            let postedHeader = try await h.post("/oauth2/userinfo", [], authorization: "Bearer \(access)")
            #expect(postedHeader.string("sub") == user.id)
        }
    }

    @Test(arguments: TestDatabase.available)
    func userInfoRefusals(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(scope: "openid profile")
            let (browser, _) = try await Self.signedIn(h)
            let access = try #require(try await Self.tokens(h, app, browser).string("access_token"))

            func expectBearerError(_ r: Harness.Reply, _ status: HTTPResponse.Status, _ error: String?, _ label: String) {
                #expect(r.status == status, "\(label): \(r.status)")
                let challenge = r.header("WWW-Authenticate") ?? ""
                if status == .unauthorized || status == .forbidden {
                    #expect(challenge.hasPrefix("Bearer"), "\(label): \(challenge)")
                }
                if let error {
                    if status != .badRequest { #expect(challenge.contains(#"error="\#(error)""#), "\(label): \(challenge)") }
                    #expect(r.error == error, "\(label): \(r.body)")
                } else {
                    #expect(!challenge.contains("error="), "\(label): \(challenge)")
                }
            }

            // Missing token: 401 with a bare Bearer challenge.
            expectBearerError(try await h.get("/oauth2/userinfo"), .unauthorized, nil, "missing")
            expectBearerError(try await h.post("/oauth2/userinfo", []), .unauthorized, nil, "missing (POST)")
            // Bad tokens.
            for bad in ["Bearer garbage", "Bearer \(access)x", "bearer \(access.dropLast())"] {
                expectBearerError(
                    try await h.get("/oauth2/userinfo", headers: [.authorization: bad]), .unauthorized, "invalid_token", bad)
            }
            // No Bearer token at all (another scheme): 401 without an error code (RFC 6750 §3.1).
            for none in ["Basic \(Data("a:b".utf8).base64EncodedString())", "Bearer", "Token \(access)"] {
                let r = try await h.get("/oauth2/userinfo", headers: [.authorization: none])
                expectBearerError(r, .unauthorized, nil, none)
                #expect(r["sub"] == nil)
            }
            // A token without openid.
            let profileOnly = try #require(try await Self.tokens(h, app, browser, scope: "profile").string("access_token"))
            let insufficient = try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(profileOnly)"])
            expectBearerError(insufficient, .forbidden, "insufficient_scope", "no openid")
            // A client's own token (client_credentials) has no user.
            let machine = try await h.makeClient(scope: "openid")
            let machineToken = try #require(try await h.token(machine).string("access_token"))
            expectBearerError(
                try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(machineToken)"]), .unauthorized,
                "invalid_token", "client token")
            // In the query string: refused, never used.
            let query = try await h.get("/oauth2/userinfo?access_token=\(access)")
            #expect(query.status == .badRequest)
            #expect(query.error == "invalid_request")
            #expect(query["sub"] == nil)
            // In two places: refused.
            let both = try await h.post("/oauth2/userinfo", [("access_token", access)], authorization: "Bearer \(access)")
            #expect(both.status == .badRequest)
            #expect(both["sub"] == nil)
            let twice = try await h.post("/oauth2/userinfo", [("access_token", access), ("access_token", access)])
            #expect(twice.status == .badRequest)

            // Still good here; then revoked via the token's grant, and expired.
            #expect(try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(access)"]).status == .ok)
            let account = try await browser.get("/account")
            _ = try await browser.post(
                "/account/revoke", [("csrf_token", try #require(account.hidden("csrf_token"))), ("client_id", app.id)])
            expectBearerError(
                try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(access)"]), .unauthorized, "invalid_token",
                "revoked grant")
            let fresh = try #require(try await Self.tokens(h, app, browser).string("access_token"))
            let revoke = try await h.post("/oauth2/revoke", [("token", fresh)], auth: app.credentials)
            #expect(revoke.status == .ok)
            expectBearerError(
                try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(fresh)"]), .unauthorized, "invalid_token",
                "revoked token")
            let expiring = try #require(try await Self.tokens(h, app, browser).string("access_token"))
            h.testClock.advance(seconds: 601)
            expectBearerError(
                try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(expiring)"]), .unauthorized, "invalid_token",
                "expired")
            // The ID token is not an access token.
            h.testClock.advance(seconds: -601)
            let idToken = try #require(try await Self.tokens(h, app, browser).string("id_token"))
            expectBearerError(
                try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(idToken)"]), .unauthorized, "invalid_token",
                "id token")
        }
    }

    /// UserInfo is the issuer's resource: a token minted for another audience (RFC 8707 `resource`) is refused.
    @Test(arguments: TestDatabase.available)
    func userInfoRefusesATokenForAnotherAudience(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let api = "https://api.example.test/"
            let app = try await h.makeApp(resources: [api])
            let (browser, _) = try await Self.signedIn(h)
            let t = try await Self.tokens(h, app, browser, [("resource", api)])
            let access = try #require(t.string("access_token"))
            #expect(Harness.decodeJWT(access).claims["aud"] as? String == api)
            let r = try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(access)"])
            #expect(r.status == .unauthorized)
            #expect(r.header("WWW-Authenticate")?.contains(#"error="invalid_token""#) == true)
            let plain = try #require(try await Self.tokens(h, app, browser).string("access_token"))
            #expect(try await h.get("/oauth2/userinfo", headers: [.authorization: "Bearer \(plain)"]).status == .ok)
        }
    }

    // MARK: RP-initiated logout

    @Test(arguments: TestDatabase.available)
    func logoutWithAHintRedirectsToARegisteredURI(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let bye = "https://app.example.com/bye"
            let app = try await h.makeApp(postLogoutRedirectURIs: [bye])
            let (browser, _) = try await Self.signedIn(h)
            let cookie = try #require(browser.sessionCookie)
            let hint = try #require(try await Self.tokens(h, app, browser).string("id_token"))

            let r = try await browser.get(
                "/oauth2/logout?" + Harness.form([("id_token_hint", hint), ("post_logout_redirect_uri", bye), ("state", "s 1")]))
            #expect(r.status == .found)
            #expect(r.location == bye + "?state=s%201" || r.location == bye + "?state=s+1")
            #expect(Harness.query(r.location ?? "")["state"] == "s 1")
            #expect(r.setCookie(Harness.sessionCookie)?.contains("Max-Age=0") == true)
            #expect(try await h.store.session(hash: Secrets.hash(cookie)) == nil)
            let account = try await browser.get("/account")
            #expect(account.status == .seeOther)
            #expect(account.location?.hasPrefix("/login") == true)

            // With client_id instead of a hint, and nobody signed in: straight to the target.
            let anonymous = try await Browser(h).get(
                "/oauth2/logout?" + Harness.form([("client_id", app.id), ("post_logout_redirect_uri", bye)]))
            #expect(anonymous.status == .found)
            #expect(anonymous.location == bye)
            // POST works the same, answered with 303.
            let (again, _) = try await Self.signedIn(h)
            let hint2 = try #require(try await Self.tokens(h, app, again).string("id_token"))
            let posted = try await again.post("/oauth2/logout", [("id_token_hint", hint2), ("post_logout_redirect_uri", bye)])
            #expect(posted.status == .seeOther)
            #expect(posted.location == bye)
            #expect(again.sessionCookie == nil)
            // A cross-site POST (no session cookie) is repeated as a GET, which carries the cookie.
            let crossSite = try await h.post("/oauth2/logout", [("id_token_hint", hint2), ("post_logout_redirect_uri", bye)])
            #expect(crossSite.status == .seeOther)
            #expect(crossSite.location?.hasPrefix("/oauth2/logout?") == true)
            #expect(Harness.query(crossSite.location ?? "")["post_logout_redirect_uri"] == bye)
        }
    }

    @Test(arguments: TestDatabase.available)
    func logoutNeverRedirectsToAnUnregisteredURI(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let bye = "https://app.example.com/bye"
            let app = try await h.makeApp(postLogoutRedirectURIs: [bye])
            let other = try await h.makeApp(postLogoutRedirectURIs: ["https://other.example.com/bye"])
            let (browser, _) = try await Self.signedIn(h)
            let hint = try #require(try await Self.tokens(h, app, browser).string("id_token"))

            let attempts: [[(String, String)]] = [
                [("id_token_hint", hint), ("post_logout_redirect_uri", "https://evil.com/")],
                [("id_token_hint", hint), ("post_logout_redirect_uri", bye + "/")],
                [("id_token_hint", hint), ("post_logout_redirect_uri", bye + "?x=1")],
                [("id_token_hint", hint), ("post_logout_redirect_uri", "https://APP.example.com/bye")],
                [("id_token_hint", hint), ("post_logout_redirect_uri", Harness.redirect)],  // a redirect URI, not a logout one
                [("id_token_hint", hint), ("post_logout_redirect_uri", "https://other.example.com/bye")],  // another client's
                [("client_id", app.id), ("post_logout_redirect_uri", "https://other.example.com/bye")],
                [("id_token_hint", hint), ("client_id", other.id), ("post_logout_redirect_uri", "https://other.example.com/bye")],
                [("post_logout_redirect_uri", bye)],  // nobody to check it against
                [("client_id", "no-such-client"), ("post_logout_redirect_uri", bye)],
                [("id_token_hint", "garbage"), ("post_logout_redirect_uri", bye)],
                [("id_token_hint", hint + "x"), ("post_logout_redirect_uri", bye)],
            ]
            for params in attempts {
                let r = try await browser.get("/oauth2/logout?" + Harness.form(params))
                AuthorizationRequestTests.expectErrorPage(r, "\(params.map { $0.1.prefix(40) })")
                let posted = try await browser.post("/oauth2/logout", params)
                AuthorizationRequestTests.expectErrorPage(posted, "POST \(params.map { $0.1.prefix(40) })")
            }
            // The session survived all of that.
            #expect(try await browser.get("/account").status == .ok)
            // Nobody signed in makes no difference.
            AuthorizationRequestTests.expectErrorPage(
                try await Browser(h).get("/oauth2/logout?" + Harness.form([("post_logout_redirect_uri", "https://evil.com/")])),
                "anonymous")
        }
    }

    @Test(arguments: TestDatabase.available)
    func logoutWithoutAHintAsksForConfirmation(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let bye = "https://app.example.com/bye"
            let app = try await h.makeApp(name: "Logout App", postLogoutRedirectURIs: [bye])
            let (browser, user) = try await Self.signedIn(h)

            let page = try await browser.get("/oauth2/logout?" + Harness.form([("client_id", app.id), ("post_logout_redirect_uri", bye), ("state", "xyz")]))
            #expect(page.status == .ok)
            #expect(page.location == nil)
            #expect(page.body.contains(#"id="logout-confirm-form""#))
            #expect(page.body.contains("Logout App"))
            #expect(page.body.contains(user.username))
            #expect(page.hidden("csrf_token") == browser.cookie(Harness.csrfCookie))
            #expect(page.hidden("post_logout_redirect_uri") == bye)
            #expect(page.hidden("state") == "xyz")
            #expect(try await browser.get("/account").status == .ok)  // not signed out yet

            // Confirming without (or with a wrong) CSRF token: an error page, still signed in.
            let forged = try await browser.post("/oauth2/logout", page.hiddenFields.filter { $0.0 != "csrf_token" } + [("confirm", "yes")])
            AuthorizationRequestTests.expectErrorPage(forged, "no csrf")
            let wrong = try await browser.post(
                "/oauth2/logout", page.hiddenFields.filter { $0.0 != "csrf_token" } + [("csrf_token", Secrets.generate()), ("confirm", "yes")])
            AuthorizationRequestTests.expectErrorPage(wrong, "wrong csrf")
            // A POST without confirm is a new request: it asks again.
            let unconfirmed = try await browser.post("/oauth2/logout", page.hiddenFields.filter { $0.0 != "csrf_token" })
            #expect(unconfirmed.body.contains(#"id="logout-confirm-form""#))
            #expect(try await browser.get("/account").status == .ok)

            let confirmed = try await browser.submit(page, to: "/oauth2/logout", [("confirm", "yes")])
            #expect(confirmed.status == .seeOther)
            #expect(confirmed.location == bye + "?state=xyz")
            #expect(browser.sessionCookie == nil)
            #expect(try await browser.get("/account").status == .seeOther)

            // A hint from an earlier session of the same user (other sid) asks as well.
            let (carol, carolUser) = try await Self.signedIn(h)
            let oldHint = try #require(try await Self.tokens(h, app, carol).string("id_token"))
            try await carol.signIn(carolUser.username)  // a new session
            let stale = try await carol.get("/oauth2/logout?" + Harness.form([("id_token_hint", oldHint)]))
            #expect(stale.body.contains(#"id="logout-confirm-form""#))
            #expect(try await carol.get("/account").status == .ok)

            // A hint for someone else than the signed-in user also asks.
            let (alice, _) = try await Self.signedIn(h)
            let aliceHint = try #require(try await Self.tokens(h, app, alice).string("id_token"))
            let (bob, _) = try await Self.signedIn(h)
            let ask = try await bob.get("/oauth2/logout?" + Harness.form([("id_token_hint", aliceHint)]))
            #expect(ask.body.contains(#"id="logout-confirm-form""#))
            #expect(try await bob.get("/account").status == .ok)

            // Without a target: the confirmation ends the session; 303 to the login page, which says so.
            let plain = try await bob.get("/oauth2/logout")
            #expect(plain.body.contains(#"id="logout-confirm-form""#))
            let done = try await bob.submit(plain, to: "/oauth2/logout", [("confirm", "yes")])
            #expect(done.status == .seeOther)
            #expect(done.location == "/login?signed_out=1")
            #expect(try await bob.get("/login?signed_out=1").body.contains("You have been signed out."))
            #expect(try await bob.get("/account").status == .seeOther)
            // Nobody signed in, no target: the signed-out page at once.
            let nobody = try await Browser(h).get("/oauth2/logout")
            #expect(nobody.status == .ok)
            #expect(nobody.body.contains("You are signed out"))
        }
    }

    /// docs: "Every form uses POST and is answered with 303 See Other" — the logout confirmation form
    /// without a post_logout_redirect_uri answers with the signed-out page itself (200).
    @Test(arguments: TestDatabase.available)
    func logoutConfirmationWithoutTargetIsAnsweredWith303(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let (browser, _) = try await Self.signedIn(h)
            let page = try await browser.get("/oauth2/logout")
            let done = try await browser.submit(page, to: "/oauth2/logout", [("confirm", "yes")])
            #expect(done.status == .seeOther)
            #expect(done.location == "/login?signed_out=1")
            // The session is gone.
            #expect(try await browser.get("/account").status == .seeOther)
        }
    }
}

extension Optional {
    func asyncOr(_ make: () async throws -> Wrapped) async rethrows -> Wrapped {
        if let self { return self }
        return try await make()
    }
}
