import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// "Sign in with …": the browser leaves for an upstream provider and comes back to
/// `/login/{provider}/callback` (OAuth 2.0 code flow with `state`, PKCE and, for OIDC, `nonce`).
extension BrowserRoutes {
    func addFederation(to router: Router<GatehouseRequestContext>) {
        router.post("/login/:provider") { request, context in await startUpstream(request, context) }
        router.get("/login/:provider/callback") { request, context in await finishUpstream(request, context) }
        router.post(RouterPath(Path.accountUnlink)) { request, _ in await unlink(request) }
    }

    var upstreamCookieName: String { cookies.secure ? "__Host-gatehouse_upstream" : "gatehouse_upstream" }

    func callbackURI(_ providerID: String) -> String {
        let base = services.settings.issuer.hasSuffix("/") ? String(services.settings.issuer.dropLast()) : services.settings.issuer
        return base + "/login/\(providerID)/callback"
    }

    func provider(_ context: GatehouseRequestContext) async throws -> ProviderRecord? {
        guard let id = context.parameters.get("provider") else { return nil }
        return try await services.providers().first { $0.id == id }
    }

    static let unknownProvider = OAuthError(code: "invalid_request", description: "There is no such sign-in provider.", status: 404)

    func startUpstream(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await formPage("upstream", request) { form, request in
            guard let provider = try await provider(context) else { return pages.error(Self.unknownProvider) }
            var linkUserID: String?
            if try form.single("link") == "1" {
                guard let (_, user) = try await currentSession(request) else {
                    return toLogin(returnTo: Path.account)
                }
                linkUserID = user.id
            }
            let returnTo = linkUserID != nil ? Path.account : safeReturnTo(try form.single("return_to"))
            return try await beginUpstream(
                provider, returnTo: returnTo, linkUserID: linkUserID, address: services.clientAddress(request, context))
        }
    }

    /// Pending upstream sign-ins one client address may have at once (each is a row until it expires).
    static let pendingFlowsPerAddress = 20

    /// Stores the flow and sends the browser to the provider (with the browser-binding cookie).
    func beginUpstream(_ provider: ProviderRecord, returnTo: String, linkUserID: String?, address: String?) async throws
        -> Response
    {
        let state = Secrets.generate()
        let verifier = Secrets.generate()
        let nonce = Secrets.generate()
        let browser = Secrets.generate()
        let url: String
        do {
            url = try await services.upstream.authorizationURL(
                provider, redirectURI: callbackURI(provider.id), state: state, codeVerifier: verifier, nonce: nonce)
        } catch let e as UpstreamError {
            logger.error("upstream sign-in could not start", metadata: ["provider": .string(provider.id), "detail": .string(e.detail)])
            return pages.error(
                OAuthError(code: "temporarily_unavailable", description: "\(provider.name): \(e.description)", status: 502),
                heading: "Sign-in with \(provider.name) is not available")
        }
        let now = services.clock.nowSeconds
        let stored = try await services.storage.insertUpstreamFlow(
            UpstreamFlowRecord(
                stateHash: Secrets.hash(state), providerID: provider.id, browserHash: Secrets.hash(browser),
                codeVerifier: verifier, nonce: nonce, returnTo: returnTo, linkUserID: linkUserID,
                expiresAt: now + services.settings.upstreamFlowLifetime, addressKey: PasswordAuthenticator.addressKey(address)),
            limitPerAddress: Self.pendingFlowsPerAddress, at: now)
        guard stored else {
            logger.notice("too many pending upstream sign-ins", metadata: ["address": .string(address ?? "unknown")])
            return pages.error(
                OAuthError(
                    code: "temporarily_unavailable",
                    description: "Too many sign-ins are in progress from your network. Finish one, or try again in a few minutes.",
                    status: 429),
                heading: "Too many sign-ins in progress")
        }
        return withCookie(pages.seeOther(url), cookies.header(upstreamCookieName, browser, maxAge: services.settings.upstreamFlowLifetime))
    }

