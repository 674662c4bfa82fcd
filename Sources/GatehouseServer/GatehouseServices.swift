import Foundation
import GatehouseCore
import Synchronization

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
    /// "Sign in with …" (the upstream OAuth client flow).
    public let upstreamSignIn: UpstreamSignIn
    public let webhooks: [WebhookConfig]
    /// Verifies our own access tokens (UserInfo, compatibility APIs).
    public let verifier: AccessTokenVerifier
    public let permissions: PermissionResolver
    /// The account pages' self-service (app registration, revoking apps).
    public let selfService: SelfService
    /// RFC 8693 token exchange (also used by dot's register-by-token).
    public let exchange: TokenExchangeGrant
    /// Whether the process is shutting down (`/readyz`).
    public let readiness = Readiness()
    /// What is counted (`/metrics`; `.none` when not exported).
    public let metrics: GatehouseMetrics
    /// Providers of the config file (read-only through administration).
    public let configuredProviderIDs: Set<String>
    /// The audit log (`audit_events`).
    public let audit: AuditLog
    /// Hashes passwords set through administration.
    public let passwords: PasswordHasher

    /// Administration (the admin API and console) acting for `actor`.
    public func administration(_ actor: AuditActor) -> Administration {
        Administration(storage: storage, clock: clock, passwords: passwords, audit: audit, actor: actor, settings: settings)
    }

    /// Every upstream provider: the config file's, then the database's (`gatehouse providers add`; an id in
    /// both: the config file wins).
    public func providers() async throws -> [ProviderRecord] { try await upstreamSignIn.allProviders() }

    /// Loads (on first start: creates) the signing keys, then wires the endpoints.
    public static func make(
        storage database: any GatehouseStorage, settings: ServerSettings, clock: Clock = .system,
        passwords: PasswordHasher = PasswordHasher(), providers: [ProviderRecord] = [], webhooks: [WebhookConfig] = [],
        upstreamHTTP: (any UpstreamHTTP)? = nil, metrics: GatehouseMetrics = .none
    ) async throws -> GatehouseServices {
        database.record(into: metrics)
        let storage: any GatehouseStorage =
            settings.cacheTTL > 0
            ? CachingStorage(database, ttl: settings.cacheTTL, clock: clock, metrics: metrics) : database
        let keys = KeyRing(retention: settings.keyRetention, clock: clock)
        try await keys.bootstrap(store: storage, algorithm: settings.signingAlgorithm)
        let events = Events(storage: storage, hooks: webhooks, clock: clock)
        let audit = AuditLog(store: storage, events: events, clock: clock)
        let context = TokenContext(
            storage: storage, settings: settings, clock: clock, keys: keys, passwords: passwords, events: events,
            metrics: metrics, audit: audit)
        let verifier = AccessTokenVerifier(keys: keys, issuer: settings.issuer, clock: clock)
        let hints = IDTokenHintVerifier(keys: keys, issuer: settings.issuer)
        let broker = Broker(storage: storage, events: events, clock: clock)
        let upstream = UpstreamClient(http: upstreamHTTP ?? UpstreamHTTPClient(), clock: clock)
        let permissions = PermissionResolver(storage: storage, http: upstreamHTTP ?? UpstreamHTTPClient())
        let configured = providers
        let allProviders: @Sendable () async throws -> [ProviderRecord] = {
            let stored = try await storage.listProviders().filter { p in !configured.contains { $0.id == p.id } }
            return configured + stored
        }
        let exchange = TokenExchangeGrant(providers: allProviders, upstream: upstream, broker: broker, verifier: verifier)
        return GatehouseServices(
            storage: storage, settings: settings, clock: clock, keys: keys,
            token: TokenEndpoint(
                context: context,
                grants: TokenEndpoint.defaultGrants + [
                    exchange,
                    // First-party grants (lego's token-auth and its refresh), run only by the profile's endpoints.
                    PasswordSessionGrant(refreshLimit: PasswordSessionGrant.defaultRefreshLimit, method: "lego-jwt"),
                    SessionTokenRefreshGrant(refreshLimit: PasswordSessionGrant.defaultRefreshLimit, verifier: verifier),
                ]),
            revocation: RevocationEndpoint(storage: storage, verifier: verifier, clock: clock, events: events),
            introspection: {
                var endpoint = IntrospectionEndpoint(storage: storage, verifier: verifier, clock: clock)
                endpoint.metrics = metrics
                return endpoint
            }(),
            authorization: AuthorizationEndpoint(context: context, hints: hints),
            signIn: SignIn(
                storage: storage, settings: settings, clock: clock, passwords: context.passwordAuthenticator, events: events),
            userinfo: UserInfoEndpoint(storage: storage, verifier: verifier, audience: settings.audience),
            logout: LogoutEndpoint(storage: storage, hints: hints), events: events, broker: broker, upstream: upstream,
            upstreamSignIn: {
                var signIn = UpstreamSignIn(
                    storage: storage, upstream: upstream, broker: broker, clock: clock, settings: settings,
                    providers: allProviders)
                signIn.metrics = metrics
                return signIn
            }(),
            webhooks: webhooks, verifier: verifier,
            permissions: permissions,
            selfService: SelfService(storage: storage, permissions: permissions, events: events, clock: clock, audit: audit),
            exchange: exchange, metrics: metrics, configuredProviderIDs: Set(providers.map(\.id)), audit: audit,
            passwords: passwords)
    }
}

extension GatehouseServices: CustomStringConvertible, CustomDebugStringConvertible {
    /// A name only: the services hold settings, hooks and keys that must never reach a log line through a
    /// default reflected description.
    public var description: String { "GatehouseServices" }
    public var debugDescription: String { description }
}

/// The process's part of readiness: set once shutdown has begun (SIGTERM), after which `/readyz` answers 503.
public final class Readiness: Sendable {
    private let draining = Atomic<Bool>(false)
    public init() {}
    public var isShuttingDown: Bool { draining.load(ordering: .relaxed) }
    public func beginShutdown() { draining.store(true, ordering: .relaxed) }
}
