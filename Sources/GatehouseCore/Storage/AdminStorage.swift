import Foundation

// Storage for administration (the admin API, the console and the CLI): listing with keyset pagination,
// changing and deleting what the other stores only create, and the audit log. Runs in the conformance
// suite on every backend like the other stores.

/// Which users to list (`GET /admin/v1/users`): ordered by username (case-insensitive), after `after`.
public struct UserQuery: Sendable, Equatable {
    /// Case-insensitive prefix of the username, email address or name.
    public var prefix: String?
    public var disabled: Bool?
    /// Members of this group only.
    public var group: String?
    /// The lowercased username of the last user of the previous page (keyset pagination).
    public var after: String?
    public var limit: Int
    public init(prefix: String? = nil, disabled: Bool? = nil, group: String? = nil, after: String? = nil, limit: Int = 50) {
        self.prefix = prefix
        self.disabled = disabled
        self.group = group
        self.after = after
        self.limit = limit
    }
}

/// One recorded change or security event.
public struct AuditEventRecord: Sendable, Equatable {
    /// Time-ordered: 13 digits of milliseconds, then random (sorting by id sorts by time).
    public var id: String
    public var createdAt: Int64
    /// `user:<id>`, `client:<id>`, `cli`, or `anonymous` (a failed sign-in names no one).
    public var actor: String
    /// `user.disabled`, `client.secret_rotated`, `signin.failed`, …
    public var action: String
    /// What the action was about (`user:<id>`, `client:<id>`, `scope:<name>`, …).
    public var target: String?
    public var clientAddress: String?
    public var requestID: String?
    /// A small JSON object of strings; never a secret or a password.
    public var detail: [String: String]

    public init(
        id: String, createdAt: Int64, actor: String, action: String, target: String?, clientAddress: String?,
        requestID: String?, detail: [String: String]
    ) {
        self.id = id
        self.createdAt = createdAt
        self.actor = actor
        self.action = action
        self.target = target
        self.clientAddress = clientAddress
        self.requestID = requestID
        self.detail = detail
    }

    /// A new time-ordered id for an event at `millis`.
    public static func newID(millis: Int64) -> String {
        let digits = String(max(0, millis))
        return String(repeating: "0", count: max(0, 13 - digits.count)) + digits + "-" + Secrets.generate(byteCount: 9)
    }
}

/// Filters of the audit log, newest first, before `before` (an event id: keyset pagination).
public struct AuditQuery: Sendable, Equatable {
    public var actor: String?
    public var action: String?
    public var target: String?
    public var since: Int64?
    public var until: Int64?
    public var before: String?
    public var limit: Int
    public init(
        actor: String? = nil, action: String? = nil, target: String? = nil, since: Int64? = nil, until: Int64? = nil,
        before: String? = nil, limit: Int = 50
    ) {
        self.actor = actor
        self.action = action
        self.target = target
        self.since = since
        self.until = until
        self.before = before
        self.limit = limit
    }
}

/// What the dashboard counts.
public struct AdminStats: Sendable, Equatable, Codable {
    public struct Window: Sendable, Equatable, Codable {
        public var tokens_issued: Int64
        public var signin_failures: Int64
        public var signins: Int64
        public init(tokens_issued: Int64, signin_failures: Int64, signins: Int64) {
            self.tokens_issued = tokens_issued
            self.signin_failures = signin_failures
            self.signins = signins
        }
    }
    public var users: Int64
    public var disabled_users: Int64
    public var clients: Int64
    public var active_sessions: Int64
    public var pending_events: Int64
    public var failed_events: Int64
    public var last_hour: Window
    public var last_day: Window
    public init(
        users: Int64, disabled_users: Int64, clients: Int64, active_sessions: Int64, pending_events: Int64,
        failed_events: Int64, last_hour: Window, last_day: Window
    ) {
        self.users = users
        self.disabled_users = disabled_users
        self.clients = clients
        self.active_sessions = active_sessions
        self.pending_events = pending_events
        self.failed_events = failed_events
        self.last_hour = last_hour
        self.last_day = last_day
    }
}

/// The webhook outbox's states, as the admin API filters them.
public enum OutboxStatus: String, Sendable, CaseIterable {
    case pending, delivered, failed
}

/// What deleting a scope found.
public enum ScopeDeletion: Sendable, Equatable {
    case deleted
    case notFound
    /// Clients that may request it (nothing was changed).
    case inUse(clients: [String])
}

