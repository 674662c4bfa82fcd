import Foundation
import Logging
import ServiceLifecycle

/// The first step of a graceful shutdown (SIGTERM or SIGINT): `/readyz` turns 503 at once, and requests are
/// still served for `shutdown_grace` seconds, so a load balancer that polls readiness stops sending new ones
/// before the listener closes. When this service returns, the service group shuts the HTTP server down
/// (new connections refused, in-flight requests finished), then the background workers (each after its
/// current item). Further signals are ignored; the whole shutdown is bounded by `shutdown_grace` + 30 s
/// (`GatehouseApplication.run`), after which what is still open is cancelled.
struct DrainService: Service, CustomStringConvertible {
    var description: String { "DrainService" }
    let readiness: Readiness
    let grace: Int64
    let logger: Logger

    func run() async throws {
        // Returns when graceful shutdown begins; throws when the group is cancelled instead.
        do { try await gracefulShutdown() } catch { return }
        readiness.beginShutdown()
        logger.notice("shutting down: /readyz answers 503; serving for \(grace)s, then closing")
        try? await Task.sleep(for: .seconds(grace))
    }
}
