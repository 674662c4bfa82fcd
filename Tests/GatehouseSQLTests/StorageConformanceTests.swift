import Foundation
import GatehouseCore
import GatehouseTestSupport
import Logging
import Synchronization
import Testing

@testable import GatehouseSQL

/// The storage conformance suite: every protocol-level test runs against SQLite and (when configured)
/// PostgreSQL, each directly and through `CachingStorage`.
@Suite("Storage conformance")
struct StorageConformanceTests {
    static func client(_ id: String = Secrets.identifier(), secret: String? = "s") -> ClientRecord {
        ClientRecord(
            id: id, name: "app", secretHash: secret.map(Secrets.hash), redirectURIs: ["https://app.example/cb"],
            grantTypes: ["client_credentials", "refresh_token"], scope: Scope(["read", "write"]),
            defaultScope: Scope(["read"]), resources: ["https://api.example"], skipConsent: true, createdAt: 10,
            updatedAt: 11)
    }

    static func refresh(grant: String, client: String, hash: String = Secrets.hash(Secrets.generate())) -> RefreshTokenRecord {
        RefreshTokenRecord(
            hash: hash, grantID: grant, clientID: client, userID: "u1", scope: Scope(["read"]),
            resources: ["https://api.example"], issuedAt: 100, expiresAt: 1000)
    }

    /// A client with grant "g" and its first refresh token.
    static func family(in store: any GatehouseStorage) async throws -> (ClientRecord, RefreshTokenRecord) {
        let c = client()
        try await store.insertClient(c)
        let r = refresh(grant: "g", client: c.id)
        try await store.insertGrant(
            GrantRecord(id: "g", clientID: c.id, userID: "u1", scope: Scope(["read"]), createdAt: 1, revokedAt: nil),
            refreshToken: r)
        return (c, r)
    }

