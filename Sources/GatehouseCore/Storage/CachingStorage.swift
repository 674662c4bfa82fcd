import Foundation
import Synchronization

/// Storage with two short-lived read caches in front of the hot paths: client lookups (every request
/// authenticates a client) and "is this access token revoked?" (every introspection).
///
/// Writes made through this instance take effect at once (they invalidate the caches). Changes made
/// by another process — the CLI, another server instance — reach this one within `ttl` seconds. Only
/// positive client lookups and "not revoked" answers are cached, never a revocation. `ttl == 0`
/// turns caching off.
public final class CachingStorage: GatehouseStorage {
    let base: any GatehouseStorage
    let ttl: Int64
    let clock: Clock
    private let clients = Mutex<[String: (record: ClientRecord, until: Int64)]>([:])
    private let notRevoked = Mutex<[String: Int64]>([:])
    /// Bumped by every invalidation: a lookup that started before one does not fill the cache with a
    /// result that may predate it.
    private let clientGeneration = Atomic<Int>(0)
    private let revocationGeneration = Atomic<Int>(0)
    private static let capacity = 10_000
    /// Counts hits and misses per cache (`clients`, `revocations`).
    let metrics: GatehouseMetrics

    public init(_ base: any GatehouseStorage, ttl: Int64, clock: Clock, metrics: GatehouseMetrics = .none) {
        self.metrics = metrics
        self.base = base
        self.ttl = ttl
        self.clock = clock
    }

    /// Monotonic enough for a cache: whole seconds are too coarse for a 1 s TTL, so use milliseconds.
    private var nowMillis: Int64 { Int64(clock.now.timeIntervalSince1970 * 1000) }

    // MARK: cached reads

    public func client(id: String) async throws -> ClientRecord? {
        let now = nowMillis
        if ttl > 0, let hit = clients.withLock({ $0[id] }), hit.until > now {
            metrics.cacheLookup("clients", hit: true)
            return hit.record
        }
        if ttl > 0 { metrics.cacheLookup("clients", hit: false) }
        let generation = clientGeneration.load(ordering: .acquiring)
        guard let record = try await base.client(id: id) else { return nil }
        if ttl > 0 {
            clients.withLock { t in
                guard clientGeneration.load(ordering: .acquiring) == generation else { return }
                if t.count >= Self.capacity { t.removeAll(keepingCapacity: true) }
                t[id] = (record, now + ttl * 1000)
            }
        }
        return record
    }

    public func isAccessTokenRevoked(jti: String, grantID: String?, clientID: String, userID: String?) async throws -> Bool {
        let key = "\(jti)\u{0}\(grantID ?? "")\u{0}\(clientID)\u{0}\(userID ?? "")"
        let now = nowMillis
        if ttl > 0, let until = notRevoked.withLock({ $0[key] }), until > now {
            metrics.cacheLookup("revocations", hit: true)
            return false
        }
        if ttl > 0 { metrics.cacheLookup("revocations", hit: false) }
        let generation = revocationGeneration.load(ordering: .acquiring)
        let revoked = try await base.isAccessTokenRevoked(jti: jti, grantID: grantID, clientID: clientID, userID: userID)
        if ttl > 0, !revoked {
            notRevoked.withLock { t in
                guard revocationGeneration.load(ordering: .acquiring) == generation else { return }
                if t.count >= Self.capacity { t.removeAll(keepingCapacity: true) }
                t[key] = now + ttl * 1000
            }
        }
        return revoked
    }

    private func forgetRevocations() {
        notRevoked.withLock { t in
            revocationGeneration.wrappingAdd(1, ordering: .releasing)
            t.removeAll()
        }
    }
    private func forgetClient(_ id: String) {
        clients.withLock { t in
            clientGeneration.wrappingAdd(1, ordering: .releasing)
            t.removeValue(forKey: id)
        }
    }

    // MARK: writes that invalidate

    public func deleteClient(id: String, at time: Int64) async throws -> Bool {
        let deleted = try await base.deleteClient(id: id, at: time)
        forgetClient(id)
        forgetRevocations()
        return deleted
    }

    public func updateClientSecret(id: String, secretHash: String, at time: Int64) async throws -> Bool {
        let updated = try await base.updateClientSecret(id: id, secretHash: secretHash, at: time)
        forgetClient(id)
        return updated
    }

