import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

@testable import GatehouseSQL

/// Conformance of federation storage (providers, identities, upstream flows, webhook outbox) on SQLite and
/// (when configured) PostgreSQL.
@Suite("Federation storage conformance")
struct FederationStoreTests {
    @Test(arguments: TestDatabase.available)
    func providersRoundTripAndRefuseDuplicates(db: TestDatabase) async throws {
        try await db.withStore { store in
            let p = ProviderRecord(
                id: "corp", kind: .oidc, name: "Corp", clientID: "cid", clientSecret: "secret",
                issuer: "https://sso.example", scope: Scope(["openid", "email"]), claims: ["username": "upn"],
                linkByEmail: true, createdAt: 5)
            try await store.insertProvider(p)
            #expect(try await store.listProviders() == [p])
            await #expect(throws: StorageError.duplicate("provider corp")) { try await store.insertProvider(p) }
            #expect(try await store.deleteProvider(id: "corp"))
            #expect(try await store.deleteProvider(id: "corp") == false)
            #expect(try await store.listProviders().isEmpty)
        }
    }

    @Test(arguments: TestDatabase.available)
    func identitiesLinkOnceAndUnlinkOnlyForTheirUser(db: TestDatabase) async throws {
        try await db.withStore { store in
            // u1 can also sign in with a password, so the identity is not its last way in.
            try await store.insertUser(
                UserRecord(id: "u1", username: "u1", email: nil, name: nil, passwordHash: "x", createdAt: 1, updatedAt: 1))
            let i = IdentityRecord(providerID: "gh", subject: "42", userID: "u1", username: "octo", email: "o@x", createdAt: 1)
            try await store.insertIdentity(i)
            #expect(try await store.identity(providerID: "gh", subject: "42") == i)
            await #expect(throws: StorageError.self) {
                try await store.insertIdentity(IdentityRecord(providerID: "gh", subject: "42", userID: "u2", username: nil, email: nil, createdAt: 2))
            }
            #expect(try await store.identities(userID: "u1") == [i])
            #expect(try await store.deleteIdentity(providerID: "gh", subject: "42", userID: "u2") == false)
            #expect(try await store.deleteIdentity(providerID: "gh", subject: "42", userID: "u1"))
            #expect(try await store.identities(userID: "u1").isEmpty)
        }
    }

    @Test(arguments: TestDatabase.available)
    func usersAreFoundByEmailCaseInsensitivelyAndOnlyWhenUnique(db: TestDatabase) async throws {
        try await db.withStore { store in
            func user(_ id: String, _ name: String, _ email: String?) -> UserRecord {
                UserRecord(id: id, username: name, email: email, name: nil, passwordHash: nil, createdAt: 1, updatedAt: 1)
            }
            try await store.insertUser(user("a", "ann", "Ann@Example.com"))
            #expect(try await store.user(email: "ann@example.COM")?.id == "a")
            try await store.insertUser(user("b", "bob", "shared@example.com"))
            try await store.insertUser(user("c", "cat", "SHARED@example.com"))
            #expect(try await store.user(email: "shared@example.com") == nil)  // ambiguous
            #expect(try await store.user(email: "nobody@example.com") == nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func upstreamFlowsAreTakenOnce(db: TestDatabase) async throws {
        try await db.withStore { store in
            let f = UpstreamFlowRecord(
                stateHash: Secrets.hash("state"), providerID: "gh", browserHash: Secrets.hash("b"), codeVerifier: "v",
                nonce: "n", returnTo: "/account", linkUserID: nil, expiresAt: 100)
            let stored = try await store.insertUpstreamFlow(f, limitPerAddress: 20, at: 50)
            #expect(stored)
            #expect(try await store.takeUpstreamFlow(stateHash: f.stateHash) == f)
            #expect(try await store.takeUpstreamFlow(stateHash: f.stateHash) == nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func outboxClaimsOnceAndRecordsOutcomes(db: TestDatabase) async throws {
        try await db.withStore { store in
            let due = OutboxRecord(id: "e1", event: "user.login", url: "https://hook.example", payload: "{}", nextAttemptAt: 10, createdAt: 10)
            let later = OutboxRecord(id: "e2", event: "user.login", url: "https://hook.example", payload: "{}", nextAttemptAt: 50, createdAt: 10)
            try await store.enqueueEvents([due, later])
            let claimed = try await store.claimDueEvents(at: 20, limit: 10, lease: 60)
            #expect(claimed.map(\.id) == ["e1"])
            // Leased: a second claim (another instance) gets nothing until the lease ends.
            #expect(try await store.claimDueEvents(at: 21, limit: 10, lease: 60).isEmpty)
            var failed = claimed[0]
            failed.attempts = 1
            failed.nextAttemptAt = 30
            failed.lastError = "HTTP 500"
            try await store.recordDelivery(failed)
            #expect(try await store.outbox(id: "e1") == failed)
            #expect(try await store.claimDueEvents(at: 30, limit: 10, lease: 60).map(\.id) == ["e1"])
            var delivered = failed
            delivered.attempts = 2
            delivered.deliveredAt = 31
            try await store.recordDelivery(delivered)
            #expect(try await store.claimDueEvents(at: 100, limit: 10, lease: 60).map(\.id) == ["e2"])
            #expect(try await store.claimDueEvents(at: 1000, limit: 10, lease: 60).map(\.id) == ["e2"])  // lease over
        }
    }

    @Test(arguments: TestDatabase.available)
    func theLastWayToSignInIsNeverUnlinked(db: TestDatabase) async throws {
        try await db.withStore { store in
            try await store.insertUser(
                UserRecord(id: "p", username: "provider-only", email: nil, name: nil, passwordHash: nil, createdAt: 1, updatedAt: 1))
            try await store.insertIdentity(IdentityRecord(providerID: "gh", subject: "1", userID: "p", username: nil, email: nil, createdAt: 1))
            try await store.insertIdentity(IdentityRecord(providerID: "gl", subject: "2", userID: "p", username: nil, email: nil, createdAt: 1))
            // Two concurrent unlinks: exactly one succeeds, one identity stays.
            async let a = store.deleteIdentity(providerID: "gh", subject: "1", userID: "p")
            async let b = store.deleteIdentity(providerID: "gl", subject: "2", userID: "p")
            let results = try await [a, b]
            #expect(results.filter { $0 }.count == 1)
            #expect(try await store.identities(userID: "p").count == 1)
        }
    }
}
