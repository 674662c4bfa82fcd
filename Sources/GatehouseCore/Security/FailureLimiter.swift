import Synchronization

/// Counts failed attempts per key (a username, a client address) and locks the key out for a while after
/// too many. In memory, per instance: a restart forgets it, which only helps an attacker by one window.
public final class FailureLimiter: Sendable {
    private struct Entry { var failures: Int; var windowStart: Int64 }
    private let table = Mutex<[String: Entry]>([:])
    let maxFailures: Int
    let window: Int64
    let clock: Clock

    public init(maxFailures: Int, window: Int64, clock: Clock) {
        self.maxFailures = maxFailures
        self.window = window
        self.clock = clock
    }

    public func isLocked(_ key: String) -> Bool {
        let now = clock.nowSeconds
        return table.withLock { t in
            guard let e = t[key] else { return false }
            if now - e.windowStart >= window { t[key] = nil; return false }
            return e.failures >= maxFailures
        }
    }

    /// The most keys tracked at once. Expired entries are pruned first; when the table is still full,
    /// new keys are refused rather than old ones evicted (evicting would let a flood wipe lockouts).
    static let capacity = 100_000

    /// Counts an attempt and says whether it may go ahead, in one step: `false` when the key is locked
    /// (or the table is full). Count before the (slow) check and `reset` on success, so parallel
    /// attempts cannot overshoot.
    public func admit(_ key: String) -> Bool {
        let now = clock.nowSeconds
        return table.withLock { t in
            if t[key] == nil, t.count >= Self.capacity {
                t = t.filter { now - $0.value.windowStart < window }
                if t.count >= Self.capacity { return false }
            }
            var e = t[key] ?? Entry(failures: 0, windowStart: now)
            if now - e.windowStart >= window { e = Entry(failures: 0, windowStart: now) }
            guard e.failures < maxFailures else { return false }
            e.failures += 1
            t[key] = e
            return true
        }
    }

    public func reset(_ key: String) { table.withLock { _ = $0.removeValue(forKey: key) } }

    /// Takes back one counted attempt (it turned out not to be a failure).
    public func forgive(_ key: String) {
        table.withLock { t in
            guard var e = t[key] else { return }
            e.failures = max(0, e.failures - 1)
            t[key] = e
        }
    }
}