    public func revokeGrant(id: String, at time: Int64) async throws {
        try await base.revokeGrant(id: id, at: time)
        forgetRevocations()
    }

    public func revokeAccessToken(jti: String, expiresAt: Int64) async throws {
        try await base.revokeAccessToken(jti: jti, expiresAt: expiresAt)
        forgetRevocations()
    }

    public func revokeGrants(userID: String, clientID: String, at time: Int64) async throws {
        try await base.revokeGrants(userID: userID, clientID: clientID, at: time)
        forgetRevocations()
    }

    // Administration: changes to users and clients reach the caches at once.
    public func setUserDisabled(id: String, at time: Int64?, now: Int64) async throws -> Bool {
        let changed = try await base.setUserDisabled(id: id, at: time, now: now)
        forgetRevocations()
        return changed
    }
    public func deleteUser(id: String, at time: Int64) async throws -> Bool {
        let deleted = try await base.deleteUser(id: id, at: time)
        forgetRevocations()
        return deleted
    }
    public func updateClient(_ client: ClientRecord) async throws -> Bool {
        let updated = try await base.updateClient(client)
        forgetClient(client.id)
        return updated
    }
    public func rotateClientSecret(id: String, secretHash: String, previousUntil: Int64?, at time: Int64) async throws -> Bool {
        let rotated = try await base.rotateClientSecret(id: id, secretHash: secretHash, previousUntil: previousUntil, at: time)
        forgetClient(id)
        return rotated
    }
    public func deleteScope(name: String, force: Bool, at time: Int64) async throws -> ScopeDeletion {
        let outcome = try await base.deleteScope(name: name, force: force, at: time)
        // A forced deletion changed the scope of clients.
        clients.withLock { t in
            clientGeneration.wrappingAdd(1, ordering: .releasing)
            t.removeAll()
        }
        return outcome
    }

    public func listUsers(_ query: UserQuery) async throws -> [UserRecord] { try await base.listUsers(query) }
    public func insertUser(_ user: UserRecord, audit: AuditEventRecord?) async throws {
        try await base.insertUser(user, audit: audit)
    }
    public func updateUser(_ user: UserRecord) async throws -> Bool { try await base.updateUser(user) }
    public func setPassword(userID: String, hash: String?, resetRequired: Bool, at time: Int64) async throws -> Bool {
        try await base.setPassword(userID: userID, hash: hash, resetRequired: resetRequired, at: time)
    }
    public func isDeletedUser(id: String) async throws -> Bool { try await base.isDeletedUser(id: id) }
    public func sessions(userID: String, at time: Int64) async throws -> [SessionRecord] {
        try await base.sessions(userID: userID, at: time)
    }
    public func deleteSessions(userID: String) async throws -> Int { try await base.deleteSessions(userID: userID) }
    public func scope(name: String) async throws -> ScopeRecord? { try await base.scope(name: name) }
    public func updateScope(_ scope: ScopeRecord) async throws -> Bool { try await base.updateScope(scope) }
    public func listGroups() async throws -> [(group: GroupRecord, members: Int)] { try await base.listGroups() }
    public func deleteGroup(name: String) async throws -> Bool { try await base.deleteGroup(name: name) }
    public func members(group: String) async throws -> [MembershipRecord] { try await base.members(group: group) }
    public func removeMember(group: String, userID: String) async throws -> Bool {
        try await base.removeMember(group: group, userID: userID)
    }
    public func listServices() async throws -> [ServiceRecord] { try await base.listServices() }
    public func deleteService(name: String) async throws -> Bool { try await base.deleteService(name: name) }
    public func serviceGrants(service: String) async throws -> [(userID: String, permissions: [String])] {
        try await base.serviceGrants(service: service)
    }
    public func revokePermissions(service: String, userID: String, permissions: [String]?) async throws -> Int {
        try await base.revokePermissions(service: service, userID: userID, permissions: permissions)
    }
    public func listEvents(status: OutboxStatus?, before: (createdAt: Int64, id: String)?, limit: Int) async throws
        -> [OutboxRecord]
    {
        try await base.listEvents(status: status, before: before, limit: limit)
    }
    public func retryEvent(id: String, at time: Int64) async throws -> Bool { try await base.retryEvent(id: id, at: time) }
    public func stats(at time: Int64) async throws -> AdminStats { try await base.stats(at: time) }
    public func insertAuditEvents(_ events: [AuditEventRecord]) async throws { try await base.insertAuditEvents(events) }
    public func listAuditEvents(_ query: AuditQuery) async throws -> [AuditEventRecord] {
        try await base.listAuditEvents(query)
    }
    public func purgeAuditEvents(before time: Int64) async throws -> Int { try await base.purgeAuditEvents(before: time) }
    public func addActivity(_ counts: [String: [Int64: Int64]]) async throws { try await base.addActivity(counts) }