/// Administration's storage: everything the other stores only create can be listed, changed and deleted.
public protocol AdminStore: Sendable {
    /// Up to `query.limit` users in username order.
    func listUsers(_ query: UserQuery) async throws -> [UserRecord]
    /// Inserts a user and, when given, its audit event in one transaction (`UserStore.insertUser`'s rules).
    func insertUser(_ user: UserRecord, audit: AuditEventRecord?) async throws
    /// Replaces the user's profile fields (username, email, name, profile) and `updatedAt`. Throws
    /// `StorageError.duplicate` when the new username is taken; `false` when there is no such user.
    func updateUser(_ user: UserRecord) async throws -> Bool
    /// Disables (`at` set) or enables (`nil`) a user. Disabling also ends every session of the user and
    /// revokes every grant (so refresh tokens stop at once), in one transaction. `false`: no such user.
    func setUserDisabled(id: String, at time: Int64?, now: Int64) async throws -> Bool
    /// Sets (or, with `nil`, removes) the password hash and the "must choose a new password" flag.
    func setPassword(userID: String, hash: String?, resetRequired: Bool, at time: Int64) async throws -> Bool
    /// Deletes the user with their sessions, grants (revoked first, so their tokens die), codes, consents,
    /// identities, memberships and permissions, and remembers the id so it is never given out again.
    func deleteUser(id: String, at time: Int64) async throws -> Bool
    /// `true` for the id of a deleted user.
    func isDeletedUser(id: String) async throws -> Bool
    func sessions(userID: String, at time: Int64) async throws -> [SessionRecord]
    /// Ends every session of the user (sign out everywhere); returns how many.
    func deleteSessions(userID: String) async throws -> Int

    /// Replaces a client's registration (everything but its id, secret and creation time). `false`: no such client.
    func updateClient(_ client: ClientRecord) async throws -> Bool
    /// Replaces the secret; the previous hash stays valid until `previousUntil` when given.
    func rotateClientSecret(id: String, secretHash: String, previousUntil: Int64?, at time: Int64) async throws -> Bool

    func scope(name: String) async throws -> ScopeRecord?
    func updateScope(_ scope: ScopeRecord) async throws -> Bool
    /// Deletes the scope; a scope that clients may request is refused unless `force` (then it is removed from
    /// those clients' scope and default scope).
    func deleteScope(name: String, force: Bool, at time: Int64) async throws -> ScopeDeletion

    /// Every group with its number of members.
    func listGroups() async throws -> [(group: GroupRecord, members: Int)]
    /// Deletes the group and its memberships.
    func deleteGroup(name: String) async throws -> Bool
    func members(group: String) async throws -> [MembershipRecord]
    func removeMember(group: String, userID: String) async throws -> Bool

    func listServices() async throws -> [ServiceRecord]
    /// Deletes the service and every permission granted for it.
    func deleteService(name: String) async throws -> Bool
    /// Each user's granted permissions for the service (user id order).
    func serviceGrants(service: String) async throws -> [(userID: String, permissions: [String])]
    /// Revokes the named permissions, or all of them (`nil`); returns how many were removed.
    func revokePermissions(service: String, userID: String, permissions: [String]?) async throws -> Int

    /// Webhook deliveries, newest first, before the event id `before`.
    func listEvents(status: OutboxStatus?, before: (createdAt: Int64, id: String)?, limit: Int) async throws -> [OutboxRecord]
    /// Makes a failed (or pending) delivery due now with a fresh attempt budget. `false`: no such event, or delivered.
    func retryEvent(id: String, at time: Int64) async throws -> Bool

    func stats(at time: Int64) async throws -> AdminStats
}

/// The audit log and the activity counters behind the dashboard.
public protocol AuditStore: Sendable {
    func insertAuditEvents(_ events: [AuditEventRecord]) async throws
    func listAuditEvents(_ query: AuditQuery) async throws -> [AuditEventRecord]
    /// Deletes events older than `time` (`audit_retention`); returns how many.
    func purgeAuditEvents(before time: Int64) async throws -> Int
    /// Adds counts (by kind, e.g. `token.issued`, then by 5-minute bucket start) to the shared counters.
    func addActivity(_ counts: [String: [Int64: Int64]]) async throws
}
