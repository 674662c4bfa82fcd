import Foundation
import GatehouseCore
import SQLKit

// MARK: FailureCounterStore

/// `FailureCounterStore` over SQL (table `failure_counters`).
extension SQLStore {
    public func recordFailure(key: String, at time: Int64, window: Int64) async throws -> FailureCount {
        let hashed = Secrets.hash(key)
        return try await backend.transaction { db in
            // One statement: the new window, or one more failure in the running one (SET reads the old row).
            let row = try await db.raw(
                """
                INSERT INTO failure_counters (key, failures, window_start, last_failure_at, expires_at)
                VALUES (\(bind: hashed), 1, \(bind: time), \(bind: time), \(bind: time + window))
                ON CONFLICT (key) DO UPDATE SET
                    failures = CASE WHEN failure_counters.expires_at <= \(bind: time) THEN 1 ELSE failure_counters.failures + 1 END,
                    window_start = CASE WHEN failure_counters.expires_at <= \(bind: time) THEN \(bind: time)
                        ELSE failure_counters.window_start END,
                    expires_at = CASE WHEN failure_counters.expires_at <= \(bind: time) THEN \(bind: time + window)
                        ELSE failure_counters.expires_at END,
                    last_failure_at = \(bind: time)
                RETURNING failures, window_start, last_failure_at
                """
            ).first()
            guard let row else { throw StorageError.notFound("failure counter") }
            return try Self.decodeFailureCount(row)
        }
    }

    static func decodeFailureCount(_ row: any SQLRow) throws -> FailureCount {
        FailureCount(
            failures: try row.decode(column: "failures", as: Int.self),
            windowStart: try row.decode(column: "window_start", as: Int64.self),
            lastFailureAt: try row.decode(column: "last_failure_at", as: Int64.self))
    }

    public func failureCount(key: String, at time: Int64) async throws -> FailureCount? {
        let hashed = Secrets.hash(key)
        return try await backend.read { db in
            try await db.raw(
                "SELECT * FROM failure_counters WHERE key = \(bind: hashed) AND expires_at > \(bind: time)"
            ).first().map(Self.decodeFailureCount)
        }
    }

    public func clearFailures(key: String) async throws {
        let hashed = Secrets.hash(key)
        try await backend.transaction { db in
            try await db.raw("DELETE FROM failure_counters WHERE key = \(bind: hashed)").run()
        }
    }

    public func purgeFailures(before time: Int64) async throws -> Int {
        try await backend.transaction { db in
            try await db.raw("DELETE FROM failure_counters WHERE expires_at <= \(bind: time) RETURNING key").all().count
        }
    }
}