    // MARK: pass-through

    public func ping() async throws { try await base.ping() }
    public func pendingEventCount() async throws -> Int { try await base.pendingEventCount() }
    public func pendingMigrations() async throws -> [Int] { try await base.pendingMigrations() }
    public func connectionUse() -> ConnectionUse { base.connectionUse() }
    public func record(into metrics: GatehouseMetrics) { base.record(into: metrics) }

    public func insertGroup(_ group: GroupRecord) async throws { try await base.insertGroup(group) }
    public func group(name: String) async throws -> GroupRecord? { try await base.group(name: name) }
    public func saveMembership(_ membership: MembershipRecord) async throws { try await base.saveMembership(membership) }
    public func memberships(userID: String) async throws -> [MembershipRecord] { try await base.memberships(userID: userID) }
    public func insertService(_ service: ServiceRecord) async throws { try await base.insertService(service) }
    public func service(name: String) async throws -> ServiceRecord? { try await base.service(name: name) }
    public func grantPermissions(service: String, userID: String, permissions: [String]) async throws {
        try await base.grantPermissions(service: service, userID: userID, permissions: permissions)
    }
    public func permissions(service: String, userID: String) async throws -> [String] {
        try await base.permissions(service: service, userID: userID)
    }
    public func changeUsername(userID: String, to username: String, at time: Int64) async throws -> Bool {
        try await base.changeUsername(userID: userID, to: username, at: time)
    }
    public func usernameWasChanged(userID: String) async throws -> Bool { try await base.usernameWasChanged(userID: userID) }

    public func insertProvider(_ provider: ProviderRecord) async throws { try await base.insertProvider(provider) }
    public func listProviders() async throws -> [ProviderRecord] { try await base.listProviders() }
    public func deleteProvider(id: String) async throws -> Bool { try await base.deleteProvider(id: id) }
    public func identity(providerID: String, subject: String) async throws -> IdentityRecord? {
        try await base.identity(providerID: providerID, subject: subject)
    }
    public func identities(userID: String) async throws -> [IdentityRecord] { try await base.identities(userID: userID) }
    public func insertIdentity(_ identity: IdentityRecord) async throws { try await base.insertIdentity(identity) }
    public func insertUser(_ user: UserRecord, linking identity: IdentityRecord) async throws {
        try await base.insertUser(user, linking: identity)
    }
    public func deleteIdentity(providerID: String, subject: String, userID: String) async throws -> Bool {
        try await base.deleteIdentity(providerID: providerID, subject: subject, userID: userID)
    }
    public func user(email: String) async throws -> UserRecord? { try await base.user(email: email) }
    public func insertUpstreamFlow(_ flow: UpstreamFlowRecord, limitPerAddress: Int, at time: Int64) async throws -> Bool {
        try await base.insertUpstreamFlow(flow, limitPerAddress: limitPerAddress, at: time)
    }
    public func takeUpstreamFlow(stateHash: String) async throws -> UpstreamFlowRecord? {
        try await base.takeUpstreamFlow(stateHash: stateHash)
    }
    public func enqueueEvents(_ records: [OutboxRecord]) async throws { try await base.enqueueEvents(records) }
    public func claimDueEvents(at time: Int64, limit: Int, lease: Int64) async throws -> [OutboxRecord] {
        try await base.claimDueEvents(at: time, limit: limit, lease: lease)
    }
    public func recordDelivery(_ record: OutboxRecord) async throws { try await base.recordDelivery(record) }
    public func outbox(id: String) async throws -> OutboxRecord? { try await base.outbox(id: id) }
    public func purgeFinishedEvents(before time: Int64) async throws -> Int { try await base.purgeFinishedEvents(before: time) }

