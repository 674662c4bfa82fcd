import Foundation
import GatehouseCore
import Hummingbird
import Logging
import ServiceLifecycle

/// Periodic upkeep: re-reads signing keys (so `keys rotate` reaches a running server), drops revoked keys
/// within a second, and deletes expired rows (`purge_interval`) and old outbox events (`outbox_retention`).
struct MaintenanceService: Service, CustomStringConvertible {
    /// What the service group logs when it starts this service: a name, never the services it holds.
    var description: String { "MaintenanceService" }
    let services: GatehouseServices
    /// Seconds between purges of expired rows (`purge_interval`).
    let purgeInterval: Int64
    /// Seconds a delivered or abandoned outbox event is kept (`outbox_retention`).
    let outboxRetention: Int64
    /// Seconds an audit event is kept (`audit_retention`).
    let auditRetention: Int64
    let logger: Logger
    /// Seconds between flushes of the dashboard's activity counters to the database.
    static let activityFlushInterval: Int64 = 2

    /// Adds what this instance counted (tokens issued, sign-ins) to the shared counters; on failure the
    /// counts are kept for the next flush.
    func flushActivity() async {
        let taken = services.metrics.activity.drain()
        guard !taken.isEmpty else { return }
        do { try await services.storage.addActivity(taken) } catch {
            services.metrics.activity.restore(taken)
            logger.warning("storing activity counters failed", metadata: ["detail": .string("\(error)")])
        }
    }

    func run() async throws {
        let keyReloadInterval = services.settings.keyReloadInterval
        // A graceful shutdown ends the wait between ticks, never a tick's work (a purge finishes).
        var sinceReload: Int64 = 0
        var sincePurge: Int64 = 0
        var sinceFlush: Int64 = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // Every second: has a key been revoked (`keys revoke`)? Then reload at once.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            if Task.isCancelled || Task.isShuttingDownGracefully { break }
            sinceReload += 1
            sincePurge += 1
            sinceFlush += 1
            if sinceFlush >= Self.activityFlushInterval {
                sinceFlush = 0
                await flushActivity()
            }
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
            if sincePurge >= purgeInterval {
                sincePurge = 0
                let now = services.clock.nowSeconds
                var removed = (try? await services.storage.purgeExpired(before: now)) ?? 0
                removed += (try? await services.storage.purgeFinishedEvents(before: now - outboxRetention)) ?? 0
                removed += (try? await services.storage.purgeAuditEvents(before: now - auditRetention)) ?? 0
                logger.debug("purged expired rows", metadata: ["rows": .stringConvertible(removed)])
            }
        }
        // What was counted since the last flush is not lost at shutdown.
        await flushActivity()
    }
}

