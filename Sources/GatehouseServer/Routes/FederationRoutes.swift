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
        try await services.upstreamSignIn.provider(id: context.parameters.get("provider"))
    }

    func startUpstream(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await formPage("upstream", request) { form, request in
            guard let provider = try await provider(context) else { return pages.error(UpstreamSignIn.unknownProvider) }
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

    /// Starts the flow (`UpstreamSignIn.begin`) and sends the browser to the provider with the binding cookie.
    func beginUpstream(_ provider: ProviderRecord, returnTo: String, linkUserID: String?, address: String?) async throws
        -> Response
    {
        do {
            let started = try await services.upstreamSignIn.begin(
                provider, redirectURI: callbackURI(provider.id), returnTo: returnTo, linkUserID: linkUserID, address: address)
            return withCookie(pages.seeOther(started.url), cookies.header(upstreamCookieName, started.browserBinding, maxAge: started.lifetime))
        } catch let refusal as Refusal {
            logger.notice(
                "upstream sign-in could not start",
                metadata: ["provider": .string(provider.id), "address": .string(address ?? "unknown"), "detail": .string(refusal.log)])
            return pages.error(refusal)
        }
    }

    func finishUpstream(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await page("upstream") {
            let clear = cookies.header(upstreamCookieName, "", maxAge: 0)
            let outcome: UpstreamSignIn.Outcome
            do {
                outcome = try await services.upstreamSignIn.finish(
                    providerID: context.parameters.get("provider"), query: try HTTP.query(request),
                    browserBinding: Cookies.value(upstreamCookieName, in: request), redirectURI: callbackURI)
            } catch let refusal as Refusal {
                logger.notice(
                    "upstream sign-in failed",
                    metadata: [
                        "provider": .string(Redaction.logValue(context.parameters.get("provider") ?? "?", limit: 64)),
                        "detail": .string(refusal.log),
                    ])
                return withCookie(pages.error(refusal), clear)
            }
            switch outcome {
            case .linked(let user, let provider):
                logger.info("identity linked", metadata: ["user": .string(user.id), "provider": .string(provider.id)])
                return withCookie(pages.seeOtherLocal(Path.account), clear)
            case .signedIn(let user, let provider, let returnTo):
                let cookie: String, session: SessionRecord
                do {
                    (cookie, session) = try await services.signIn.complete(
                        user: user, method: provider.id, previousCookie: Cookies.value(cookies.sessionName, in: request))
                } catch SignIn.Failure.disabled {
                    logger.notice("sign-in refused", metadata: ["user": .string(user.id), "event": "login.disabled"])
                    return withCookie(pages.error(SignIn.disabledAccount), clear)
                }
                logger.info(
                    "user signed in", metadata: ["user": .string(user.id), "provider": .string(provider.id), "session": .string(session.id)])
                var response = withCookie(pages.seeOtherLocal(returnTo), clear)
                response.headers.append(
                    HTTPField(name: .setCookie, value: cookies.header(cookies.sessionName, cookie, maxAge: services.settings.sessionLifetime)))
                return response
            }
        }
    }

    func unlink(_ request: Request) async -> Response {
        await formPage("account", request) { form, request in
            guard let (_, user) = try await currentSession(request) else { return pages.seeOtherLocal(Path.login) }
            let providerID = try form.single("provider")
            try await services.broker.unlink(providerID: providerID, subject: try form.single("subject"), from: user)
            logger.info("identity unlinked", metadata: ["user": .string(user.id), "provider": .string(providerID ?? "")])
            return pages.seeOtherLocal(Path.account)
        }
    }
}