    public func insertSession(_ session: SessionRecord) async throws { try await base.insertSession(session) }
    public func session(hash: String) async throws -> SessionRecord? { try await base.session(hash: hash) }
    public func deleteSession(hash: String) async throws { try await base.deleteSession(hash: hash) }
    public func session(id: String, at time: Int64) async throws -> SessionRecord? { try await base.session(id: id, at: time) }
    public func insertAuthorizationCode(_ code: AuthorizationCodeRecord) async throws {
        try await base.insertAuthorizationCode(code)
    }
    public func authorizationCode(hash: String) async throws -> AuthorizationCodeRecord? {
        try await base.authorizationCode(hash: hash)
    }
    public func redeemAuthorizationCode(
        hash: String, at time: Int64, grant: GrantRecord, refreshToken: RefreshTokenRecord?
    ) async throws -> Bool {
        try await base.redeemAuthorizationCode(hash: hash, at: time, grant: grant, refreshToken: refreshToken)
    }
    public func consent(userID: String, clientID: String) async throws -> ConsentRecord? {
        try await base.consent(userID: userID, clientID: clientID)
    }
    public func saveConsent(_ consent: ConsentRecord) async throws { try await base.saveConsent(consent) }
    public func activeGrants(userID: String, createdAfter: Int64, at time: Int64) async throws -> [GrantRecord] {
        try await base.activeGrants(userID: userID, createdAfter: createdAfter, at: time)
    }

    public func insertClient(_ client: ClientRecord) async throws { try await base.insertClient(client) }
    public func listClients() async throws -> [ClientRecord] { try await base.listClients() }
    public func insertUser(_ user: UserRecord) async throws { try await base.insertUser(user) }
    public func user(id: String) async throws -> UserRecord? { try await base.user(id: id) }
    public func user(username: String) async throws -> UserRecord? { try await base.user(username: username) }
    public func insertScope(_ scope: ScopeRecord) async throws { try await base.insertScope(scope) }
    public func listScopes() async throws -> [ScopeRecord] { try await base.listScopes() }
    public func listKeys() async throws -> [SigningKeyRecord] { try await base.listKeys() }
    public func activateKey(_ key: SigningKeyRecord) async throws { try await base.activateKey(key) }
    public func insertFirstKey(_ key: SigningKeyRecord) async throws -> SigningKeyRecord {
        try await base.insertFirstKey(key)
    }
    public func retireKeys(kids: [String], at time: Int64) async throws { try await base.retireKeys(kids: kids, at: time) }
    public func raiseKeyRetention(atLeast seconds: Int64) async throws -> Int64 {
        try await base.raiseKeyRetention(atLeast: seconds)
    }
    public func keyRetention() async throws -> Int64? { try await base.keyRetention() }
    public func revokeKey(kid: String, at time: Int64) async throws -> Bool { try await base.revokeKey(kid: kid, at: time) }
    public func revokedKeyIDs() async throws -> Set<String> { try await base.revokedKeyIDs() }
    public func recordFailure(key: String, at time: Int64, window: Int64) async throws -> FailureCount {
        try await base.recordFailure(key: key, at: time, window: window)
    }
    public func failureCount(key: String, at time: Int64) async throws -> FailureCount? {
        try await base.failureCount(key: key, at: time)
    }
    public func clearFailures(key: String) async throws { try await base.clearFailures(key: key) }
    public func purgeFailures(before time: Int64) async throws -> Int { try await base.purgeFailures(before: time) }
    public func insertGrant(_ grant: GrantRecord, refreshToken: RefreshTokenRecord?) async throws {
        try await base.insertGrant(grant, refreshToken: refreshToken)
    }
    public func grant(id: String) async throws -> GrantRecord? { try await base.grant(id: id) }
    public func refreshToken(hash: String) async throws -> RefreshTokenRecord? { try await base.refreshToken(hash: hash) }
    public func rotateRefreshToken(hash: String, usedAt: Int64, sealedSuccessor: String?, next: RefreshTokenRecord)
        async throws -> RotationOutcome
    {
        try await base.rotateRefreshToken(hash: hash, usedAt: usedAt, sealedSuccessor: sealedSuccessor, next: next)
    }
    public func purgeExpired(before time: Int64) async throws -> Int { try await base.purgeExpired(before: time) }
}
