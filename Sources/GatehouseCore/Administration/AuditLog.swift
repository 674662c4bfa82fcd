import Foundation
import Synchronization

/// The request an audited action happens in: set by the server's request middleware for the whole request,
/// so every layer that records an audit event knows the request id and client address without passing them.
public enum AuditRequest {
    public struct Info: Sendable {
        public var requestID: String?
        public var clientAddress: String?
        public init(requestID: String?, clientAddress: String?) {
            self.requestID = requestID
            self.clientAddress = clientAddress
        }
    }
    @TaskLocal public static var current: Info?
}

/// Who did something: `user:<id>`, `client:<id>`, `cli`, or `anonymous`.
public struct AuditActor: Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ value: String) { description = value }
    public static let cli = AuditActor("cli")
    public static let anonymous = AuditActor("anonymous")
    public static func user(_ id: String) -> AuditActor { AuditActor("user:" + id) }
    public static func client(_ id: String) -> AuditActor { AuditActor("client:" + id) }
}

/// The audit log: every change made through the admin API, the console or the CLI, and every security event,
/// one row in `audit_events`, and (for hooks that list `audit.*`) one webhook event `audit.<action>`.
/// Details never hold a secret or a password: callers pass identifiers and names only.
public struct AuditLog: Sendable {
    let store: (any AuditStore)?
    /// Where `audit.*` webhook events go (and administration's lifecycle events).
    public let events: Events
    let clock: Clock

    public init(store: any AuditStore, events: Events, clock: Clock) {
        self.store = store
        self.events = events
        self.clock = clock
    }

    private init() {
        store = nil
        events = .none
        clock = .system
    }

    /// Records nothing (tests of parts that do not audit).
    public static let none = AuditLog()

    /// Records one event; throws when it cannot be stored (an administrative change reports that).
    public func record(
        _ action: String, actor: AuditActor, target: String? = nil, detail: [String: String] = [:],
        address: String? = nil
    ) async throws {
        guard let store, let event = event(action, actor: actor, target: target, detail: detail, address: address) else {
            return
        }
        try await store.insertAuditEvents([event])
        await publish(event)
    }

    /// The event to store (with a change, in its transaction); `nil` when this log records nothing.
    public func event(
        _ action: String, actor: AuditActor, target: String? = nil, detail: [String: String] = [:], address: String? = nil
    ) -> AuditEventRecord? {
        guard store != nil else { return nil }
        let request = AuditRequest.current
        let millis = Int64(clock.now.timeIntervalSince1970 * 1000)
        return AuditEventRecord(
            id: AuditEventRecord.newID(millis: Self.orderedMillis(millis)), createdAt: millis / 1000, actor: actor.description,
            action: action, target: target, clientAddress: address ?? request?.clientAddress,
            requestID: request?.requestID, detail: detail.mapValues { String($0.prefix(500)) })
    }

    /// The stored event's webhook (`audit.<action>`), for hooks that listed it.
    public func publish(_ event: AuditEventRecord) async {
        var data = event.detail
        data["audit_id"] = event.id
        data["actor"] = event.actor
        if let target = event.target { data["target"] = target }
        try? await events.emit("audit." + event.action, data)
    }

    private static let lastMillis = Atomic<Int64>(0)

    /// Strictly increasing within the process, so two events of one millisecond keep their order.
    static func orderedMillis(_ now: Int64) -> Int64 {
        while true {
            let last = lastMillis.load(ordering: .relaxed)
            let next = max(now, last + 1)
            if lastMillis.compareExchange(expected: last, desired: next, ordering: .relaxed).exchanged { return next }
        }
    }

    /// Records a security event (sign-in, lockout, reuse): a storage failure must not turn a sign-in into an
    /// error, so it is swallowed.
    public func note(
        _ action: String, actor: AuditActor, target: String? = nil, detail: [String: String] = [:], address: String? = nil
    ) async {
        try? await record(action, actor: actor, target: target, detail: detail, address: address)
    }
}

/// Audit actions (`action` of an audit event).
public enum AuditAction {
    public static let signInSucceeded = "signin.succeeded"
    public static let signInFailed = "signin.failed"
    public static let lockout = "signin.locked_out"
    public static let signInDisabled = "signin.disabled_account"
    public static let refreshTokenReuse = "token.refresh_reuse_detected"
    public static let keyRotated = "key.rotated"
    public static let keyRevoked = "key.revoked"
}

/// Counts of tokens issued and sign-ins per 5-minute bucket, kept in memory and added to the shared
/// `activity_counts` table every few seconds (the dashboard's last hour and day, over every instance),
/// so the token endpoint never writes for it.
public final class ActivityCounter: Sendable {
    public static let bucketSeconds: Int64 = 300
    public static let tokensIssued = "token.issued"
    public static let signIns = "signin.succeeded"
    public static let signInFailures = "signin.failed"

    private let counts = Mutex<[String: [Int64: Int64]]>([:])
    let clock: Clock

    public init(clock: Clock = .system) { self.clock = clock }

    public func count(_ kind: String, _ n: Int64 = 1) {
        let bucket = clock.nowSeconds / Self.bucketSeconds * Self.bucketSeconds
        counts.withLock { $0[kind, default: [:]][bucket, default: 0] += n }
    }

    /// Takes what was counted since the last drain.
    public func drain() -> [String: [Int64: Int64]] {
        counts.withLock { c in
            defer { c.removeAll() }
            return c
        }
    }

    /// Puts back counts a failed flush could not store (they are added to the next one).
    public func restore(_ taken: [String: [Int64: Int64]]) {
        counts.withLock { c in
            for (kind, buckets) in taken {
                for (bucket, n) in buckets { c[kind, default: [:]][bucket, default: 0] += n }
            }
        }
    }
}
