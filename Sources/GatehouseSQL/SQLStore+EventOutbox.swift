import Foundation
import GatehouseCore
import SQLKit

// MARK: EventOutbox

/// `EventOutbox` over SQL (table `webhook_outbox`).
extension SQLStore {
    public func enqueueEvents(_ records: [OutboxRecord]) async throws {
        guard !records.isEmpty else { return }
        try await backend.transaction { db in
            for r in records {
                try await db.raw(
                    """
                    INSERT INTO webhook_outbox (id, event, url, payload, attempts, next_attempt_at, created_at,
                        delivered_at, failed_at, last_error, trace_context)
                    VALUES (\(bind: r.id), \(bind: r.event), \(bind: r.url), \(bind: r.payload), \(bind: r.attempts),
                        \(bind: r.nextAttemptAt), \(bind: r.createdAt), \(bind: r.deliveredAt), \(bind: r.failedAt),
                        \(bind: r.lastError), \(bind: r.traceContext))
                    """
                ).run()
            }
        }
    }

    static func decodeOutbox(_ row: any SQLRow) throws -> OutboxRecord {
        OutboxRecord(
            id: try row.decode(column: "id", as: String.self), event: try row.decode(column: "event", as: String.self),
            url: try row.decode(column: "url", as: String.self), payload: try row.decode(column: "payload", as: String.self),
            attempts: try row.decode(column: "attempts", as: Int.self),
            nextAttemptAt: try row.decode(column: "next_attempt_at", as: Int64.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            deliveredAt: try row.decode(column: "delivered_at", as: Int64?.self),
            failedAt: try row.decode(column: "failed_at", as: Int64?.self),
            lastError: try row.decode(column: "last_error", as: String?.self),
            traceContext: try row.decode(column: "trace_context", as: String?.self))
    }

    public func claimDueEvents(at time: Int64, limit: Int, lease: Int64) async throws -> [OutboxRecord] {
        try await backend.transaction { db in
            let due = try await db.raw(
                """
                SELECT * FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL
                    AND next_attempt_at <= \(bind: time) ORDER BY next_attempt_at, created_at LIMIT \(bind: limit)
                """
            ).all().map(Self.decodeOutbox)
            var claimed: [OutboxRecord] = []
            for r in due {
                // Conditional: another instance may have claimed the row since the SELECT.
                let won = try await db.raw(
                    """
                    UPDATE webhook_outbox SET next_attempt_at = \(bind: time + lease)
                    WHERE id = \(bind: r.id) AND next_attempt_at = \(bind: r.nextAttemptAt) AND delivered_at IS NULL RETURNING id
                    """
                ).all()
                if !won.isEmpty { claimed.append(r) }
            }
            return claimed
        }
    }

    public func recordDelivery(_ r: OutboxRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                UPDATE webhook_outbox SET attempts = \(bind: r.attempts), next_attempt_at = \(bind: r.nextAttemptAt),
                    delivered_at = \(bind: r.deliveredAt), failed_at = \(bind: r.failedAt), last_error = \(bind: r.lastError)
                WHERE id = \(bind: r.id)
                """
            ).run()
        }
    }

    /// Delivered or abandoned events are kept `outbox_retention` for inspection, then deleted here.
    public func purgeFinishedEvents(before time: Int64) async throws -> Int {
        try await backend.transaction { db in
            try await db.raw(
                "DELETE FROM webhook_outbox WHERE COALESCE(delivered_at, failed_at) < \(bind: time) RETURNING id"
            ).all().count
        }
    }

    public func pendingEventCount() async throws -> Int {
        try await backend.read { db in
            try await db.raw(
                "SELECT COUNT(*) AS n FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
            ).first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    public func outbox(id: String) async throws -> OutboxRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM webhook_outbox WHERE id = \(bind: id)").first().map(Self.decodeOutbox)
        }
    }
}
