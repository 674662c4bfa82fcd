import Foundation
import GatehouseCore
import GatehouseSQL
import Hummingbird
import Logging
import ServiceLifecycle

/// Everything the endpoints share, built once per process.
public struct GatehouseServices: Sendable {
    public let storage: any GatehouseStorage
    public let settings: ServerSettings
    public let clock: Clock
    public let keys: KeyRing
    public let token: TokenEndpoint
    public let revocation: RevocationEndpoint
    public let introspection: IntrospectionEndpoint
    public let authorization: AuthorizationEndpoint
    public let signIn: SignIn
    public let userinfo: UserInfoEndpoint
    public let logout: LogoutEndpoint
    public let events: Events
    public let broker: Broker
    public let upstream: UpstreamClient
    public let webhooks: [WebhookConfig]
    /// Verifies our own access tokens (UserInfo, compatibility APIs).
    public let verifier: AccessTokenVerifier
    public let permissions: PermissionResolver
    /// RFC 8693 token exchange (also used by dot's register-by-token).
    public let exchange: TokenExchangeGrant
    /// Providers from the config file; those added with `gatehouse providers add` live in the database.
    let configuredProviders: [ProviderRecord]

    /// Every upstream provider: the config file's, then the database's (an id in both: the config file wins).
    public func providers() async throws -> [ProviderRecord] {
        let stored = try await storage.listProviders().filter { p in !configuredProviders.contains { $0.id == p.id } }
        return configuredProviders + stored
    }

    /// Loads (on first start: creates) the signing keys, then wires the endpoints.
    public static func make(
        storage database: any GatehouseStorage, settings: ServerSettings, clock: Clock = .system,
        passwords: PasswordHasher = PasswordHasher(), providers: [ProviderRecord] = [], webhooks: [WebhookConfig] = [],
        upstreamHTTP: (any UpstreamHTTP)? = nil
    ) async throws -> GatehouseServices {
        let storage: any GatehouseStorage =
            settings.cacheTTL > 0 ? CachingStorage(database, ttl: settings.cacheTTL, clock: clock) : database
        let keys = KeyRing(retention: settings.keyRetention, clock: clock)
        try await keys.bootstrap(store: storage, algorithm: settings.signingAlgorithm)
        let events = Events(storage: storage, hooks: webhooks, clock: clock)
        let context = TokenContext(
            storage: storage, settings: settings, clock: clock, keys: keys, passwords: passwords, events: events)
        let verifier = AccessTokenVerifier(keys: keys, issuer: settings.issuer, clock: clock)
        let hints = IDTokenHintVerifier(keys: keys, issuer: settings.issuer)
        let broker = Broker(storage: storage, events: events, clock: clock)
        let upstream = UpstreamClient(http: upstreamHTTP ?? UpstreamHTTPClient(), clock: clock)
        let configured = providers
        let exchange = TokenExchangeGrant(
            providers: {
                let stored = try await storage.listProviders().filter { p in !configured.contains { $0.id == p.id } }
                return configured + stored
            }, upstream: upstream, broker: broker, verifier: verifier)
        return GatehouseServices(
            storage: storage, settings: settings, clock: clock, keys: keys,
            token: TokenEndpoint(context: context, grants: TokenEndpoint.defaultGrants + [exchange]),
            revocation: RevocationEndpoint(storage: storage, verifier: verifier, clock: clock, events: events),
            introspection: IntrospectionEndpoint(storage: storage, verifier: verifier, clock: clock),
            authorization: AuthorizationEndpoint(context: context, hints: hints),
            signIn: SignIn(storage: storage, settings: settings, clock: clock, passwords: context.passwordAuthenticator),
            userinfo: UserInfoEndpoint(storage: storage, verifier: verifier, audience: settings.audience),
            logout: LogoutEndpoint(storage: storage, hints: hints), events: events, broker: broker, upstream: upstream,
            webhooks: webhooks, verifier: verifier,
            permissions: PermissionResolver(storage: storage, http: upstreamHTTP ?? UpstreamHTTPClient()),
            exchange: exchange, configuredProviders: providers)
    }
}

