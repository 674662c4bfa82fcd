import CoreMetrics
import Synchronization

/// Gatehouse's own metrics (docs/operations.md#metrics), recorded through swift-metrics with an explicit
/// factory: the server passes one backed by its Prometheus registry; `.none` records nothing.
///
/// No label carries a client-supplied value except the registered client id (bounded by the clients
/// table); the others are values Gatehouse chose (grant types it supports, OAuth error codes, route
/// templates, configured provider ids).
public final class GatehouseMetrics: Sendable {
    let factory: any MetricsFactory
    private let counters = MetricCache<Counter>()
    private let timers = MetricCache<Timer>()

    /// Tokens issued and sign-ins for the admin dashboard (always counted, exported or not).
    public let activity: ActivityCounter

    public init(factory: any MetricsFactory, activity: ActivityCounter = ActivityCounter()) {
        self.factory = factory
        self.activity = activity
    }

    /// Records nothing.
    public static let none = GatehouseMetrics(factory: NOOPMetricsHandler.instance)

    /// Exports nothing, but counts the dashboard's activity (a server with `metrics` off).
    public static func unexported() -> GatehouseMetrics { GatehouseMetrics(factory: NOOPMetricsHandler.instance) }

    /// A counter, made once per label set (the factory's lookup is not on every increment).
    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
        counters.get(label, dimensions) { Counter(label: label, dimensions: dimensions, factory: factory) }
    }

    func timer(_ label: String, _ dimensions: [(String, String)]) -> Timer {
        timers.get(label, dimensions) { Timer(label: label, dimensions: dimensions, factory: factory) }
    }

    /// Methods that get their own label value; anything else is `other`.
    static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    /// An answered HTTP request: `route` is the route template (or `unmatched`).
    public func httpRequest(route: String, method: String, status: Int, duration: Duration) {
        let dimensions = [
            ("route", route), ("method", Self.methods.contains(method) ? method : "other"),
            ("status_class", "\(min(max(status / 100, 1), 5))xx"),
        ]
        counter("gatehouse_http_requests_total", dimensions).increment()
        timer("gatehouse_http_request_duration_seconds", dimensions).recordNanoseconds(Self.nanoseconds(duration))
    }

    public func tokenIssued(grantType: String, clientID: String) {
        counter("gatehouse_tokens_issued_total", [("grant_type", grantType), ("client_id", clientID)]).increment()
        activity.count(ActivityCounter.tokensIssued)
    }

    /// An RFC 6749 §5.2 error answered by the token endpoint (`error` is the code; `grant_type` the grant
    /// asked for, when Gatehouse has it, else `unknown`).
    public func tokenError(code: String, grantType: String) {
        counter("gatehouse_token_errors_total", [("error", code), ("grant_type", grantType)]).increment()
    }

    public enum SignInOutcome: String, Sendable { case success, failure, throttled }

    /// A sign-in: `method` is `password` or `upstream`, `provider` the configured provider (or `none`).
    public func signIn(method: String, outcome: SignInOutcome) {
        counter("gatehouse_sign_ins_total", [("method", method), ("outcome", outcome.rawValue)]).increment()
        switch outcome {
        case .success: activity.count(ActivityCounter.signIns)
        case .failure, .throttled: activity.count(ActivityCounter.signInFailures)
        }
    }

    /// An account (or a client address) reached its failure limit and is refused until the window ends.
    public func lockout(kind: String) { counter("gatehouse_lockouts_total", [("kind", kind)]).increment() }

    /// A consumed refresh token came back outside the grace period: its family was revoked.
    public func refreshTokenReuse() { counter("gatehouse_refresh_token_reuse_total").increment() }

    /// An introspection answered (`active` true or false).
    public func introspection(active: Bool) {
        counter("gatehouse_introspections_total", [("outcome", active ? "active" : "inactive")]).increment()
    }

    /// A lookup in one of `CachingStorage`'s caches (`clients`, `revocations`).
    public func cacheLookup(_ cache: String, hit: Bool) {
        counter("gatehouse_cache_lookups_total", [("cache", cache), ("result", hit ? "hit" : "miss")]).increment()
    }

    /// One database call (`operation`: `read`, `transaction` or `snapshot`): the time it held its connection.
    public func databaseCall(operation: String, duration: Duration) {
        timer("gatehouse_db_query_duration_seconds", [("operation", operation)]).recordNanoseconds(Self.nanoseconds(duration))
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// A failed delivery attempt from the outbox (`kind`: `webhook`).
    public func deliveryFailure(kind: String) {
        counter("gatehouse_outbox_delivery_failures_total", [("kind", kind)]).increment()
    }
}

/// Metric handles by label and label values, each made once.
private final class MetricCache<Metric: AnyObject & Sendable>: Sendable {
    private struct Key: Hashable {
        let label: String
        let dimensions: [String]
    }
    private let table = Mutex<[Key: Metric]>([:])

    func get(_ label: String, _ dimensions: [(String, String)], make: () -> Metric) -> Metric {
        let key = Key(label: label, dimensions: dimensions.flatMap { [$0.0, $0.1] })
        if let m = table.withLock({ $0[key] }) { return m }
        let made = make()
        return table.withLock { table in
            if let m = table[key] { return m }
            table[key] = made
            return made
        }
    }
}