    @Test(arguments: TestDatabase.available)
    func migrationsAreVersionedAndIdempotent(db: TestDatabase) async throws {
        try await db.withStore { store in
            #expect(try await store.migrate() == [])  // already applied by withStore
            let names = try await store.listScopes().map(\.name)
            #expect(names == [
                "address", "email", "gatehouse:admin", "gatehouse:admin:read", "offline_access", "openid", "phone", "profile",
            ])
        }
    }

    /// What `/readyz` asks: a round trip, and no migration pending once migrated.
    @Test(arguments: StorageUnderTest.all)
    func healthAnswersOnAMigratedStore(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            try await store.ping()
            #expect(try await store.pendingMigrations() == [])
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func clientsRoundTripAndDelete(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            let c = Self.client()
            try await store.insertClient(c)
            #expect(try await store.client(id: c.id) == c)
            #expect(try await store.client(id: "nope") == nil)
            #expect(try await store.listClients().map(\.id) == [c.id])

            #expect(try await store.updateClientSecret(id: c.id, secretHash: "new", at: 50))
            #expect(try await store.client(id: c.id)?.secretHash == "new")
            #expect(try await store.client(id: c.id)?.updatedAt == 50)

            let pub = Self.client(secret: nil)
            try await store.insertClient(pub)
            #expect(try await store.updateClientSecret(id: pub.id, secretHash: "x", at: 1) == false)
            #expect(try await store.client(id: pub.id)?.isPublic == true)

            // Deleting a client revokes its grants.
            try await store.insertGrant(
                GrantRecord(id: "g1", clientID: c.id, userID: nil, scope: Scope(["read"]), createdAt: 1, revokedAt: nil),
                refreshToken: nil)
            #expect(try await store.deleteClient(id: c.id, at: 77))
            #expect(try await store.deleteClient(id: c.id, at: 78) == false)
            #expect(try await store.client(id: c.id) == nil)
            #expect(try await store.grant(id: "g1")?.revokedAt == 77)
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func usernamesAreUniqueCaseInsensitively(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            let u = UserRecord(id: "u1", username: "Alice", email: "a@example.com", name: "Alice A", passwordHash: "h", createdAt: 1, updatedAt: 2)
            try await store.insertUser(u)
            #expect(try await store.user(id: "u1") == u)
            #expect(try await store.user(username: "aLiCe") == u)
            await #expect(throws: StorageError.self) {
                try await store.insertUser(UserRecord(id: "u2", username: "alice", email: nil, name: nil, passwordHash: nil, createdAt: 1, updatedAt: 1))
            }
            #expect(try await store.user(id: "u2") == nil)
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func scopesRejectDuplicates(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            try await store.insertScope(ScopeRecord(name: "read", description: "Read", isDefault: true))
            await #expect(throws: StorageError.duplicate("scope read")) {
                try await store.insertScope(ScopeRecord(name: "read", description: "Again", isDefault: false))
            }
            let read = try await store.listScopes().first { $0.name == "read" }
            #expect(read == ScopeRecord(name: "read", description: "Read", isDefault: true))
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func keysActivateAndRetire(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            let k1 = SigningKeyRecord(kid: "k1", algorithm: .es256, privatePEM: "pem1", createdAt: 10, deactivatedAt: nil, retiredAt: nil)
            let k2 = SigningKeyRecord(kid: "k2", algorithm: .rs256, privatePEM: "pem2", createdAt: 20, deactivatedAt: nil, retiredAt: nil)
            #expect(try await store.insertFirstKey(k1).kid == "k1")
            // A second "first key" is not inserted while one is active.
            #expect(try await store.insertFirstKey(k2).kid == "k1")
            #expect(try await store.listKeys().count == 1)

            try await store.activateKey(k2)
            let keys = try await store.listKeys()
            #expect(keys.map(\.kid) == ["k1", "k2"])
            #expect(keys[0].deactivatedAt == 20)
            #expect(keys[1].deactivatedAt == nil)
            #expect(keys[1].algorithm == .rs256)

            try await store.retireKeys(kids: ["k1"], at: 99)
            let after = try await store.listKeys()
            #expect(after[0].retiredAt == 99)
            #expect(after[0].privatePEM == nil)
            #expect(after[1].privatePEM == "pem2")
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func grantsRefreshTokensAndRevocation(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            let c = Self.client()
            try await store.insertClient(c)
            let g = GrantRecord(id: "g1", clientID: c.id, userID: "u1", scope: Scope(["read"]), createdAt: 5, revokedAt: nil)
            let r = Self.refresh(grant: "g1", client: c.id)
            try await store.insertGrant(g, refreshToken: r)
            #expect(try await store.grant(id: "g1") == g)
            #expect(try await store.refreshToken(hash: r.hash) == r)

            #expect(try await store.isAccessTokenRevoked(jti: "j1", grantID: "g1", clientID: c.id) == false)
            #expect(try await store.isAccessTokenRevoked(jti: "j1", grantID: nil, clientID: c.id) == false)
            // A deleted (unknown) client's tokens count as revoked.
            #expect(try await store.isAccessTokenRevoked(jti: "j1", grantID: nil, clientID: "gone") == true)

            try await store.revokeAccessToken(jti: "j1", expiresAt: 500)
            try await store.revokeAccessToken(jti: "j1", expiresAt: 500)  // idempotent
            #expect(try await store.isAccessTokenRevoked(jti: "j1", grantID: nil, clientID: c.id) == true)
            #expect(try await store.isAccessTokenRevoked(jti: "j2", grantID: "g1", clientID: c.id) == false)

            try await store.revokeGrant(id: "g1", at: 60)
            try await store.revokeGrant(id: "g1", at: 61)  // idempotent, keeps the first time
            #expect(try await store.grant(id: "g1")?.revokedAt == 60)
            #expect(try await store.isAccessTokenRevoked(jti: "j2", grantID: "g1", clientID: c.id) == true)

            // Purge removes expired refresh tokens and revocation entries only.
            #expect(try await store.purgeExpired(before: 600) == 1)
            #expect(try await store.refreshToken(hash: r.hash) != nil)
            #expect(try await store.purgeExpired(before: 2000) == 1)
            #expect(try await store.refreshToken(hash: r.hash) == nil)
        }
    }

    @Test(arguments: StorageUnderTest.all)
    func rotationConsumesOnce(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            let (c, r) = try await Self.family(in: store)
            let next = Self.refresh(grant: "g", client: c.id)
            #expect(try await store.rotateRefreshToken(hash: r.hash, usedAt: 200, sealedSuccessor: "sealed", next: next) == .rotated)
            let again = try await store.rotateRefreshToken(
                hash: r.hash, usedAt: 201, sealedSuccessor: "other", next: Self.refresh(grant: "g", client: c.id))
            guard case .alreadyUsed(let used) = again else {
                Issue.record("second rotation should report reuse")
                return
            }
            #expect(used.usedAt == 200)
            #expect(used.sealedSuccessor == "sealed")
            #expect(try await store.refreshToken(hash: next.hash) == next)
        }
    }

    /// 50 concurrent rotations of one refresh token: exactly one consumes it and stores a successor.
    @Test(arguments: StorageUnderTest.all)
    func concurrentRotationHasExactlyOneWinner(storage: StorageUnderTest) async throws {
        try await storage.withStorage { store in
            let (c, r) = try await Self.family(in: store)
            let outcomes = try await withThrowingTaskGroup(of: (RotationOutcome, String).self) { group in
                for i in 0..<50 {
                    group.addTask {
                        let next = Self.refresh(grant: "g", client: c.id)
                        return (try await store.rotateRefreshToken(hash: r.hash, usedAt: 300, sealedSuccessor: "s\(i)", next: next), next.hash)
                    }
                }
                var all: [(RotationOutcome, String)] = []
                for try await o in group { all.append(o) }
                return all
            }
            let winners = outcomes.filter { $0.0 == .rotated }
            #expect(winners.count == 1)
            #expect(outcomes.count == 50)
            // Only the winner's successor exists.
            var stored = 0
            for (_, hash) in outcomes where try await store.refreshToken(hash: hash) != nil { stored += 1 }
            #expect(stored == 1)
        }
    }

    /// The drivers log bind values at debug; the store never lets them (private keys are binds).
    @Test func queriesAreNotLoggedBelowInfo() async throws {
        let captured = Captured()
        var logger = Logger(label: "capture", factory: { _ in CapturingLogHandler(sink: captured) })
        logger.logLevel = .trace
        let store = try await SQLStore.open(.sqliteMemory, logger: logger)
        try await store.migrate()
        _ = try await store.insertFirstKey(
            SigningKeyRecord(kid: "k", algorithm: .es256, privatePEM: "-----BEGIN PRIVATE KEY-----SECRET", createdAt: 1, deactivatedAt: nil, retiredAt: nil))
        _ = try await store.listKeys()
        await store.close()
        #expect(!captured.text.contains("SECRET"))
    }

    @Test func databaseURLs() throws {
        #expect(try DatabaseURL(parsing: "sqlite::memory:") == .sqliteMemory)
        #expect(try DatabaseURL(parsing: "sqlite://data/gh.sqlite") == .sqliteFile(path: "data/gh.sqlite"))
        #expect(try DatabaseURL(parsing: "sqlite:///var/lib/gh.sqlite") == .sqliteFile(path: "/var/lib/gh.sqlite"))
        #expect(
            try DatabaseURL(parsing: "postgres://gh:p%40ss@db.internal:5433/gatehouse?sslmode=require")
                == .postgres(host: "db.internal", port: 5433, user: "gh", password: "p@ss", database: "gatehouse", sslMode: .require))
        #expect(try DatabaseURL(parsing: "postgresql://u@h/d").description == "postgres://u@h:5432/d")
        #expect(try DatabaseURL(parsing: "postgres://u:secret@h/d").description.contains("secret") == false)
        for bad in ["mysql://x", "sqlite://", "postgres://h/d", "postgres://u@h/", "postgres://u@h/d?sslmode=maybe", ""] {
            #expect(throws: DatabaseURL.ParseError.self, "\(bad)") { try DatabaseURL(parsing: bad) }
        }
    }

    /// The file backend: WAL, reader connections, and data that survives reopening.
    @Test func sqliteFileSurvivesReopen() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gh-\(UUID().uuidString).sqlite").path
        defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + s) } }
        let first = try await SQLStore.open(.sqliteFile(path: path))
        try await first.migrate()
        // It holds signing keys: owner-only.
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let c = Self.client()
        try await first.insertClient(c)
        await first.close()
        let second = try await SQLStore.open(.sqliteFile(path: path))
        #expect(try await second.migrate() == [])
        #expect(try await second.client(id: c.id) == c)
        await second.close()
    }
}

final class Captured: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ s: String) { lines.withLock { $0.append(s) } }
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}

struct CapturingLogHandler: LogHandler {
    let sink: Captured
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        sink.append("\(event.message) \(event.metadata ?? [:])")
    }
}
