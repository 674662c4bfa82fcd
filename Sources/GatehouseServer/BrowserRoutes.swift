import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The request context: Hummingbird's basic one plus the client's address (for login throttling).
public struct GatehouseRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

/// Routes of the browser flow (authorization endpoint, login, consent, account, logout) and UserInfo.
/// Handlers decode the request, call the core, and turn its answer into a page or a redirect.
struct BrowserRoutes: Sendable {
    let services: GatehouseServices
    let pages: Pages
    let cookies: Cookies
    let logger: Logger
    /// More local paths a login may return to (compatibility profiles), as prefixes.
    var extraReturnPrefixes: [String] = []
    typealias Path = ServerMetadata.Path

    func add(to router: Router<GatehouseRequestContext>) {
        router.get(RouterPath(Path.authorization)) { request, context in await authorize(request, context) }
        router.post(RouterPath(Path.authorization)) { request, context in await authorize(request, context) }
        router.get(RouterPath(Path.login)) { request, _ in await loginPage(request) }
        router.post(RouterPath(Path.login)) { request, context in await login(request, context) }
        router.post(RouterPath(Path.consent)) { request, _ in await consent(request) }
        router.get(RouterPath(Path.outOfBand)) { request, _ in outOfBand(request) }
        router.get(RouterPath(Path.account)) { request, _ in await account(request) }
        router.post(RouterPath(Path.accountRevoke)) { request, _ in await revoke(request) }
        router.post(RouterPath(Path.accountLogout)) { request, _ in await signOut(request) }
        router.get(RouterPath(Path.endSession)) { request, _ in await endSession(request) }
        router.post(RouterPath(Path.endSession)) { request, _ in await endSession(request) }
        router.get(RouterPath(Path.userinfo)) { request, _ in await userinfo(request) }
        router.post(RouterPath(Path.userinfo)) { request, _ in await userinfo(request) }
        addFederation(to: router)
        addApps(to: router)
        router.get(RouterPath(Path.stylesheet)) { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "public, max-age=3600"],
                body: .init(byteBuffer: ByteBuffer(bytes: Pages.stylesheet)))
        }
    }

    // MARK: helpers

    /// Runs a page handler: anything unexpected becomes an error page (500), logged, never a stack trace.
    func page(_ name: String, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let e as OAuthError {
            if e.status >= 500 {
                logger.error("page failed", metadata: ["page": .string(name), "detail": .string(e.debug ?? e.code)])
            }
            return pages.error(e)
        } catch {
            logger.error("unexpected error", metadata: ["page": .string(name), "detail": .string("\(error)")])
            return pages.error(.serverError.with(description: "Something went wrong on our side. Try again later."))
        }
    }

    /// Query parameters (GET) or a form body (POST).
    func parameters(_ request: Request) async throws -> RequestParameters {
        if request.method == .post {
            var request = request
            return try await formBody(&request)
        }
        return try HTTP.query(request)
    }

    func formBody(_ request: inout Request) async throws -> RequestParameters {
        let contentType = (request.headers[.contentType] ?? "").lowercased()
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: HTTP.maxBodySize)
        } catch {
            throw OAuthError.invalidRequest.with(description: "The request body is too large.")
        }
        guard contentType.hasPrefix("application/x-www-form-urlencoded") || body.readableBytes == 0 else {
            throw OAuthError.invalidRequest.with(description: "Send the form as application/x-www-form-urlencoded.")
        }
        return try HTTP.parseForm(Data(body.readableBytesView))
    }

    func currentSession(_ request: Request) async throws -> (session: SessionRecord, user: UserRecord)? {
        try await services.signIn.session(cookie: Cookies.value(cookies.sessionName, in: request))
    }

    static let csrfFailure = OAuthError.invalidRequest.with(
        description: "The form expired or did not come from this site. Go back, reload the page and try again.")

    /// Where a login may return to: only our authorization endpoint or the account page (no open redirect).
    func safeReturnTo(_ value: String?) -> String {
        guard let value, value.utf8.count <= 8192, !value.contains("\\"), !value.unicodeScalars.contains(where: { $0.value < 0x20 })
        else { return Path.account }
        if value == Path.account || value.hasPrefix(Path.authorization + "?") { return value }
        if extraReturnPrefixes.contains(where: { value.hasPrefix($0) }) { return value }
        return Path.account
    }

    /// 303 to the login page, which returns to `returnTo` after signing in.
    func toLogin(returnTo: String) -> Response {
        pages.seeOtherLocal(Path.login + "?" + FormEncoding.encode([("return_to", returnTo)]))
    }

    func withCookie(_ response: Response, _ setCookie: String?) -> Response {
        guard let setCookie else { return response }
        var response = response
        response.headers.append(HTTPField(name: .setCookie, value: setCookie))
        return response
    }

    // MARK: authorization endpoint

    func authorize(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await page("authorize") {
            let parameters = try await parameters(request)
            // OIDC Core §3.1.2.1 allows POST; a cross-site POST carries no SameSite=Lax session cookie, so
            // repeat it as a GET (which does) rather than answer login_required to a signed-in user.
            if request.method == .post, Cookies.value(cookies.sessionName, in: request) == nil {
                return pages.seeOtherLocal(Path.authorization + "?" + FormEncoding.encode(parameters.pairs))
            }
            let session = try await currentSession(request)
            let outcome = try await services.authorization.authorize(parameters, session: session)
            return try await render(outcome, request: request, status: request.method == .post ? .seeOther : .found)
        }
    }

    func render(_ outcome: AuthorizationEndpoint.Outcome, request: Request, status: HTTPResponse.Status) async throws
        -> Response
    {
        switch outcome {
        case .errorPage(let error):
            return pages.error(error)
        case .redirect(let location):
            return Response(status: status, headers: [.location: location, .cacheControl: "no-store"])
        case .outOfBand(let code, let state):
            // The code travels in a short-lived cookie scoped to the code page, not in the URL: it stays out of
            // history and logs, and nobody can make our page show a code of their choosing.
            return withCookie(
                Response(status: status, headers: [.location: pages.prefix + Path.outOfBand, .cacheControl: "no-store"]),
                cookies.oneTime(
                    outOfBandCookieName, path: pages.prefix + Path.outOfBand,
                    [("code", code)] + (state.map { [("state", $0)] } ?? [])))
        case .login(let authorization):
            return try await loginPageResponse(
                request, returnTo: authorization.resumePath, clientName: authorization.client.name, username: authorization.loginHint,
                flags: [:])
        case .consent(let authorization, let user, let scopes):
            let csrf = CSRF.token(request, cookies: cookies)
            let host = URLComponents(string: authorization.redirectURI)?.host ?? authorization.redirectURI
            return withCookie(
                pages.render(
                    "consent",
                    [
                        "csrf": csrf.token, "clientName": authorization.client.name, "username": user.username,
                        "scopes": scopes.map { ["name": $0.name, "description": $0.description] },
                        "fields": authorization.resumeParameters.map { ["name": $0.0, "value": $0.1] },
                        "redirectHost": host, "outOfBand": authorization.isOutOfBand,
                    ]), csrf.setCookie)
        }
    }

    // MARK: login

    func loginPage(_ request: Request) async -> Response {
        await page("login") {
            let query = try HTTP.query(request)
            let returnTo = safeReturnTo(try query.single("return_to"))
            var flags: [String: Bool] = [:]
            switch try query.single("error") {
            case "locked": flags["locked"] = true
            case .some: flags["failed"] = true
            case nil: break
            }
            if try query.single("signed_out") != nil { flags["signedOut"] = true }
            var clientName: String?
            if returnTo.hasPrefix(Path.authorization + "?"),
                let p = try? HTTP.parseForm(Data(returnTo.dropFirst(Path.authorization.count + 1).utf8)),
                let id = try? p.single("client_id")
            {
                clientName = try await services.storage.client(id: id)?.name
            }
            return try await loginPageResponse(
                request, returnTo: returnTo, clientName: clientName, username: try query.single("login_hint"), flags: flags)
        }
    }

    func loginPageResponse(
        _ request: Request, returnTo: String, clientName: String?, username: String?, flags: [String: Bool]
    ) async throws -> Response {
        let csrf = CSRF.token(request, cookies: cookies)
        var values: [String: Any] = ["csrf": csrf.token, "returnTo": returnTo]
        let providers = try await services.providers()
        if !providers.isEmpty {
            values["hasProviders"] = true
            values["providers"] = providers.map { ["id": $0.id, "name": $0.name, "csrf": csrf.token, "returnTo": returnTo] }
        }
        if let clientName { values["clientName"] = clientName }
        if let username, username.utf8.count <= 150 { values["username"] = username }
        for (k, v) in flags where v { values[k] = true }
        return withCookie(pages.render("login", values), csrf.setCookie)
    }

    func login(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await page("login") {
            var request = request
            let form = try await formBody(&request)
            guard CSRF.isValid(request, form: form, cookies: cookies) else { return pages.error(Self.csrfFailure) }
            let returnTo = safeReturnTo(try form.single("return_to"))
            let username = try form.single("username") ?? ""
            let password = try form.single("password") ?? ""
            let address = services.clientAddress(request, context)
            do {
                let user = try await services.signIn.authenticate(username: username, password: password, address: address)
                // A new session id at every sign-in (no session fixation); the old session ends.
                try await services.signIn.endSession(cookie: Cookies.value(cookies.sessionName, in: request))
                let (cookie, session) = try await services.signIn.startSession(for: user)
                logger.info("user signed in", metadata: ["user": .string(user.id), "session": .string(session.id)])
                try? await services.events.emit(Events.userLogin, ["user_id": user.id, "method": "password"])
                return withCookie(
                    pages.seeOtherLocal(returnTo),
                    cookies.header(cookies.sessionName, cookie, maxAge: services.settings.sessionLifetime))
            } catch let failure as SignIn.Failure {
                let throttled = failure != .invalidCredentials
                var meta: Logger.Metadata = ["address": .string(address ?? "unknown")]
                meta["event"] = .string(throttled ? "login.locked_out" : "login.failed")
                logger.notice("sign-in failed", metadata: meta)
                let query = FormEncoding.encode([
                    ("error", throttled ? "locked" : "failed"), ("return_to", returnTo),
                ])
                return pages.seeOtherLocal(Path.login + "?" + query)
            }
        }
    }

    // MARK: consent

    func consent(_ request: Request) async -> Response {
        await page("consent") {
            var request = request
            let form = try await formBody(&request)
            guard CSRF.isValid(request, form: form, cookies: cookies) else { return pages.error(Self.csrfFailure) }
            let decision: AuthorizationEndpoint.Decision
            switch try form.single("decision") {
            case "allow": decision = .allow(remember: try form.single("remember") == "on")
            case "deny": decision = .deny
            default: return pages.error(OAuthError.invalidRequest.with(description: "Choose Allow or Deny."))
            }
            var rest = form.values
            for name in ["csrf_token", "decision", "remember"] { rest[name] = nil }
            let session = try await currentSession(request)
            let outcome = try await services.authorization.authorize(
                RequestParameters(rest), session: session, decision: decision)
            switch outcome {
            case .login(let authorization):
                // The session ended meanwhile: sign in again, then come back to the request (POST → 303).
                return toLogin(returnTo: authorization.resumePath)
            case .consent(let authorization, _, _):
                return pages.seeOtherLocal(authorization.resumePath)
            default:
                return try await render(outcome, request: request, status: .seeOther)
            }
        }
    }

    var outOfBandCookieName: String { cookies.secure ? "__Secure-gatehouse_oob" : "gatehouse_oob" }

    /// Shows the code of an out-of-band authorization once (it is read from, and removed with, its cookie).
    func outOfBand(_ request: Request) -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        guard let query = Cookies.readOneTime(outOfBandCookieName, in: request),
            let code = try? query.single("code"), code.utf8.count <= 256
        else { return pages.error(OAuthError.invalidRequest.with(description: "There is no code to show.")) }
        var values: [String: Any] = ["code": code]
        if let state = try? query.single("state") { values["state"] = state }
        return withCookie(pages.render("oob", values), cookies.clearOneTime(outOfBandCookieName, path: pages.prefix + Path.outOfBand))
    }

    // MARK: account

    func account(_ request: Request) async -> Response {
        await page("account") {
            guard let (_, user) = try await currentSession(request) else {
                return toLogin(returnTo: Path.account)
            }
            let now = services.clock.nowSeconds
            let grants = try await services.storage.activeGrants(
                userID: user.id, createdAfter: now - services.settings.accessTokenLifetime, at: now)
            var apps: [[String: Any]] = []
            var seen: [String: Int] = [:]
            for grant in grants {
                if let i = seen[grant.clientID] {
                    let scope = Scope(((apps[i]["scope"] as? String) ?? "").split(separator: " ").map(String.init) + grant.scope.tokens)
                    apps[i]["scope"] = scope.description
                    continue
                }
                guard let client = try await services.storage.client(id: grant.clientID) else { continue }
                seen[grant.clientID] = apps.count
                apps.append([
                    "clientID": client.id, "name": client.name, "scope": grant.scope.description,
                    "since": Self.date(grant.createdAt),
                ])
            }
            let csrf = CSRF.token(request, cookies: cookies)
            var values: [String: Any] = ["csrf": csrf.token, "username": user.username]
            let providers = try await services.providers()
            let identities = try await services.storage.identities(userID: user.id)
            values["identities"] = identities.map { i in
                [
                    "provider": i.providerID, "subject": i.subject, "csrf": csrf.token,
                    "providerName": providers.first { $0.id == i.providerID }?.name ?? i.providerID,
                    "account": i.username ?? i.email ?? i.subject,
                ]
            }
            if try await mayCreateApps(user) { values["canCreateApps"] = true }
            values["linkable"] = providers.filter { p in !identities.contains { $0.providerID == p.id } }
                .map { ["id": $0.id, "name": $0.name, "csrf": csrf.token] }
            if let name = user.name { values["name"] = name }
            values["apps"] = apps.map { app in app.merging(["csrf": csrf.token]) { a, _ in a } }
            return withCookie(pages.render("account", values), csrf.setCookie)
        }
    }

    static func date(_ seconds: Int64) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    func revoke(_ request: Request) async -> Response {
        await page("account") {
            var request = request
            let form = try await formBody(&request)
            guard CSRF.isValid(request, form: form, cookies: cookies) else { return pages.error(Self.csrfFailure) }
            guard let (_, user) = try await currentSession(request) else { return pages.seeOtherLocal(Path.login) }
            guard let clientID = try form.single("client_id") else {
                return pages.error(OAuthError.invalidRequest.with(description: "No app was named."))
            }
            try await services.storage.revokeGrants(userID: user.id, clientID: clientID, at: services.clock.nowSeconds)
            try? await services.events.emit(
                Events.grantRevoked, ["user_id": user.id, "client_id": clientID, "reason": "revoked_by_user"])
            logger.info("grants revoked by user", metadata: ["user": .string(user.id), "client": .string(clientID)])
            return pages.seeOtherLocal(Path.account)
        }
    }

    func signOut(_ request: Request) async -> Response {
        await page("logout") {
            var request = request
            let form = try await formBody(&request)
            guard CSRF.isValid(request, form: form, cookies: cookies) else { return pages.error(Self.csrfFailure) }
            if let (_, user) = try await currentSession(request) {
                try? await services.events.emit(Events.userLogout, ["user_id": user.id])
            }
            try await services.signIn.endSession(cookie: Cookies.value(cookies.sessionName, in: request))
            return withCookie(
                pages.seeOtherLocal(Path.login + "?signed_out=1"), cookies.header(cookies.sessionName, "", maxAge: 0))
        }
    }

    // MARK: RP-initiated logout

    func endSession(_ request: Request) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await page("end_session") {
            var request = request
            let isPost = request.method == .post
            var parameters = isPost
                ? try await formBody(&request) : try HTTP.query(request)
            // Our own confirmation form: a POST with a valid CSRF token and confirm=yes.
            var confirmed = false
            if isPost, try parameters.single("confirm") == "yes" {
                guard CSRF.isValid(request, form: parameters, cookies: cookies) else {
                    return pages.error(Self.csrfFailure)
                }
                confirmed = true
            }
            var rest = parameters.values
            for name in ["csrf_token", "confirm"] { rest[name] = nil }
            parameters = RequestParameters(rest)
            let session = try await currentSession(request)
            // A cross-site POST carries no SameSite=Lax cookie, so it would look like "nobody signed in" and
            // leave the session alive: repeat it as a top-level GET, which does carry the cookie.
            if isPost, !confirmed, Cookies.value(cookies.sessionName, in: request) == nil {
                return pages.seeOtherLocal(Path.endSession + "?" + FormEncoding.encode(parameters.pairs))
            }
            let action = try await services.logout.decide(parameters, session: session?.session)
            switch action {
            case .confirm(let logout) where !confirmed:
                let csrf = CSRF.token(request, cookies: cookies)
                var values: [String: Any] = [
                    "csrf": csrf.token, "fields": logout.parameters.map { ["name": $0.0, "value": $0.1] },
                ]
                if let name = logout.client?.name { values["clientName"] = name }
                if let user = session?.user { values["username"] = user.username }
                return withCookie(pages.render("logout", values), csrf.setCookie)
            case .confirm(let logout), .logout(let logout):
                try await services.signIn.endSession(cookie: Cookies.value(cookies.sessionName, in: request))
                if let session {
                    logger.info("user signed out", metadata: ["user": .string(session.user.id)])
                    try? await services.events.emit(Events.userLogout, ["user_id": session.user.id])
                }
                let clear = cookies.header(cookies.sessionName, "", maxAge: 0)
                if let redirect = logout.redirect {
                    return withCookie(
                        Response(status: isPost ? .seeOther : .found, headers: [.location: redirect, .cacheControl: "no-store"]),
                        clear)
                }
                // POST/Redirect/GET: a form is answered with 303 (to the login page, which says "signed out").
                if isPost { return withCookie(pages.seeOtherLocal(Path.login + "?signed_out=1"), clear) }
                return withCookie(pages.render("signed_out", [:]), clear)
            }
        }
    }

    // MARK: UserInfo

    /// OIDC Core §5.3 with RFC 6750 §2.1/§2.2: the token in the Authorization header, or in a POST form body;
    /// never in the query string, and never in two places at once.
    func userinfo(_ request: Request) async -> Response {
        var request = request
        do {
            var token: String?
            if request.headers[.authorization] != nil {
                // RFC 6750 §3.1: a request without a Bearer token gets no error code.
                guard let bearer = HTTP.bearerToken(request) else { throw BearerError.missing }
                token = bearer
            }
            if let query = request.uri.query, query.contains("access_token") {
                throw BearerError.invalidRequest("Send the access token in the Authorization header, not the URL.")
            }
            if request.method == .post, (request.headers[.contentType] ?? "").lowercased().hasPrefix("application/x-www-form-urlencoded") {
                let form: RequestParameters
                do { form = try await formBody(&request) } catch { throw BearerError.invalidRequest("The request body is malformed.") }
                let values = form.values["access_token"] ?? []
                if !values.isEmpty {
                    guard token == nil, values.count == 1 else {
                        throw BearerError.invalidRequest("Send the access token once, in one place.")
                    }
                    token = values[0]
                }
            }
            guard let token, !token.isEmpty else { throw BearerError.missing }
            let claims = try await services.userinfo.handle(token: token)
            var response = try HTTP.json(claims)
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        } catch let e as BearerError {
            return Self.bearerError(e)
        } catch {
            logger.error("unexpected error", metadata: ["endpoint": "userinfo", "detail": .string("\(error)")])
            return HTTP.error(.serverError)
        }
    }

    static func bearerError(_ e: BearerError) -> Response {
        var challenge = "Bearer realm=\"gatehouse\""
        var response: Response
        if e.code.isEmpty {
            response = Response(status: .unauthorized, headers: [.cacheControl: "no-store"])
        } else {
            challenge += ", error=\"\(e.code)\", error_description=\"\(HTTP.describe(e.description))\""
            if e.code == "insufficient_scope" { challenge += ", scope=\"openid\"" }
            response = HTTP.error(OAuthError(code: e.code, description: e.description, status: e.status))
        }
        response.headers[.wwwAuthenticate] = challenge
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }
}
