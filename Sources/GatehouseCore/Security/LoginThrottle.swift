import Synchronization

/// A failure counter as stored: how many failures since `windowStart`, and when the last one was.
public struct FailureCount: Sendable, Equatable {
    public var failures: Int
    public var windowStart: Int64
    public var lastFailureAt: Int64
    public init(failures: Int, windowStart: Int64, lastFailureAt: Int64) {
        self.failures = failures
        self.windowStart = windowStart
        self.lastFailureAt = lastFailureAt
    }
}

/// Failure counters shared by every instance on one database: one row per key, kept until its window ends.
public protocol FailureCounterStore: Sendable {
    /// Adds one failure to `key` atomically (a new window of `window` seconds starts when the current one
    /// has ended at `time`) and returns the counter after the addition.
    func recordFailure(key: String, at time: Int64, window: Int64) async throws -> FailureCount
    /// The counter of `key` while its window runs at `time`; `nil` when there is none.
    func failureCount(key: String, at time: Int64) async throws -> FailureCount?
    func clearFailures(key: String) async throws
    /// Deletes counters whose window ended before `time`; returns how many.
    func purgeFailures(before time: Int64) async throws -> Int
}

/// Throttling of password guesses (login page, password grant, lego token-auth), in three parts:
///
/// - **Accounts** (existing users only): the first half of `maxFailures` failures in a window are free;
///   after each further one the next attempt must wait 1, 2, 4 … (at most 30) seconds; after `maxFailures`
///   the account is locked until the window ends. An attempt is counted *before* the slow password check,
///   atomically in the database, and the count is cleared on success, so parallel guesses cannot overshoot
///   and every instance sees the same count.
/// - **Unknown usernames** get the same answers, from counters of their own (`decoy:` keys, never an
///   account's), in the same database: lockout and delay behave alike for existing and unknown names on
///   every instance and across restarts, so they do not tell which accounts exist; and a name that gets an
///   account later starts with a clean count. A flood of made-up names is bounded by the address limit
///   (each address gets 5 × `maxFailures` failures a window), and the rows expire with their window.
/// - **Client addresses** (behind `trusted_proxies`, the forwarded address): failures from one address are
///   slowed the same way and refused for the rest of the window beyond `5 × maxFailures`; an address limit
///   never locks an account, so guesses from elsewhere cannot lock a person out.
///
/// The database is the source of truth (rows keyed by a hash of the key); memory keeps only decisions that
/// cannot change before they expire (a lockout until its window ends), bounded, evicting the
/// soonest-expiring entries when full — never refusing a key because the table is full.
public final class LoginThrottle: Sendable {
    public let maxFailures: Int
    public let addressMaxFailures: Int
    public let window: Int64
    let store: any FailureCounterStore
    let clock: Clock
    let metrics: GatehouseMetrics
    /// Where a lockout is recorded, once when it starts (`signin.locked_out`).
    let audit = Mutex<AuditLog>(.none)
    /// Keys known to be refused until the given time.
    private let refusedUntil = Mutex<[String: Int64]>([:])
    static let cacheCapacity = 50_000

    public init(
        store: any FailureCounterStore, maxFailures: Int, window: Int64, clock: Clock, metrics: GatehouseMetrics = .none
    ) {
        self.store = store
        self.metrics = metrics
        self.maxFailures = max(1, maxFailures)
        self.addressMaxFailures = max(1, maxFailures) * 5
        self.window = window
        self.clock = clock
    }

    /// Why an attempt may not go ahead.
    public enum Refusal: Error, Sendable, Equatable {
        /// Too many failures for the account or from the address; `retryAfter` seconds from now.
        case throttled(retryAfter: Int64)
    }

    /// Seconds the next attempt must wait after `failures` failures (0 while free), given the limit.
    static func delay(afterFailures failures: Int, limit: Int) -> Int64 {
        let free = max(1, limit / 2)
        guard failures > free else { return 0 }
        let exponent = min(failures - free - 1, 5)
        return min(Int64(1) << Int64(exponent), 30)
    }

