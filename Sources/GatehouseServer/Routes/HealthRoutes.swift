import Foundation
import GatehouseCore
import Hummingbird
import Logging
import Synchronization

/// Liveness and readiness for orchestrators and load balancers.
///
/// - `GET /healthz`: the process answers (no database call): `200 {"status":"ok"}`. A liveness probe.
/// - `GET /readyz`: `200 {"status":"ready","checks":{…}}` when every check passes, else `503` with
///   `"status":"not_ready"` and `failing` naming the checks that failed. The checks: `database` (a round trip
///   within 1 s), `migrations` (none pending for this build), `signing_keys` (a signing key is loaded) and
///   `shutdown` (no SIGTERM yet). A readiness probe: take the instance out of rotation while it fails.
struct HealthRoutes {
    let services: GatehouseServices
    /// How long the database may take to answer.
    var databaseDeadline: Duration = .seconds(1)

    func add(to router: Router<GatehouseRequestContext>) {
        router.get("/healthz") { _, _ in
            HTTP.raw(Array(#"{"status":"ok"}"#.utf8), noStore: true)
        }
        router.get("/readyz") { _, _ in await ready() }
    }

    func ready() async -> Response {
        var checks: [(String, String)] = []
        checks.append(("shutdown", services.readiness.isShuttingDown ? "shutting down" : "ok"))
        let storage = services.storage
        let database = await Self.within(databaseDeadline) { () async -> String in
            do {
                try await storage.ping()
            } catch {
                return "unreachable"
            }
            do {
                let pending = try await storage.pendingMigrations()
                return pending.isEmpty ? "ok" : "pending: " + pending.map(String.init).joined(separator: ",")
            } catch {
                return "migrations unreadable"
            }
        }
        switch database {
        case nil:
            checks.append(("database", "no answer within \(databaseDeadline)"))
            checks.append(("migrations", "unknown"))
        case "unreachable"?:
            checks.append(("database", "unreachable"))
            checks.append(("migrations", "unknown"))
        case let state?:
            checks.append(("database", "ok"))
            checks.append(("migrations", state))
        }
        let keys = (try? services.keys.snapshot.signingKey) != nil
        checks.append(("signing_keys", keys ? "ok" : "no signing key loaded"))
        let failing = checks.filter { $0.1 != "ok" }.map(\.0)
        struct Body: Encodable { let status: String; let checks: [String: String]; let failing: [String]? }
        let body = Body(
            status: failing.isEmpty ? "ready" : "not_ready", checks: Dictionary(uniqueKeysWithValues: checks),
            failing: failing.isEmpty ? nil : failing)
        return (try? HTTP.json(body, status: failing.isEmpty ? .ok : .serviceUnavailable))
            ?? Response(status: .serviceUnavailable)
    }

    /// `operation`'s result, or nil when it has not finished within `deadline`. The operation is not
    /// awaited past the deadline (a hung connection cannot hold the probe).
    static func within<T: Sendable>(_ deadline: Duration, _ operation: @escaping @Sendable () async -> T) async -> T? {
        let race = Race<T>()
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            race.start(continuation)
            let work = Task { race.finish(await operation()) }
            race.setTimer(
                Task {
                    guard (try? await Task.sleep(for: deadline)) != nil else { return }
                    work.cancel()
                    race.finish(nil)
                })
        }
    }
}

/// The first of two outcomes (the operation's value, or nil at the deadline) resumes the waiting probe.
private final class Race<T: Sendable>: Sendable {
    private let state = Mutex<(done: Bool, continuation: CheckedContinuation<T?, Never>?, timer: Task<Void, Never>?)>(
        (false, nil, nil))

    func start(_ continuation: CheckedContinuation<T?, Never>) { state.withLock { $0.continuation = continuation } }

    func setTimer(_ timer: Task<Void, Never>) {
        let done = state.withLock { s -> Bool in
            s.timer = timer
            return s.done
        }
        if done { timer.cancel() }
    }

    func finish(_ value: T?) {
        let (continuation, timer) = state.withLock { s -> (CheckedContinuation<T?, Never>?, Task<Void, Never>?) in
            guard !s.done else { return (nil, nil) }
            s.done = true
            return (s.continuation, s.timer)
        }
        timer?.cancel()
        continuation?.resume(returning: value)
    }
}
