import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

/// The login page, sessions and cookies, CSRF, the consent page, the account page, and the headers every
/// page carries (docs/browser-sign-in.md "Sessions, login protection, pages"; SECURITY.md "Browser pages").
@Suite("Browser pages")
struct BrowserPagesTests {
    static func expectPageHeaders(_ r: Harness.Reply, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.isHTMLPage, "\(label): \(r.contentType)", sourceLocation: sourceLocation)
        #expect(r.header("X-Frame-Options") == "DENY", "\(label)", sourceLocation: sourceLocation)
        let csp = r.header("Content-Security-Policy") ?? ""
        #expect(csp.contains("frame-ancestors 'none'"), "\(label): \(csp)", sourceLocation: sourceLocation)
        #expect(csp.contains("default-src 'none'"), "\(label): \(csp)", sourceLocation: sourceLocation)
        #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("script-src"),
                "\(label): \(csp)", sourceLocation: sourceLocation)
        #expect(r.header("Referrer-Policy") == "no-referrer", "\(label)", sourceLocation: sourceLocation)
        #expect(r.header("Cache-Control") == "no-store", "\(label)", sourceLocation: sourceLocation)
        // No script and no third-party resources: every src/href/action is one of our paths.
        #expect(!r.body.lowercased().contains("<script"), "\(label)", sourceLocation: sourceLocation)
        let regex = try! NSRegularExpression(pattern: #"(?:src|href|action)="([^"]*)""#)
        let ns = r.body as NSString
        for m in regex.matches(in: r.body, range: NSRange(location: 0, length: ns.length)) {
            let target = ns.substring(with: m.range(at: 1))
            #expect(target.hasPrefix("/") && !target.hasPrefix("//"), "\(label): \(target)", sourceLocation: sourceLocation)
        }
        // Every form posts and carries a CSRF token, except the login form's token is also there.
        let forms = r.body.components(separatedBy: "<form").count - 1
        #expect(r.body.components(separatedBy: #"method="post""#).count - 1 == forms, "\(label)", sourceLocation: sourceLocation)
        #expect(r.body.components(separatedBy: #"name="csrf_token""#).count - 1 == forms, "\(label)", sourceLocation: sourceLocation)
    }

    // MARK: login

    @Test(arguments: TestDatabase.available)
    func authorizeWithoutSessionShowsTheLoginForm(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(name: "Photo <Printer>")
            let user = try await h.makeUser()
            let browser = Browser(h)
            let path = Harness.authorizePath(app, [("nonce", "n-1")])
            let page = try await browser.get(path)
            #expect(page.status == .ok)
            Self.expectPageHeaders(page, "login")
            #expect(page.body.contains(#"id="login-form""#))
            #expect(page.body.contains("Photo &lt;Printer&gt;"))  // the app's name, escaped
            #expect(!page.body.contains("Photo <Printer>"))
            let csrf = try #require(page.hidden("csrf_token"))
            #expect(csrf.utf8.count == 43)
            let cookie = try #require(page.setCookie(Harness.csrfCookie))
            #expect(cookie.hasPrefix("\(Harness.csrfCookie)=\(csrf);"))
            for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
                #expect(cookie.contains(attribute), "\(cookie)")
            }
            #expect(!cookie.contains("Domain="))
            let returnTo = try #require(page.hidden("return_to"))
            #expect(returnTo.hasPrefix("/oauth2/authorize?"))
            #expect(Harness.query(returnTo)["client_id"] == app.id)
            #expect(Harness.query(returnTo)["nonce"] == "n-1")

            // Signing in returns to the authorization request, which now redirects with a code.
            let signedIn = try await browser.post(
                "/login", [("csrf_token", csrf), ("return_to", returnTo), ("username", user.username), ("password", Harness.password)])
            #expect(signedIn.status == .seeOther)
            #expect(signedIn.location == returnTo)
            let back = try await browser.get(try #require(signedIn.location))
            #expect(back.status == .found)
            #expect(back.redirectParameters["code"] != nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func successfulSignInSetsAHostOnlySecureSessionCookie(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let user = try await h.makeUser()
            let browser = Browser(h)
            let r = try await browser.signIn(user.username)
            #expect(r.status == .seeOther)
            #expect(r.location == "/account")
            let cookie = try #require(r.setCookie(Harness.sessionCookie))
            for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=43200"] {
                #expect(cookie.contains(attribute), "\(cookie)")
            }
            #expect(!cookie.contains("Domain="))
            let value = try #require(browser.sessionCookie)
            #expect(value.utf8.count == 43)
            // Only the hash is stored.
            #expect(try await h.store.session(hash: value) == nil)
            #expect(try await h.store.session(hash: Secrets.hash(value))?.userID == user.id)

            let account = try await browser.get("/account")
            #expect(account.status == .ok)
            #expect(Harness.element(id: "username", in: account.body) == user.username)

            // A new session at every sign-in (no fixation): the old cookie stops working.
            try await browser.signIn(user.username)
            let second = try #require(browser.sessionCookie)
            #expect(second != value)
            let old = Browser(h)
            old.setCookie(Harness.sessionCookie, value)
            #expect(try await old.get("/account").status == .seeOther)

            // The session ends after session_ttl (12 h).
            h.testClock.advance(seconds: 12 * 3600 + 1)
            let expired = try await browser.get("/account")
            #expect(expired.status == .seeOther)
            #expect(expired.location?.hasPrefix("/login") == true)
        }
    }

    /// Under a plain-http loopback issuer (development) the cookies cannot be Secure or __Host-.
    @Test(arguments: TestDatabase.available)
    func cookiesUnderAnHTTPIssuer(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.issuer = "http://127.0.0.1:8080" }) { h in
            let user = try await h.makeUser()
            let login = try await h.get("/login")
            let csrfCookie = try #require(login.setCookie("gatehouse_csrf"))
            #expect(!csrfCookie.contains("Secure"))
            let csrf = try #require(login.hidden("csrf_token"))
            let r = try await h.post(
                "/login", [("csrf_token", csrf), ("username", user.username), ("password", Harness.password)],
                headers: [.cookie: "gatehouse_csrf=\(csrf)"])
            #expect(r.status == .seeOther)
            let session = try #require(r.setCookie("gatehouse_session"))
            #expect(session.contains("HttpOnly") && session.contains("SameSite=Lax"))
            #expect(!session.contains("Secure"))
        }
    }

    @Test(arguments: TestDatabase.available)
    func loginFormNeedsAValidCSRFToken(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let user = try await h.makeUser()
            let credentials = [("username", user.username), ("password", Harness.password)]
            let browser = Browser(h)
            let token = try await browser.csrf()
            let other = Secrets.generate()
            let cases: [(cookie: String?, field: String?)] = [
                (nil, nil), (token, nil), (nil, token), (token, other), (token, token.lowercased() == token ? token.uppercased() : token.lowercased()),
                ("short", "short"), (token + "x", token + "x"), ("", ""),
            ]
            for (cookie, field) in cases {
                var headers: HTTPFields = [:]
                if let cookie { headers[.cookie] = "\(Harness.csrfCookie)=\(cookie)" }
                var form = credentials
                if let field { form.append(("csrf_token", field)) }
                let r = try await h.post("/login", form, headers: headers)
                #expect(r.status == .badRequest, "cookie \(cookie ?? "nil") field \(field ?? "nil")")
                #expect(r.isHTMLPage)
                #expect(r.setCookie(Harness.sessionCookie) == nil)
            }
            // The non-__Host- name is not accepted under an https issuer.
            let plain = try await h.post(
                "/login", credentials + [("csrf_token", token)], headers: [.cookie: "gatehouse_csrf=\(token)"])
            #expect(plain.status == .badRequest)
            // Two csrf_token fields.
            let twice = try await h.post(
                "/login", credentials + [("csrf_token", token), ("csrf_token", token)],
                headers: [.cookie: "\(Harness.csrfCookie)=\(token)"])
            #expect(twice.status == .badRequest)
            // The right token works.
            let ok = try await h.post(
                "/login", credentials + [("csrf_token", token)], headers: [.cookie: "\(Harness.csrfCookie)=\(token)"])
            #expect(ok.status == .seeOther)
        }
    }

    /// One generic failure for a wrong password and an unknown user (no enumeration).
    @Test(arguments: TestDatabase.available)
    func wrongPasswordAndUnknownUserLookTheSame(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let user = try await h.makeUser()
            let browser = Browser(h)
            let returnTo = "/oauth2/authorize?client_id=x&response_type=code"
            let wrong = try await browser.signIn(user.username, password: "wrong password", returnTo: returnTo)
            let unknown = try await browser.signIn("nobody-here", password: "wrong password", returnTo: returnTo)
            let malformed = try await browser.signIn("no spaces allowed", password: "wrong password", returnTo: returnTo)
            let empty = try await browser.signIn(user.username, password: "", returnTo: returnTo)
            for r in [wrong, unknown, malformed, empty] {
                #expect(r.status == .seeOther)
                #expect(r.location == wrong.location)
                #expect(r.setCookie(Harness.sessionCookie) == nil)
                #expect(r.body == wrong.body)
            }
            let location = try #require(wrong.location)
            #expect(location.hasPrefix("/login?"))
            #expect(Harness.query(location)["error"] == "failed")
            #expect(Harness.query(location)["return_to"] == returnTo)
            let page = try await browser.get(location)
            #expect(page.body.contains("Wrong username or password."))
            #expect(page.hidden("return_to") == returnTo)
            #expect(browser.sessionCookie == nil)
        }
    }

    /// After password_max_failures failures the account is locked for the window, right password or not.
    @Test(arguments: TestDatabase.available)
    func lockoutAfterTooManyFailures(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.passwordMaxFailures = 3 }) { h in
            let user = try await h.makeUser()
            let bystander = try await h.makeUser()
            let browser = Browser(h)
            for _ in 0..<3 {
                let r = try await browser.signIn(user.username, password: "wrong password")
                #expect(Harness.query(r.location ?? "")["error"] == "failed")
                h.testClock.advance(seconds: 30)  // past the progressive delay (tested below)
            }
            let locked = try await browser.signIn(user.username)
            #expect(locked.status == .seeOther)
            #expect(Harness.query(locked.location ?? "")["error"] == "locked")
            #expect(locked.setCookie(Harness.sessionCookie) == nil)
            // Case does not get around it.
            let upper = try await browser.signIn(user.username.uppercased())
            #expect(Harness.query(upper.location ?? "")["error"] == "locked")
            #expect(try await browser.get(locked.location ?? "").body.contains("Too many failed attempts"))
            // Another account is not affected.
            #expect(try await Browser(h).signIn(bystander.username).location == "/account")
            // After the window the right password works again.
            h.testClock.advance(seconds: 15 * 60 + 1)
            #expect(try await browser.signIn(user.username).location == "/account")
        }
    }

    /// Progressive delay: after the free half of password_max_failures, each failure makes the next attempt
    /// on that account wait 1, 2, 4 … seconds; an attempt inside the delay is refused unchecked (even with
    /// the right password) and does not count; after the delay the right password works.
    @Test(arguments: TestDatabase.available)
    func progressiveDelayBeforeLockout(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.passwordMaxFailures = 6 }) { h in
            let user = try await h.makeUser()
            let browser = Browser(h)
            for _ in 0..<3 {  // free
                let r = try await browser.signIn(user.username, password: "wrong password")
                #expect(Harness.query(r.location ?? "")["error"] == "failed")
            }
            let fourth = try await browser.signIn(user.username, password: "wrong password")
            #expect(Harness.query(fourth.location ?? "")["error"] == "failed")
            // Within 1 s of the fourth failure: refused, even with the right password.
            let early = try await browser.signIn(user.username)
            #expect(Harness.query(early.location ?? "")["error"] == "locked")
            h.testClock.advance(seconds: 1)
            let fifth = try await browser.signIn(user.username, password: "wrong password")
            #expect(Harness.query(fifth.location ?? "")["error"] == "failed")
            h.testClock.advance(seconds: 1)  // the delay is now 2 s
            #expect(Harness.query(try await browser.signIn(user.username).location ?? "")["error"] == "locked")
            h.testClock.advance(seconds: 1)
            let ok = try await browser.signIn(user.username)
            #expect(ok.location == "/account")
            // Success starts the count again: four free failures.
            for _ in 0..<3 {
                let r = try await browser.signIn(user.username, password: "wrong password")
                #expect(Harness.query(r.location ?? "")["error"] == "failed")
            }
        }
    }

    /// A flood of made-up usernames from one address never locks a real account: it leaves no database row
    /// per name, and the account's own budget is untouched (the address is slowed, but only that address).
    @Test(arguments: TestDatabase.available)
    func unknownUsernamesNeverLockAnAccount(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.passwordMaxFailures = 3 }) { h in
            let user = try await h.makeUser()
            for i in 0..<3 {
                _ = try await Browser(h).signIn("nobody\(i)", password: "wrong password")
            }
            #expect(try await h.store.failureCount(key: LoginThrottle.accountKey("nobody0"), at: h.testClock.clock.nowSeconds) == nil)
            #expect(try await h.store.failureCount(key: LoginThrottle.accountKey(user.username), at: h.testClock.clock.nowSeconds) == nil)
            #expect(try await Browser(h).signIn(user.username).location == "/account")
        }
    }

    /// The per-address budget (5 × password_max_failures) counts failures. Successful sign-ins from one
    /// address (an office behind NAT, or every user behind a reverse proxy) must not lock it out.
    @Test(arguments: TestDatabase.available)
    func successfulSignInsDoNotUseUpTheAddressBudget(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.passwordMaxFailures = 2 }) { h in
            // Address budget: 10. Twelve different users each sign in once, successfully.
            var results: [String?] = []
            for _ in 0..<12 {
                let user = try await h.makeUser()
                results.append(try await Browser(h).signIn(user.username).location)
            }
            #expect(results.allSatisfy { $0 == "/account" }, "\(results)")
        }
    }

    /// The per-address limit: after 5 × max failures from one address even other accounts are locked.
    @Test(arguments: TestDatabase.available)
    func perAddressLockout(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.passwordMaxFailures = 2 }) { h in
            let victim = try await h.makeUser()
            let browser = Browser(h)
            for i in 0..<10 {
                let r = try await browser.signIn("guess\(i)", password: "wrong password")
                #expect(Harness.query(r.location ?? "")["error"] == "failed")
                h.testClock.advance(seconds: 30)  // past the address's progressive delay
            }
            let r = try await browser.signIn(victim.username)
            #expect(Harness.query(r.location ?? "")["error"] == "locked")
        }
    }

    @Test(arguments: TestDatabase.available)
    func returnToCannotLeaveTheServer(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let user = try await h.makeUser()
            let attacks = [
                "https://evil.com", "//evil.com", "/\\evil.com", "\\\\evil.com", "/\\/evil.com", "https:evil.com",
                "///evil.com", "/oauth2/authorizeX", "/oauth2/authorize", "javascript:alert(1)", "/account/../evil",
                "/account?next=https://evil.com", " /account", "/oauth2/authorize?\r\nLocation: https://evil.com", "/login",
            ]
            for target in attacks {
                let browser = Browser(h)
                let r = try await browser.signIn(user.username, returnTo: target)
                #expect(r.status == .seeOther)
                #expect(r.location == "/account", "\(target) -> \(r.location ?? "nil")")
                // The login page does not echo it either.
                let page = try await browser.get("/login?" + Harness.form([("return_to", target)]))
                #expect(page.hidden("return_to") == "/account", "\(target)")
            }
            // Our own authorization endpoint is a valid target.
            let ok = try await Browser(h).signIn(user.username, returnTo: "/oauth2/authorize?client_id=abc")
            #expect(ok.location == "/oauth2/authorize?client_id=abc")
        }
    }

    // MARK: headers of every page

    @Test(arguments: TestDatabase.available)
    func everyPageForbidsFramingScriptsAndReferrers(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let user = try await h.makeUser()
            let app = try await h.makeApp(postLogoutRedirectURIs: ["https://app.example.com/bye"], skipConsent: false)
            let oob = try await h.makeApp(redirectURIs: [RedirectURI.outOfBand])
            let browser = Browser(h)

            let login = try await browser.get("/login")
            Self.expectPageHeaders(login, "login")
            let loginFromAuthorize = try await browser.get(Harness.authorizePath(app))
            Self.expectPageHeaders(loginFromAuthorize, "login (authorize)")
            let error = try await browser.get(Harness.authorizePath(app, redirectURI: "https://evil.com/"))
            Self.expectPageHeaders(error, "error")
            let account = try await browser.get("/account")
            #expect(account.status == .seeOther)  // not signed in

            let post = try await browser.signIn(user.username)
            #expect(post.status == .seeOther)
            Self.expectPageHeaders(try await browser.get("/account"), "account")
            let consent = try await browser.get(Harness.authorizePath(app))
            #expect(consent.status == .ok)
            Self.expectPageHeaders(consent, "consent")
            let consentPost = try await browser.submit(consent, to: "/consent", [("decision", "allow")])
            #expect(consentPost.status == .seeOther)
            let oobConsent = try await browser.get(Harness.authorizePath(oob))
            Self.expectPageHeaders(oobConsent, "consent (oob)")
            let oobAllowed = try await browser.submit(oobConsent, to: "/consent", [("decision", "allow")])
            #expect(oobAllowed.status == .seeOther)
            let code = try await browser.get(try #require(oobAllowed.location))
            #expect(code.status == .ok)
            Self.expectPageHeaders(code, "oob")
            let confirm = try await browser.get("/oauth2/logout")
            #expect(confirm.status == .ok)
            Self.expectPageHeaders(confirm, "logout confirm")
            let confirmed = try await browser.submit(confirm, to: "/oauth2/logout", [("confirm", "yes")])
            #expect(confirmed.status == .seeOther)
            Self.expectPageHeaders(try await browser.get(try #require(confirmed.location)), "signed out")
            Self.expectPageHeaders(try await Browser(h).get("/oauth2/logout"), "signed out (GET, nobody signed in)")
            let errorPost = try await browser.post("/login", [("username", "x")])
            Self.expectPageHeaders(errorPost, "error (POST)")
            // The stylesheet is ours, same origin.
            let css = try await browser.get("/static/gatehouse.css")
            #expect(css.status == .ok)
            #expect(css.contentType.hasPrefix("text/css"))
        }
    }

    // MARK: consent

    @Test(arguments: TestDatabase.available)
    func consentPageAllowAndDeny(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(name: "Calendar", skipConsent: false)
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)

            let page = try await browser.get(Harness.authorizePath(app, scope: "openid profile", [("nonce", "n-7")]))
            #expect(page.status == .ok)
            #expect(page.body.contains(#"id="consent-form""#))
            #expect(page.body.contains(#"data-scope="openid""#))
            #expect(page.body.contains(#"data-scope="profile""#))
            #expect(!page.body.contains(#"data-scope="email""#))
            #expect(page.body.contains("Read your name, username and picture"))  // the scope's description
            #expect(page.body.contains("Calendar"))
            #expect(page.body.contains("app.example.com"))
            #expect(page.hidden("client_id") == app.id)
            #expect(page.hidden("nonce") == "n-7")
            #expect(page.hidden("csrf_token") == browser.cookie(Harness.csrfCookie))

            let deny = try await browser.submit(page, to: "/consent", [("decision", "deny")])
            AuthorizationRequestTests.expectErrorRedirect(deny, "access_denied", status: .seeOther)

            let allow = try await browser.submit(page, to: "/consent", [("decision", "allow")])
            #expect(allow.status == .seeOther)
            #expect(allow.redirectParameters["state"] == "st-123")
            #expect(allow.redirectParameters["iss"] == Harness.issuer)
            let code = try #require(allow.redirectParameters["code"])
            let tokens = try await h.redeem(app, code: code)
            #expect(tokens.string("scope") == "openid profile")
            #expect(Harness.decodeJWT(try #require(tokens.string("id_token"))).claims["nonce"] as? String == "n-7")

            // Without "remember" the page comes back next time.
            #expect(try await browser.get(Harness.authorizePath(app, scope: "openid profile")).status == .ok)

            // Refusals: no CSRF, no decision, no session.
            let noCSRF = try await browser.post("/consent", page.hiddenFields.filter { $0.0 != "csrf_token" } + [("decision", "allow")])
            #expect(noCSRF.status == .badRequest)
            #expect(noCSRF.location == nil)
            let noDecision = try await browser.submit(page, to: "/consent", [])
            #expect(noDecision.status == .badRequest)
            #expect(noDecision.location == nil)
            let stranger = Browser(h)
            let token = try await stranger.csrf()
            let anonymous = try await stranger.post(
                "/consent", page.hiddenFields.filter { $0.0 != "csrf_token" } + [("csrf_token", token), ("decision", "allow")])
            // Sign in first (POST → 303 to the login page, returning to the request), never a code.
            #expect(anonymous.status == .seeOther)
            let toLogin = try #require(anonymous.location)
            #expect(toLogin.hasPrefix("/login?"))
            #expect(Harness.query(toLogin)["return_to"]?.hasPrefix("/oauth2/authorize?") == true)
            #expect(!toLogin.contains("code="))
            // A tampered form is validated like any authorization request.
            let tampered = page.hiddenFields.map { $0.0 == "redirect_uri" ? ($0.0, "https://evil.com/cb") : $0 }
            let evil = try await browser.post("/consent", tampered + [("decision", "allow")])
            AuthorizationRequestTests.expectErrorPage(evil, "tampered consent")
        }
    }

    @Test(arguments: TestDatabase.available)
    func rememberedConsent(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(isPublic: true, skipConsent: false)
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            let pkce = Harness.PKCEPair()

            let page = try await browser.get(Harness.authorizePath(app, pkce: pkce, scope: "openid profile"))
            #expect(page.status == .ok)
            let allowed = try await browser.submit(page, to: "/consent", [("decision", "allow"), ("remember", "on")])
            #expect(allowed.redirectParameters["code"] != nil)

            // Remembered: the same or a narrower request skips the page.
            _ = try await browser.code(Harness.authorizePath(app, pkce: pkce, scope: "openid profile"))
            _ = try await browser.code(Harness.authorizePath(app, pkce: pkce, scope: "openid"))
            // A wider one asks again.
            #expect(try await browser.get(Harness.authorizePath(app, pkce: pkce, scope: "openid profile email")).status == .ok)
            // prompt=consent asks again even when remembered.
            let forced = try await browser.get(Harness.authorizePath(app, pkce: pkce, scope: "openid", [("prompt", "consent")]))
            #expect(forced.status == .ok)
            #expect(forced.body.contains(#"id="consent-form""#))
            #expect(forced.hidden("prompt") == "consent")
            // Answering that page issues a code (no loop).
            let again = try await browser.submit(forced, to: "/consent", [("decision", "allow")])
            #expect(again.redirectParameters["code"] != nil)
            // prompt=none with remembered consent: a code, silently.
            let silent = try await browser.get(Harness.authorizePath(app, pkce: pkce, scope: "openid", [("prompt", "none")]))
            #expect(silent.redirectParameters["code"] != nil)

            // Another user has not consented.
            let other = try await h.makeUser()
            let otherBrowser = Browser(h)
            try await otherBrowser.signIn(other.username)
            #expect(try await otherBrowser.get(Harness.authorizePath(app, pkce: pkce, scope: "openid")).status == .ok)

            // Revoking the app on the account page forgets the consent.
            let account = try await browser.get("/account")
            let revoked = try await browser.post(
                "/account/revoke", [("csrf_token", try #require(account.hidden("csrf_token"))), ("client_id", app.id)])
            #expect(revoked.status == .seeOther)
            #expect(revoked.location == "/account")
            #expect(try await browser.get(Harness.authorizePath(app, pkce: pkce, scope: "openid")).status == .ok)
        }
    }

    @Test(arguments: TestDatabase.available)
    func skipConsentClientsNeverShowThePage(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(skipConsent: true)
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            for extra: [(String, String?)] in [[], [("prompt", "consent")], [("prompt", "none")]] {
                let r = try await browser.get(Harness.authorizePath(app, scope: "openid profile email", extra))
                #expect(r.status == .found, "\(extra)")
                #expect(r.redirectParameters["code"] != nil)
            }
        }
    }

    // MARK: account

    @Test(arguments: TestDatabase.available)
    func accountPageListsAndRevokesApps(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let app = try await h.makeApp(name: "Notes App")
            let other = try await h.makeApp(name: "Other App")
            let user = try await h.makeUser(name: "Ada Lovelace")
            let browser = Browser(h)

            let anonymous = try await browser.get("/account")
            #expect(anonymous.status == .seeOther)
            #expect(anonymous.location == "/login?return_to=%2Faccount")

            try await browser.signIn(user.username)
            let empty = try await browser.get("/account")
            #expect(empty.body.contains("No app holds access"))
            #expect(empty.body.contains("Ada Lovelace"))

            let tokens = try await h.redeem(app, code: try await browser.code(Harness.authorizePath(app, scope: "openid profile")))
            let otherTokens = try await h.redeem(other, code: try await browser.code(Harness.authorizePath(other)))
            let access = try #require(tokens.string("access_token"))
            let refresh = try #require(tokens.string("refresh_token"))
            let page = try await browser.get("/account")
            #expect(page.body.contains("Notes App"))
            #expect(page.body.contains("Other App"))
            #expect(page.body.contains(#"name="client_id" value="\#(app.id)""#))

            // Without a valid CSRF token nothing is revoked.
            let forged = try await browser.post("/account/revoke", [("client_id", app.id)])
            #expect(forged.status == .badRequest)
            let wrong = try await browser.post("/account/revoke", [("client_id", app.id), ("csrf_token", Secrets.generate())])
            #expect(wrong.status == .badRequest)
            #expect(try await h.isActive(access))

            let csrf = try #require(page.hidden("csrf_token"))
            let revoked = try await browser.post("/account/revoke", [("csrf_token", csrf), ("client_id", app.id)])
            #expect(revoked.status == .seeOther)
            #expect(try await h.isActive(access) == false)
            let refreshed = try await h.token(app.credentials, [("grant_type", "refresh_token"), ("refresh_token", refresh)])
            #expect(refreshed.error == "invalid_grant")
            let after = try await browser.get("/account")
            #expect(!after.body.contains("Notes App"))
            #expect(after.body.contains("Other App"))
            // The other app keeps its access.
            #expect(try await h.isActive(try #require(otherTokens.string("access_token"))))

            // Another user cannot revoke this user's grants (revocation is scoped to the signed-in user).
            let mallory = try await h.makeUser()
            let malloryBrowser = Browser(h)
            try await malloryBrowser.signIn(mallory.username)
            let malloryPage = try await malloryBrowser.get("/account")
            _ = try await malloryBrowser.post(
                "/account/revoke", [("csrf_token", try #require(malloryPage.hidden("csrf_token"))), ("client_id", other.id)])
            #expect(try await h.isActive(try #require(otherTokens.string("access_token"))))
        }
    }

    @Test(arguments: TestDatabase.available)
    func signOutFromTheAccountPage(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let user = try await h.makeUser()
            let browser = Browser(h)
            try await browser.signIn(user.username)
            let cookie = try #require(browser.sessionCookie)

            let forged = try await browser.post("/account/logout", [])
            #expect(forged.status == .badRequest)
            #expect(try await browser.get("/account").status == .ok)

            let page = try await browser.get("/account")
            let out = try await browser.post("/account/logout", [("csrf_token", try #require(page.hidden("csrf_token")))])
            #expect(out.status == .seeOther)
            #expect(out.location == "/login?signed_out=1")
            let clear = try #require(out.setCookie(Harness.sessionCookie))
            #expect(clear.contains("Max-Age=0"))
            #expect(browser.sessionCookie == nil)
            #expect(try await h.store.session(hash: Secrets.hash(cookie)) == nil)
            // Replaying the old cookie does not bring the session back.
            let replay = Browser(h)
            replay.setCookie(Harness.sessionCookie, cookie)
            #expect(try await replay.get("/account").status == .seeOther)
            #expect(try await browser.get("/login?signed_out=1").body.contains("You have been signed out."))
        }
    }
}
