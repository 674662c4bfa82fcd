import Foundation
import GatehouseCore
import Hummingbird
import Metrics
import Prometheus

/// The process's Prometheus registry (`GET /metrics`, docs/operations.md#metrics): what the core and the
/// request middleware record through `gatehouse` (swift-metrics over swift-prometheus), plus what is read
/// only when scraped — process figures, the signing key's age, the outbox's depth.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// What the core and the middleware record into.
    public let gatehouse: GatehouseMetrics
    let startTime: Double

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Gatehouse answers most requests in well under a millisecond: finer buckets at the bottom.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        self.registry = registry
        self.gatehouse = GatehouseMetrics(factory: factory)
        self.startTime = ProcessStats.startTime ?? Date().timeIntervalSince1970
    }

    /// The Prometheus text exposition, after reading the scrape-time values.
    func scrape(_ services: GatehouseServices) async -> [UInt8] {
        let process = ProcessStats.read()
        if let rss = process.residentBytes {
            registry.makeGauge(name: "process_resident_memory_bytes", labels: []).set(Double(rss))
        }
        if let fds = process.openFileDescriptors {
            registry.makeGauge(name: "process_open_fds", labels: []).set(Double(fds))
        }
        registry.makeGauge(name: "process_start_time_seconds", labels: []).set(startTime)
        if let since = (try? services.keys.snapshot)?.signingSince {
            registry.makeGauge(name: "gatehouse_signing_key_age_seconds", labels: [])
                .set(Double(max(0, services.clock.nowSeconds - since)))
        }
        let use = services.storage.connectionUse()
        registry.makeGauge(name: "gatehouse_db_connections_in_use", labels: []).set(Double(use.inUse))
        registry.makeGauge(name: "gatehouse_db_waiting", labels: []).set(Double(use.waiting))
        registry.makeGauge(name: "gatehouse_db_connections_max", labels: []).set(Double(use.capacity))
        if let pending = try? await services.storage.pendingEventCount() {
            registry.makeGauge(name: "gatehouse_outbox_pending", labels: [("kind", "webhook")]).set(Double(pending))
        }
        return registry.emitToBuffer()
    }

    /// `GET /metrics` on `router`. With `token`, only `Authorization: Bearer <token>` is answered (compared
    /// in constant time); anything else is 401.
    func addRoute<Context: RequestContext>(to router: Router<Context>, services: GatehouseServices, token: String?) {
        router.get("/metrics") { request, _ -> Response in
            if let token {
                let given = HTTP.bearerToken(request) ?? ""
                // Hashes first: equal lengths, so the comparison's time says nothing about the token's length.
                guard Secrets.constantTimeEquals(Secrets.hash(given), Secrets.hash(token)) else {
                    return Response(
                        status: .unauthorized,
                        headers: [.wwwAuthenticate: #"Bearer realm="gatehouse-metrics""#, .cacheControl: "no-store"])
                }
            }
            let body = await self.scrape(services)
            return HTTP.raw(body, noStore: true, contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }
}

/// Process figures from /proc (Linux); nil where unavailable.
enum ProcessStats {
    struct Figures {
        var residentBytes: Int?
        var openFileDescriptors: Int?
    }

    static func read() -> Figures {
        var figures = Figures()
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { figures.residentBytes = pages * pageSize }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            figures.openFileDescriptors = fds.count
        }
        return figures
    }

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Seconds since the epoch at which this process started: /proc/self/stat's `starttime` (clock ticks
    /// after boot) plus /proc/stat's `btime`.
    static var startTime: Double? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name start at field 3; `starttime` is field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]),
            let procStat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = procStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
            let boot = Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        else { return nil }
        return boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
