import Foundation
import GatehouseCore
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// What the application uses besides its configuration and storage; tests replace them (a settable clock,
/// a cheap password hash, a fake upstream).
public struct GatehouseDependencies: Sendable {
    public var clock: Clock = .system
    public var passwords = PasswordHasher()
    /// The HTTP client for upstream providers and webhooks (nil: the real one).
    public var upstreamHTTP: (any UpstreamHTTP)?
    /// Run the background services (key reload, purge, webhook delivery). Router tests turn them off: they
    /// drive those steps themselves, with a settable clock.
    public var backgroundServices = true
    public init(
        clock: Clock = .system, passwords: PasswordHasher = PasswordHasher(), upstreamHTTP: (any UpstreamHTTP)? = nil,
        backgroundServices: Bool = true
    ) {
        self.clock = clock
        self.passwords = passwords
        self.upstreamHTTP = upstreamHTTP
        self.backgroundServices = backgroundServices
    }
}

/// A built Gatehouse: the Hummingbird application and the services behind its routes.
public struct GatehouseApplication: Sendable {
    public let services: GatehouseServices
    public let application: Application<RouterResponder<GatehouseRequestContext>>
    /// The listener of `metrics_port` (nil: `/metrics` is on the main port).
    let metricsServer: Application<RouterResponder<GatehouseRequestContext>>?
    /// `shutdown_grace`, in seconds.
    let shutdownGrace: Int64
    /// How long requests still in flight after the drain may take before they are cut.
    static let inFlightLimit: Duration = .seconds(30)
    let logger: Logger

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully: `/readyz` answers 503 at once, requests are
    /// served for `shutdown_grace` more seconds (`DrainService`), then the listener closes, in-flight
    /// requests finish and the background workers stop after their current item; then it returns.
    ///
    /// `observability` (the trace exporter) starts first and stops last, after the last span ended.
    public func run(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint], observability: [any Service] = []) async throws {
        // A service group shuts its services down in reverse order, each after the previous one returned: the
        // drain first, then the application (its server, then its workers).
        var configuration = ServiceGroupConfiguration(
            services: observability.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
                + (metricsServer.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0)] } ?? []) + [
                .init(service: application),
                .init(service: DrainService(readiness: services.readiness, grace: shutdownGrace, logger: logger)),
            ],
            gracefulShutdownSignals: gracefulShutdownSignals, logger: logger)
        // A client that keeps a request open (a slow body) cannot hold the shutdown: after the drain and
        // `Self.inFlightLimit` more, what is still open is cancelled.
        configuration.maximumGracefulShutdownDuration = .seconds(shutdownGrace) + Self.inFlightLimit
        try await ServiceGroup(configuration: configuration).run()
    }
}

/// The one way to build the server, for `gatehouse serve` and for the tests (Hummingbird's template shape).
/// `storage` is ready (migrated) and owned by the caller, who closes it after `runService()` returns or
/// throws. The SQL wiring lives in the `gatehouse` executable; this module knows only the storage protocols.
public func buildApplication(
    _ config: GatehouseConfiguration, storage: any GatehouseStorage, logger: Logger,
    dependencies: GatehouseDependencies = GatehouseDependencies()
) async throws -> GatehouseApplication {
    // One registry per application (tests build many in one process; none touches a global).
    let metrics = ServerMetrics()
    let services = try await GatehouseServices.make(
        storage: storage, settings: config.settings, clock: dependencies.clock, passwords: dependencies.passwords,
        providers: config.providers, webhooks: config.webhooks, upstreamHTTP: dependencies.upstreamHTTP,
        metrics: config.metricsEnabled ? metrics.gatehouse : .unexported())
    for profile in config.compat.profiles { try await profile.prepare(services) }
    var compat = config.compat
    if compat.profiles.contains(.dgp), compat.dgpSigner == nil {
        if compat.dgpPrivateKey == nil {
            logger.warning("dgp profile: no PRIVATE_KEY; using a key generated for this process (tokens end with it)")
        }
        compat.dgpSigner = try await RSATokenSigner(privatePEM: compat.dgpPrivateKey, publicPEM: compat.dgpPublicKey)
    }
    let router = try buildRouter(
        services, logger: logger, compat: compat, accessLog: config.accessLog,
        tracing: config.otelEndpoint == nil ? nil : TraceSampler(ratio: config.otelSamplingRatio))
    // `GET /metrics`: on the main port, or alone on `metrics_port` (none with `metrics` off).
    var metricsServer: Application<RouterResponder<GatehouseRequestContext>>?
    if !config.metricsEnabled {
        // Nothing recorded, nothing served.
    } else if config.metricsPort == 0 {
        metrics.addRoute(to: router, services: services, token: config.metricsToken)
    } else {
        // The same request ids, access log, headers and problem+json refusals as the main port.
        let metricsRouter = Router(context: GatehouseRequestContext.self)
        metricsRouter.add(
            middleware: RequestLogMiddleware(
                accessLog: config.accessLog, settings: services.settings, metrics: services.metrics, logger: logger))
        metricsRouter.add(middleware: SecurityHeadersMiddleware())
        metrics.addRoute(to: metricsRouter, services: services, token: config.metricsToken)
        metricsServer = Application(
            router: metricsRouter, server: .http1(configuration: .init(idleTimeout: .seconds(30))),
            configuration: .init(address: .hostname(config.host, port: config.metricsPort), serverName: nil),
            onServerRunning: { channel in
                logger.info("metrics on http://\(config.host):\(channel.localAddress?.port ?? config.metricsPort)/metrics")
            },
            logger: logger)
    }
    let base = config.issuer.hasSuffix("/") ? String(config.issuer.dropLast()) : config.issuer
    let key = try services.keys.snapshot.signingKey
    let maintenance = MaintenanceService(
        services: services, purgeInterval: config.purgeInterval, outboxRetention: config.outboxRetention,
        auditRetention: config.auditRetention, logger: logger)
    var app = Application(
        router: router,
        // Idle keep-alive connections close after 30 s (slow or abandoned clients cannot hoard sockets).
        server: .http1(configuration: .init(idleTimeout: .seconds(30))),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: nil),
        // The webhook worker runs only when hooks are configured (a service that returns ends the server).
        services: !dependencies.backgroundServices ? []
            : [maintenance as any Service]
                + (config.webhooks.isEmpty
                    ? [] : [WebhookService(services: services, retryBase: config.webhookRetryBase, logger: logger)]),
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
    return GatehouseApplication(
        services: services, application: app, metricsServer: metricsServer, shutdownGrace: config.shutdownGrace,
        logger: logger)
}