/// The HTTP routes. Handlers decode, call the core, encode.
public func buildRouter(_ services: GatehouseServices, logger: Logger, compat: CompatOptions = CompatOptions())
    throws -> Router<GatehouseRequestContext>
{
    // HEAD answers like GET without a body on every GET route (RFC 9110 §9.3.2).
    let router = Router(context: GatehouseRequestContext.self, options: .autoGenerateHeadEndpoints)
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
            var response = HTTP.error(OAuthError.invalidRequest.with(description: "Use POST."))
            response.status = .methodNotAllowed
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
    let compatContext = CompatContext(
        services: services, core: core, browser: browser, logger: logger, clientID: compat.clientID,
        corsOrigins: compat.corsOrigins, dgpSigner: compat.dgpSigner, nextHosts: compat.nextHosts,
        nextPaths: compat.nextPaths, dgpTokenLifetime: compat.dgpTokenLifetime, exchangeProviders: compat.exchangeProviders)
    for profile in compat.profiles.sorted(by: { $0.rawValue < $1.rawValue }) {
        profile.mount(on: router, with: compatContext)
    }

    router.get("/healthz") { _, _ in
        await HTTP.endpoint("health", logger: logger) {
            _ = try await services.storage.listScopes()
            return HTTP.raw(Array(#"{"status":"ok"}"#.utf8), noStore: true)
        }
    }
    return router
}

/// The OAuth endpoints' handlers, shared by the standard routes and the compatibility profiles.
struct CoreHandlers: Sendable {
    let services: GatehouseServices
    let logger: Logger

    func token(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await token(request, context) { try HTTP.json($0) }
    }

    /// The token endpoint with a custom encoding of the successful response (compatibility shapes).
    func token(
        _ request: Request, _ context: GatehouseRequestContext, encode: @Sendable (TokenResponse) async throws -> Response
    ) async -> Response {
        var request = request
        return await HTTP.endpoint("token", logger: logger) {
            let parameters = try await HTTP.parameters(&request)
            let response = try await services.token.handle(
                parameters, authorization: request.headers[.authorization],
                clientAddress: services.clientAddress(request, context))
            var encoded = try await encode(response)
            encoded.headers[.accessControlAllowOrigin] = "*"
            return encoded
        }
    }

    func revoke(_ request: Request) async -> Response {
        var request = request
        return await HTTP.endpoint("revocation", logger: logger) {
            let parameters = try await HTTP.parameters(&request)
            try await services.revocation.handle(parameters, authorization: request.headers[.authorization])
            // RFC 7009 §2.2: 200 with an empty body.
            return Response(status: .ok, headers: [.cacheControl: "no-store"])
        }
    }

    func introspect(_ request: Request) async -> Response {
        var request = request
        return await HTTP.endpoint("introspection", logger: logger) {
            let parameters = try await HTTP.parameters(&request)
            return try HTTP.json(
                try await services.introspection.handle(parameters, authorization: request.headers[.authorization]))
        }
    }
}

/// Periodic upkeep: re-reads signing keys (so `keys rotate` reaches a running server) and deletes
/// expired refresh tokens and revocation entries.
struct MaintenanceService: Service {
    let services: GatehouseServices
    let logger: Logger
    /// Seconds between purges of expired rows.
    static let purgeInterval: Int64 = 60

    func run() async throws {
        let keyReloadInterval = services.settings.keyReloadInterval
        await cancelWhenGracefulShutdown {
            var sinceReload: Int64 = 0
            var sincePurge: Int64 = 0
            while !Task.isCancelled {
                // Every second: has a key been revoked (`keys revoke`)? Then reload at once.
                try? await Task.sleep(for: .seconds(1))
                if Task.isCancelled { break }
                sinceReload += 1
                sincePurge += 1
                var reload = sinceReload >= keyReloadInterval
                // Checked on every tick, also when a periodic reload is due (it may fail).
                if let known = try? services.keys.snapshot.revoked,
                    let revoked = try? await services.storage.revokedKeyIDs(), revoked != known
                {
                    logger.warning("a signing key was revoked; reloading keys", metadata: ["kids": .string(revoked.subtracting(known).sorted().joined(separator: ","))])
                    // Out of the key set at once, even if the reload below fails.
                    try? await services.keys.drop(revoked.subtracting(known))
                    reload = true
                }
                if reload {
                    sinceReload = 0
                    do {
                        let before = try services.keys.snapshot.signingKey.kid
                        let after = try await services.keys.reload(from: services.storage).signingKey.kid
                        if before != after { logger.notice("signing key changed", metadata: ["kid": .string(after)]) }
                    } catch {
                        logger.error("reloading signing keys failed", metadata: ["detail": .string("\(error)")])
                    }
                }
                // Short-lived rows (codes, upstream flows, failure counters) go within a minute of expiry.
                if sincePurge >= Self.purgeInterval {
                    sincePurge = 0
                    let removed = (try? await services.storage.purgeExpired(before: services.clock.nowSeconds)) ?? 0
                    logger.debug("purged expired rows", metadata: ["rows": .stringConvertible(removed)])
                }
            }
        }
    }
}

/// Delivers the webhook outbox: claims due events, POSTs each signed, records the outcome (retry with
/// backoff, or failed after 12 attempts). Polls every second; a restart picks up where it left off.
struct WebhookService: Service {
    let services: GatehouseServices
    let retryBase: Int64
    let logger: Logger

    func run() async throws {
        let delivery = WebhookDelivery(hooks: services.webhooks, retryBase: retryBase)
        let http = UpstreamHTTPClient()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let now = services.clock.nowSeconds
                    let due = try await services.storage.claimDueEvents(at: now, limit: 20, lease: 60)
                    await withTaskGroup(of: Void.self) { group in
                        for record in due {
                            group.addTask {
                                await deliver(record, delivery: delivery, http: http)
                            }
                        }
                    }
                    if !due.isEmpty { continue }
                } catch {
                    logger.error("webhook outbox unavailable", metadata: ["detail": .string("\(error)")])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func deliver(_ record: OutboxRecord, delivery: WebhookDelivery, http: UpstreamHTTPClient) async {
        let now = services.clock.nowSeconds
        var status: Int?
        var failure: String?
        if let headers = delivery.headers(for: record, now: now) {
            do {
                status = try await http.postJSON(record.url, body: record.payload, headers: headers).status
            } catch let e as UpstreamError {
                failure = e.detail
            } catch {
                failure = "\(error)"
            }
        } else {
            failure = "no configured webhook has this URL any more"
        }
        let outcome = delivery.outcome(record, status: status, error: failure, now: services.clock.nowSeconds)
        if outcome.deliveredAt != nil {
            logger.debug("webhook delivered", metadata: ["event": .string(record.event), "id": .string(record.id)])
        } else {
            logger.warning(
                outcome.failedAt != nil ? "webhook delivery abandoned" : "webhook delivery failed; will retry",
                metadata: [
                    "event": .string(record.event), "id": .string(record.id), "attempts": .stringConvertible(outcome.attempts),
                    "detail": .string(outcome.lastError ?? ""),
                ])
        }
        // Recorded even while the server shuts down (an unstructured task is not cancelled with the worker),
        // so a restart retries at the planned time instead of after the claim's lease.
        let storage = services.storage
        let logger = self.logger
        await Task {
            do { try await storage.recordDelivery(outcome) } catch {
                logger.error("recording a webhook delivery failed", metadata: ["detail": .string("\(error)")])
            }
        }.value
    }
}

/// The application for `gatehouse serve` over an open store: migrates it, loads the keys, and serves.
/// The caller owns the store and closes it after `runService()` returns or throws.
public func buildApplication(_ config: GatehouseConfiguration, store: SQLStore, logger: Logger) async throws
    -> some ApplicationProtocol
{
    try await store.migrate()
    let services = try await GatehouseServices.make(
        storage: store, settings: config.settings, providers: config.providers, webhooks: config.webhooks)
    for profile in config.compat { try await profile.prepare(services) }
    var compat = CompatOptions()
    compat.profiles = config.compat
    compat.clientID = config.compatClientID
    compat.corsOrigins = config.corsOrigins
    compat.nextHosts = config.compatNextHosts
    compat.nextPaths = config.compatNextPaths
    compat.dgpTokenLifetime = config.compatDGPTokenTTL
    compat.exchangeProviders = config.compatExchangeProviders
    if config.compat.contains(.dgp) {
        if config.dgpPrivateKey == nil {
            logger.warning("dgp profile: no PRIVATE_KEY; using a key generated for this process (tokens end with it)")
        }
        compat.dgpSigner = try await RSATokenSigner(privatePEM: config.dgpPrivateKey, publicPEM: config.dgpPublicKey)
    }
    let router = try buildRouter(services, logger: logger, compat: compat)
    let base = config.issuer.hasSuffix("/") ? String(config.issuer.dropLast()) : config.issuer
    let key = try services.keys.snapshot.signingKey
    var app = Application(
        router: router,
        // Idle keep-alive connections close after 30 s (slow or abandoned clients cannot hoard sockets).
        server: .http1(configuration: .init(idleTimeout: .seconds(30))),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: nil),
        // The webhook worker runs only when hooks are configured (a service that returns ends the server).
        services: [MaintenanceService(services: services, logger: logger) as any Service]
            + (config.webhooks.isEmpty ? [] : [WebhookService(services: services, retryBase: config.webhookRetryBase, logger: logger)]),
        onServerRunning: { channel in
            logger.info(
                """
                Gatehouse is running
                  listening  http://\(config.host):\(channel.localAddress?.port ?? config.port)
                  issuer     \(config.issuer)
                  database   \(config.database)
                  discovery  \(base)\(ServerMetadata.Path.openIDConfiguration)
                  signing    \(key.algorithm.rawValue) key \(key.kid)
                """)
        },
        logger: logger)
    app.logger.logLevel = config.logLevel
    return app
}
