import Foundation
import GatehouseCore
import Hummingbird
import Logging
import ServiceLifecycle
import Tracing

/// Delivers the webhook outbox: claims due events, POSTs each signed, records the outcome (retry with
/// backoff, or failed after 12 attempts). Polls every second; a restart picks up where it left off.
struct WebhookService: Service, CustomStringConvertible {
    /// What the service group logs when it starts this service: a name, never the configured hooks (their
    /// URLs and secrets) that the default description would print.
    var description: String { "WebhookService" }
    let services: GatehouseServices
    let retryBase: Int64
    let logger: Logger

    func run() async throws {
        let delivery = WebhookDelivery(hooks: services.webhooks, retryBase: retryBase)
        let http = UpstreamHTTPClient()
        // A graceful shutdown ends the wait between polls, never a batch: claimed events are delivered (each
        // attempt has its own timeout) and recorded before the worker stops.
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
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
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }

    func deliver(_ record: OutboxRecord, delivery: WebhookDelivery, http: UpstreamHTTPClient) async {
        let now = services.clock.nowSeconds
        var status: Int?
        var failure: String?
        // Tracing on: a span in the trace of the request that raised the event (its outgoing call carries
        // `traceparent` to the hook).
        // Only events raised in a recorded request have a trace context.
        let span = TraceContext.restore(record.traceContext).map {
            InstrumentationSystem.tracer.startSpan("webhook \(record.event)", context: $0, ofKind: .producer)
        }
        span?.attributes["gatehouse.event"] = record.event
        span?.attributes["gatehouse.attempt"] = record.attempts + 1
        defer { span?.end() }
        if let headers = delivery.headers(for: record, now: now) {
            do {
                status = try await ServiceContext.$current.withValue(span.map { TraceContext.recording($0.context) }) {
                    try await http.postJSON(record.url, body: record.payload, headers: headers).status
                }
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
            services.metrics.deliveryFailure(kind: "webhook")
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

