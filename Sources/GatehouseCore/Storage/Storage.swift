// Storage protocols. Each part of the core asks only for the stores it uses (fosite's
// `RefreshTokenGrantStorage` style), so a missing capability is a compile error; `GatehouseStorage` is all
// of them, as `SQLStore` (GatehouseSQL) and `CachingStorage` provide. The conformance suite
// (Tests/GatehouseSQLTests/StorageConformanceTests.swift) runs on `SQLStore` over SQLite and PostgreSQL.

/// A storage failure the core understands (anything else is a server error).
public enum StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A unique value already exists (`what` names it for the message).
    case duplicate(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .duplicate(let what): return "\(what) already exists"
        case .notFound(let what): return "\(what) not found"
        }
    }
}

/// Registered OAuth clients (RFC 6749 §2).
public protocol ClientStore: Sendable {
    func insertClient(_ client: ClientRecord) async throws
    func client(id: String) async throws -> ClientRecord?
    func listClients() async throws -> [ClientRecord]
    /// Deletes the client and revokes every grant it holds. Returns `false` when it did not exist.
    func deleteClient(id: String, at time: Int64) async throws -> Bool
    func updateClientSecret(id: String, secretHash: String, at time: Int64) async throws -> Bool
}

/// Local user accounts.
public protocol UserStore: Sendable {
    /// Throws `StorageError.duplicate` when the username (compared case-insensitively) is taken.
    func insertUser(_ user: UserRecord) async throws
    func user(id: String) async throws -> UserRecord?
    /// Case-insensitive lookup.
    func user(username: String) async throws -> UserRecord?
}

/// The scopes clients may ask for (RFC 6749 §3.3).
public protocol ScopeStore: Sendable {
    func insertScope(_ scope: ScopeRecord) async throws
    func listScopes() async throws -> [ScopeRecord]
}

/// Signing keys: the key ring's source of truth, shared by every instance (rotation, retention, revocation).
public protocol KeyStore: Sendable {
    func listKeys() async throws -> [SigningKeyRecord]
    /// Inserts `key` as the signing key and deactivates every other active key, atomically.
    func activateKey(_ key: SigningKeyRecord) async throws
    /// Inserts `key` only when no active key exists (first start). Returns the active key either way.
    func insertFirstKey(_ key: SigningKeyRecord) async throws -> SigningKeyRecord
    /// Marks keys retired and wipes their private half.
    func retireKeys(kids: [String], at time: Int64) async throws
    /// Records that deactivated keys must stay published at least `seconds` and returns the largest value
    /// any instance has recorded, so instances with different token lifetimes never retire a key early.
    func raiseKeyRetention(atLeast seconds: Int64) async throws -> Int64
    /// The recorded retention, if any instance has recorded one.
    func keyRetention() async throws -> Int64?
    /// Emergency revocation: the key leaves the key set at once (retired, private half wiped) and is marked
    /// revoked. `false` when no such key, or it was revoked already.
    func revokeKey(kid: String, at time: Int64) async throws -> Bool
    /// Every revoked key id (cheap: instances poll it to drop a revoked key within a second).
    func revokedKeyIDs() async throws -> Set<String>
}

/// What happened when a refresh token was presented for rotation.
public enum RotationOutcome: Sendable, Equatable {
    /// This request consumed the token and its successor was stored.
    case rotated
    /// The token had already been used (by an earlier or a concurrent request).
    case alreadyUsed(RefreshTokenRecord)
}

/// Grants (refresh-token families), refresh tokens (by hash) and access-token revocations.
public protocol TokenStore: Sendable {
    /// Creates a grant and, when given, its first refresh token, atomically.
    func insertGrant(_ grant: GrantRecord, refreshToken: RefreshTokenRecord?) async throws
    func grant(id: String) async throws -> GrantRecord?
    func refreshToken(hash: String) async throws -> RefreshTokenRecord?
    /// Atomically marks `hash` used (only if unused), stores the sealed successor on it and inserts `next`.
    func rotateRefreshToken(hash: String, usedAt: Int64, sealedSuccessor: String?, next: RefreshTokenRecord)
        async throws -> RotationOutcome
    /// Revokes a grant (idempotent): its refresh tokens and access tokens stop being valid.
    func revokeGrant(id: String, at time: Int64) async throws
    /// Records a revoked access token until it would have expired anyway.
    func revokeAccessToken(jti: String, expiresAt: Int64) async throws
    /// `true` when the access token `jti` or the grant it came from was revoked, its client deleted, or its
    /// user (`userID`, when the token has one) disabled or deleted.
    func isAccessTokenRevoked(jti: String, grantID: String?, clientID: String, userID: String?) async throws -> Bool
    /// Deletes expired refresh tokens and revocation entries, and erases sealed successors of tokens used
    /// more than the longest grace period (5 minutes) before `time`. Returns the number of rows removed.
    func purgeExpired(before time: Int64) async throws -> Int
}

