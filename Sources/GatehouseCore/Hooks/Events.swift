import Crypto
import Foundation

/// A webhook: where lifecycle events go, signed with a shared secret.
public struct WebhookConfig: Sendable, Equatable, Codable {
    public var url: String
    public var secret: String
    /// Event names this hook receives; empty means the default set (`Events.defaults`).
    public var events: [String]
    public init(url: String, secret: String, events: [String] = []) {
        self.url = url
        self.secret = secret
        self.events = events
    }
    /// Audit events (`audit.<action>`) go only to hooks that list them, one by one or as `audit.*`.
    public func wants(_ event: String) -> Bool {
        if event.hasPrefix("audit.") { return events.contains(event) || events.contains(Events.auditAll) }
        return (events.isEmpty ? Events.defaults : events).contains(event)
    }
}

extension WebhookConfig: CustomStringConvertible, CustomDebugStringConvertible {
    /// Never the secret, and the URL only up to its path: webhook URLs often carry a token in the query or
    /// credentials before the host. `"\(hook)"` in a log line or error is therefore safe.
    public var description: String {
        "WebhookConfig(url: \(Redaction.url(url)), secret: <redacted>, events: \(events))"
    }
    public var debugDescription: String { description }
}

/// Lifecycle events, recorded in an outbox (a database table) and delivered by a background worker: a
/// failing or slow hook never blocks the request that caused the event, and a restart loses nothing.
public struct Events: Sendable {
    public static let userCreated = "user.created"
    public static let userLogin = "user.login"
    public static let userLogout = "user.logout"
    public static let tokenIssued = "token.issued"
    public static let grantRevoked = "grant.revoked"
    public static let all = [userCreated, userLogin, userLogout, tokenIssued, grantRevoked]
    /// Every audit event (`audit.user.disabled`, …): opt-in per hook.
    public static let auditAll = "audit.*"
    /// `token.issued` fires on every token response, so a hook gets it only when it asks for it.
    public static let defaults = [userCreated, userLogin, userLogout, grantRevoked]

    /// Where events wait for delivery (nil only for `none`, which has no hooks and so records nothing).
    let outbox: (any EventOutbox)?
    let hooks: [WebhookConfig]
    let clock: Clock

    public init(storage: any EventOutbox, hooks: [WebhookConfig], clock: Clock) {
        self.outbox = storage
        self.hooks = hooks
        self.clock = clock
    }

    private init() {
        self.outbox = nil
        self.hooks = []
        self.clock = .system
    }

    /// No hooks: `emit` does nothing.
    public static let none = Events()

    /// Records `event` for every hook that wants it. Returns quickly; delivery happens later.
    public func emit(_ event: String, _ data: [String: String]) async throws {
        let targets = hooks.filter { $0.wants(event) }
        guard !targets.isEmpty, let outbox else { return }
        let now = clock.nowSeconds
        var records: [OutboxRecord] = []
        for hook in targets {
            let id = Secrets.identifier()
            let body: [String: Any] = ["id": id, "event": event, "created_at": now, "data": data]
            let payload = String(
                decoding: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes]),
                as: UTF8.self)
            records.append(
                OutboxRecord(
                    id: id, event: event, url: hook.url, payload: payload, nextAttemptAt: now, createdAt: now,
                    traceContext: TraceContext.current()))
        }
        try await outbox.enqueueEvents(records)
    }

    /// `Gatehouse-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the receiver
    /// recomputes it and rejects old timestamps (replay).
    public static func signature(secret: String, timestamp: Int64, body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data("\(timestamp).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + Data(mac).hexString
    }

    /// Seconds before attempt `n + 1` after `n` failures: base × 2^(n−1), at most an hour.
    public static func backoff(afterFailures n: Int, base: Int64) -> Int64 {
        min(3600, base * (Int64(1) << Int64(min(max(n - 1, 0), 20))))
    }
    /// After this many failed attempts an event is marked failed and no longer retried.
    public static let maxAttempts = 12
}

/// Delivery of one outbox record (the HTTP POST is the server's; this decides what to record).
public struct WebhookDelivery: Sendable {
    public let hooks: [WebhookConfig]
    public let retryBase: Int64

    public init(hooks: [WebhookConfig], retryBase: Int64) {
        self.hooks = hooks
        self.retryBase = retryBase
    }

    /// Headers to send with the record's payload; `nil` when no configured hook has that URL any more.
    public func headers(for record: OutboxRecord, now: Int64) -> [(String, String)]? {
        guard let hook = hooks.first(where: { $0.url == record.url }) else { return nil }
        return [
            ("Content-Type", "application/json"), ("Gatehouse-Event", record.event), ("Gatehouse-Delivery", record.id),
            ("Gatehouse-Signature", Events.signature(secret: hook.secret, timestamp: now, body: record.payload)),
        ]
    }

    /// The record after an attempt: delivered on 2xx; otherwise retried with backoff, or failed for good.
    public func outcome(_ record: OutboxRecord, status: Int?, error: String?, now: Int64) -> OutboxRecord {
        var r = record
        r.attempts += 1
        if let status, (200..<300).contains(status) {
            r.deliveredAt = now
            r.lastError = nil
            return r
        }
        r.lastError = String((error ?? "HTTP \(status ?? 0)").prefix(500))
        if r.attempts >= Events.maxAttempts {
            r.failedAt = now
        } else {
            r.nextAttemptAt = now + Events.backoff(afterFailures: r.attempts, base: retryBase)
        }
        return r
    }
}

extension Events {
    /// `token.issued`: the one shape of the event, emitted by `TokenEndpoint` for every grant and by the
    /// profiles' own token issuers (`DGPTokens`).
    public func tokenIssued(clientID: String, grantType: String, scope: String) async {
        try? await emit(Events.tokenIssued, ["client_id": clientID, "grant_type": grantType, "scope": scope])
    }
}
