import Foundation
import GatehouseCore
import Hummingbird
import Logging

/// The HTTP routes. Handlers decode, call the core, encode. Each compatibility profile's routes mount only
/// when it is on.
func buildRouter(
    _ services: GatehouseServices, logger: Logger, compat: CompatOptions = CompatOptions(), accessLog: Bool = true,
    tracing: TraceSampler? = nil
) throws -> Router<GatehouseRequestContext> {
    // HEAD answers like GET without a body on every GET route (RFC 9110 §9.3.2).
    let router = Router(context: GatehouseRequestContext.self, options: .autoGenerateHeadEndpoints)
    // Outermost: every response, the router's own refusals included, gets an X-Request-Id.
    // With `tracing` (`otel_endpoint`), sampled requests run in a server span (`RequestSpan`).
    router.add(middleware: RequestLogMiddleware(
        accessLog: accessLog, tracing: tracing, settings: services.settings, metrics: services.metrics, logger: logger))
    router.add(middleware: SecurityHeadersMiddleware())
    typealias Path = ServerMetadata.Path

    // RFC 8414 §3 and OpenID Connect Discovery §4: the same truthful document.
    @Sendable func metadata(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await HTTP.endpoint("discovery", logger: logger) {
            let scopes = try await services.storage.listScopes().map(\.name)
            let snapshot = try services.keys.snapshot
            var algorithms = [snapshot.signingKey.algorithm.rawValue]
            for key in snapshot.publishedKeys where !algorithms.contains(key.algorithm.rawValue) {
                algorithms.append(key.algorithm.rawValue)
            }
            let doc = ServerMetadata(
                issuer: services.settings.issuer, grantTypes: services.token.supportedGrantTypes, scopes: scopes,
                signingAlgorithms: algorithms)
            var response = try HTTP.json(doc, noStore: false)
            response.headers[.cacheControl] = "public, max-age=300"
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
    }
    router.get(RouterPath(Path.openIDConfiguration), use: metadata)
    router.get(RouterPath(Path.authorizationServer), use: metadata)

    router.get(RouterPath(Path.jwks)) { _, _ in
        await HTTP.endpoint("jwks", logger: logger) {
            var response = HTTP.raw(try services.keys.snapshot.jwksJSON, noStore: false, contentType: "application/jwk-set+json")
            // At most 60 s: a rotated-in key is published `key_reload_interval` + 60 s before it signs, so a
            // verifier that honours this lifetime has it in time (and verifiers refetch on an unknown kid).
            response.headers[.cacheControl] = "public, max-age=60"
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
    }

    let core = CoreHandlers(services: services, logger: logger)
    router.post(RouterPath(Path.token)) { request, context in await core.token(request, context) }
    router.post(RouterPath(Path.revocation)) { request, _ in await core.revoke(request) }
    router.post(RouterPath(Path.introspection)) { request, _ in await core.introspect(request) }

    // The OAuth endpoints accept POST only (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1).
    for path in [Path.token, Path.revocation, Path.introspection] {
        router.get(RouterPath(path)) { _, _ in
            var response = HTTP.error(OAuthError.postOnly)
            response.headers[.allow] = "POST"
            return response
        }
    }

    // CORS preflight for the endpoints browser apps (SPAs) call with fetch: no cookies are involved (the
    // credentials are in the body or the Authorization header), so any origin may call them.
    for path in [Path.token, Path.revocation, Path.userinfo] {
        router.on(RouterPath(path), method: .options) { _, _ in
            Response(
                status: .noContent,
                headers: [
                    .accessControlAllowOrigin: "*", .accessControlAllowMethods: "GET, POST",
                    .accessControlAllowHeaders: "Authorization, Content-Type", .accessControlMaxAge: "600",
                ])
        }
    }

    var browser = BrowserRoutes(
        services: services, pages: try Pages(issuer: services.settings.issuer),
        cookies: Cookies(settings: services.settings), logger: logger)
    if compat.profiles.contains(.dgp) { browser.extraReturnPrefixes.append(DGPProfile.finishPath) }
    browser.add(to: router)

    // Compatibility profiles: legacy routes mounted onto the same core operations.
    let compatContext = CompatContext(services: services, core: core, browser: browser, logger: logger, options: compat)
    for profile in compat.profiles.sorted(by: { $0.rawValue < $1.rawValue }) {
        profile.mount(on: router, with: compatContext)
    }

    HealthRoutes(services: services).add(to: router)
    AdminAPI(services: services, logger: logger).add(to: router)
    return router
}