/// Browser sign-in: sessions, authorization codes, remembered consents and a user's grants.
public protocol BrowserStore: Sendable {
    func insertSession(_ session: SessionRecord) async throws
    func session(hash: String) async throws -> SessionRecord?
    func deleteSession(hash: String) async throws
    /// The session with the public id `id` while it lasts at `time` (tokens bound to a session check it).
    func session(id: String, at time: Int64) async throws -> SessionRecord?

    func insertAuthorizationCode(_ code: AuthorizationCodeRecord) async throws
    func authorizationCode(hash: String) async throws -> AuthorizationCodeRecord?
    /// Atomically marks the code used (only if unused) and creates its grant and refresh token in the same
    /// transaction. `false` when the code was already used: then the grant exists (it was created with the
    /// first redemption), so revoking it after a replay always reaches the tokens issued from it.
    func redeemAuthorizationCode(hash: String, at time: Int64, grant: GrantRecord, refreshToken: RefreshTokenRecord?)
        async throws -> Bool

    func consent(userID: String, clientID: String) async throws -> ConsentRecord?
    /// Inserts or replaces the remembered consent of a user for a client.
    func saveConsent(_ consent: ConsentRecord) async throws
    /// Grants of a user that still hold a token at `time`: not revoked, and either created after
    /// `createdAfter` (their access tokens may still be live) or holding an unused, unexpired refresh token.
    /// Newest first.
    func activeGrants(userID: String, createdAfter: Int64, at time: Int64) async throws -> [GrantRecord]
    /// Revokes every grant of the user for the client and forgets the remembered consent.
    func revokeGrants(userID: String, clientID: String, at time: Int64) async throws
}

/// Pending "Sign in with …" round trips to upstream providers (state, PKCE verifier, nonce), single use.
public protocol UpstreamFlowStore: Sendable {
    /// Stores a flow unless its `addressKey` already has `limitPerAddress` pending (unexpired at `time`)
    /// flows: then `false`, and nothing is stored.
    func insertUpstreamFlow(_ flow: UpstreamFlowRecord, limitPerAddress: Int, at time: Int64) async throws -> Bool
    /// Removes and returns the flow (single use); `nil` when unknown.
    func takeUpstreamFlow(stateHash: String) async throws -> UpstreamFlowRecord?
}

/// The webhook outbox: lifecycle events waiting for delivery, claimed with a lease so several instances can
/// deliver without sending one event twice at the same time.
public protocol EventOutbox: Sendable {
    func enqueueEvents(_ records: [OutboxRecord]) async throws
    /// Claims up to `limit` undelivered events due at `time`: each claimed row's next attempt moves to
    /// `time + lease`, so another instance does not send it at the same time.
    func claimDueEvents(at time: Int64, limit: Int, lease: Int64) async throws -> [OutboxRecord]
    /// Records the outcome of one attempt.
    func recordDelivery(_ record: OutboxRecord) async throws
    func outbox(id: String) async throws -> OutboxRecord?
    /// Events neither delivered nor abandoned yet (the outbox's depth, for metrics).
    func pendingEventCount() async throws -> Int
    /// Deletes events delivered or abandoned before `time` (`outbox_retention`); returns how many.
    func purgeFinishedEvents(before time: Int64) async throws -> Int
}

/// What readiness (`/readyz`) asks of the database.
public protocol StorageHealth: Sendable {
    /// One cheap round trip to the database (`SELECT 1`); throws when it cannot be reached.
    func ping() async throws
    /// The schema migrations this build knows that the database has not applied (empty: current).
    func pendingMigrations() async throws -> [Int]
    /// Database connections now: in use, waited for, and how many there can be (for `/metrics`).
    func connectionUse() -> ConnectionUse
    /// Where the store records how long its database calls take (the server calls it once, at start).
    func record(into metrics: GatehouseMetrics)
}

/// A snapshot of a store's database connections.
public struct ConnectionUse: Sendable, Equatable {
    /// Calls holding a connection now.
    public var inUse: Int
    /// Calls waiting for one (PostgreSQL: the pool is exhausted; SQLite: for the one writer).
    public var waiting: Int
    /// Connections the store may open (PostgreSQL: the pool's maximum; SQLite: writer + readers).
    public var capacity: Int

    public init(inUse: Int, waiting: Int, capacity: Int) {
        self.inUse = inUse
        self.waiting = waiting
        self.capacity = capacity
    }
}

/// Every store: what `SQLStore` implements and the server is built on.
public typealias GatehouseStorage = ClientStore & UserStore & ScopeStore & KeyStore & TokenStore & BrowserStore
    & FederationStore & UpstreamFlowStore & EventOutbox & AccountStore & FailureCounterStore & StorageHealth
    & AdminStore & AuditStore

extension TokenStore {
    /// For tokens without a user (client credentials).
    public func isAccessTokenRevoked(jti: String, grantID: String?, clientID: String) async throws -> Bool {
        try await isAccessTokenRevoked(jti: jti, grantID: grantID, clientID: clientID, userID: nil)
    }
}