    /// How long a key with `count` must still wait at `now` (0: it may try).
    func wait(_ count: FailureCount?, limit: Int, now: Int64) -> Int64 {
        guard let count, now < count.windowStart + window else { return 0 }
        if count.failures >= limit { return count.windowStart + window - now }
        let until = count.lastFailureAt + Self.delay(afterFailures: count.failures, limit: limit)
        return max(0, until - now)
    }

    public static func accountKey(_ username: String) -> String { "account:" + username.lowercased() }
    /// The counter of a username no account has.
    public static func decoyKey(_ username: String) -> String { "decoy:" + username.lowercased() }

    /// Call before checking a password. `accountExists`: whether `username` names a user (looked up first;
    /// the lookup is fast, the bcrypt after it is not). Throws `Refusal` when the attempt may not go ahead;
    /// otherwise the account's attempt is already counted.
    public func admit(username: String, accountExists: Bool, addressKey: String) async throws {
        let now = clock.nowSeconds
        try refuseIfCached(addressKey, now: now)
        let addressWait = wait(try await store.failureCount(key: addressKey, at: now), limit: addressMaxFailures, now: now)
        if addressWait > 0 { throw refuse(addressKey, wait: addressWait, lockedOut: false, now: now) }

        // The same steps for an unknown name, on its decoy counter: the same answers, the same work.
        let key = accountExists ? Self.accountKey(username) : Self.decoyKey(username)
        try refuseIfCached(key, now: now)
        let w = wait(try await store.failureCount(key: key, at: now), limit: maxFailures, now: now)
        if w > 0 { throw refuse(key, wait: w, lockedOut: false, now: now) }
        // Counted now, before the slow check: a parallel attempt that takes the last slot refuses this one.
        let counted = try await store.recordFailure(key: key, at: now, window: window)
        if counted.failures > maxFailures {
            // The first refusal of the window is the lockout (later attempts are refused by it).
            if counted.failures == maxFailures + 1 {
                metrics.lockout(kind: "account")
                // Once per lockout, not per refused attempt (a flood of guesses must not flood the audit log).
                if accountExists {
                    await audit.withLock { $0 }.note(
                        AuditAction.lockout, actor: .anonymous, detail: ["kind": "account", "username": username])
                }
            }
            throw refuse(key, wait: counted.windowStart + window - now, lockedOut: true, now: now)
        }
    }

    /// The password was right: the account's count starts again. (The address keeps its failures: many
    /// people behind one NAT each sign in, and an attacker cannot wash their failures with one good login.)
    public func succeeded(username: String) async throws {
        let key = Self.accountKey(username)
        try await store.clearFailures(key: key)
        _ = refusedUntil.withLock { $0.removeValue(forKey: key) }
    }

    /// The password was wrong: counts against the address (the account's attempt was counted by `admit`).
    public func failed(addressKey: String) async throws {
        let now = clock.nowSeconds
        let count = try await store.recordFailure(key: addressKey, at: now, window: window)
        if count.failures >= addressMaxFailures {
            if count.failures == addressMaxFailures {
                metrics.lockout(kind: "address")
                await audit.withLock { $0 }.note(AuditAction.lockout, actor: .anonymous, detail: ["kind": "address"])
            }
            remember(addressKey, until: count.windowStart + window)
        }
    }

    private func refuseIfCached(_ key: String, now: Int64) throws {
        if let until = refusedUntil.withLock({ $0[key] }) {
            if until > now { throw Refusal.throttled(retryAfter: until - now) }
            _ = refusedUntil.withLock { $0.removeValue(forKey: key) }
        }
    }

    private func refuse(_ key: String, wait: Int64, lockedOut: Bool, now: Int64) -> Refusal {
        // Only a lockout is certain to last (a success elsewhere clears the account: see `succeeded`).
        if lockedOut { remember(key, until: now + wait) }
        return .throttled(retryAfter: max(1, wait))
    }

    private func remember(_ key: String, until: Int64) {
        let now = clock.nowSeconds
        refusedUntil.withLock { table in
            if table[key] == nil, table.count >= Self.cacheCapacity {
                table = table.filter { $0.value > now }
                if table.count >= Self.cacheCapacity {
                    // Still full: drop the half that expires soonest (they are in the database anyway).
                    let keep = table.sorted { $0.value > $1.value }.prefix(Self.cacheCapacity / 2)
                    table = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
                }
            }
            table[key] = until
        }
    }

}
