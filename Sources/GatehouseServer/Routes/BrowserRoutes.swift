import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

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
        router.post("/login/password") { request, context in await changeRequiredPassword(request, context) }
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
        addConsole(to: router)
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
        } catch let refusal as Refusal {
            logger.notice("page refused", metadata: ["page": .string(name), "detail": .string(refusal.log)])
            return pages.error(refusal)
        } catch let e as OAuthError {
            if e.status >= 500 {
                logger.error("page failed", metadata: ["page": .string(name), "detail": .string(e.debug ?? e.code)])
            }
            return pages.error(e)
        } catch {
            logger.error("unexpected error", metadata: ["page": .string(name), "detail": .string("\(error)")])
            return pages.error(.unexpected)
        }
    }

    /// The shared preamble of every form POST: read the form body, check its CSRF token (an error page when
    /// it fails), then run `body` with the form; errors become pages as in `page`.
    func formPage(
        _ name: String, _ request: Request, _ body: @escaping (RequestParameters, Request) async throws -> Response
    ) async -> Response {
        await page(name) {
            var request = request
            let form = try await HTTP.formBody(&request)
            guard CSRF.isValid(request, form: form, cookies: cookies) else { return pages.error(Refusal.formExpired) }
            return try await body(form, request)
        }
    }

    /// Query parameters (GET) or a form body (POST).
    func parameters(_ request: Request) async throws -> RequestParameters {
        if request.method == .post {
            var request = request
            return try await HTTP.formBody(&request)
        }
        return try HTTP.query(request)
    }

    func currentSession(_ request: Request) async throws -> (session: SessionRecord, user: UserRecord)? {
        try await services.signIn.session(cookie: Cookies.value(cookies.sessionName, in: request))
    }

    /// Where a login may return to: only our authorization endpoint or the account page (no open redirect).
    func safeReturnTo(_ value: String?) -> String {
        guard let value, value.utf8.count <= 8192, !value.contains("\\"), !value.unicodeScalars.contains(where: { $0.value < 0x20 })
        else { return Path.account }
        if value == Path.account || value.hasPrefix(Path.authorization + "?") { return value }
        // The admin console's pages (a path of ours: no scheme, no host, no `//`).
        if value == "/admin" || (value.hasPrefix("/admin/") && !value.contains("//")) { return value }
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
}