    func finishUpstream(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await page("upstream") {
            let clear = cookies.header(upstreamCookieName, "", maxAge: 0)
            func fail(_ description: String, code: String = "access_denied", status: Int = 400, log detail: String) -> Response {
                logger.notice(
                    "upstream sign-in failed",
                    metadata: ["provider": .string(context.parameters.get("provider") ?? "?"), "detail": .string(detail)])
                return withCookie(
                    pages.error(OAuthError(code: code, description: description, status: status), heading: "Sign-in did not work"),
                    clear)
            }
            let query = try HTTP.query(request)
            guard let state = try query.single("state"), state.utf8.count <= 512 else {
                return fail("The sign-in response is incomplete. Start again from the login page.", code: "invalid_request", log: "no state")
            }
            // Single use: the flow is removed before anything else is checked.
            guard let flow = try await services.storage.takeUpstreamFlow(stateHash: Secrets.hash(state)) else {
                return fail("This sign-in link has expired or was already used. Start again from the login page.", code: "invalid_request", log: "unknown state")
            }
            let browser = Cookies.value(upstreamCookieName, in: request) ?? ""
            guard flow.providerID == context.parameters.get("provider"), flow.expiresAt > services.clock.nowSeconds,
                Secrets.verify(browser, hash: flow.browserHash)
            else {
                return fail("This sign-in did not start in this browser, or took too long. Start again from the login page.", code: "invalid_request", log: "state not bound to this browser, expired, or wrong provider")
            }
            guard let provider = try await services.providers().first(where: { $0.id == flow.providerID }) else {
                return fail("There is no such sign-in provider.", code: "invalid_request", log: "provider removed")
            }
            if let error = try query.single("error") {
                let what = OAuthError(code: "", description: error).safeDescription
                return fail("\(provider.name) did not sign you in (\(what)).", log: "provider answered error=\(what)")
            }
            guard let code = try query.single("code"), code.utf8.count <= 2048 else {
                return fail("The sign-in response is incomplete. Start again from the login page.", code: "invalid_request", log: "no code")
            }
            let external: ExternalIdentity
            do {
                external = try await services.upstream.completeSignIn(
                    provider, code: code, redirectURI: callbackURI(provider.id), codeVerifier: flow.codeVerifier, nonce: flow.nonce)
            } catch let e as UpstreamError {
                let unavailable = e.kind == .unavailable || e.kind == .misconfigured
                return fail(
                    "\(provider.name): \(e.description)", code: unavailable ? "temporarily_unavailable" : "access_denied",
                    status: unavailable ? 502 : 400, log: e.detail)
            }
            let resolution: Broker.Resolution
            do {
                resolution = try await services.broker.resolve(external, provider: provider, linkTo: flow.linkUserID)
            } catch let e as Broker.Failure {
                return fail(e.description, log: "\(e)")
            }
            if flow.linkUserID != nil {
                logger.info("identity linked", metadata: ["user": .string(resolution.user.id), "provider": .string(provider.id)])
                return withCookie(pages.seeOtherLocal(Path.account), clear)
            }
            let (cookie, session) = try await services.signIn.complete(
                user: resolution.user, method: provider.id, previousCookie: Cookies.value(cookies.sessionName, in: request))
            logger.info(
                "user signed in", metadata: ["user": .string(resolution.user.id), "provider": .string(provider.id), "session": .string(session.id)])
            var response = withCookie(pages.seeOtherLocal(flow.returnTo), clear)
            response.headers.append(
                HTTPField(name: .setCookie, value: cookies.header(cookies.sessionName, cookie, maxAge: services.settings.sessionLifetime)))
            return response
        }
    }

    func unlink(_ request: Request) async -> Response {
        await formPage("account", request) { form, request in
            guard let (_, user) = try await currentSession(request) else { return pages.seeOtherLocal(Path.login) }
            guard let providerID = try form.single("provider"), let subject = try form.single("subject") else {
                return pages.error(OAuthError.invalidRequest.with(description: "No linked account was named."))
            }
            let identities = try await services.storage.identities(userID: user.id)
            // Never remove the last way to sign in.
            guard user.passwordHash != nil || identities.count > 1 else {
                return pages.error(
                    OAuthError.invalidRequest.with(description: "This is your only way to sign in; link another account first."),
                    heading: "This account cannot be unlinked")
            }
            guard try await services.storage.deleteIdentity(providerID: providerID, subject: subject, userID: user.id) else {
                // Unknown, someone else's, or (after a concurrent unlink) the last way to sign in.
                return pages.error(
                    OAuthError.invalidRequest.with(description: "That account could not be unlinked."),
                    heading: "This account cannot be unlinked")
            }
            logger.info("identity unlinked", metadata: ["user": .string(user.id), "provider": .string(providerID)])
            return pages.seeOtherLocal(Path.account)
        }
    }
}
