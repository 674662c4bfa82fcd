import Foundation
import GatehouseCore
import GatehouseTestSupport
import Synchronization
import Testing

@testable import GatehouseSQL

/// Conformance of the browser sign-in storage (sessions, codes, consents, a user's grants) on SQLite and
/// (when configured) PostgreSQL.
@Suite("Browser storage conformance")
struct BrowserStoreTests {
    static func code(client: String, grant: String = Secrets.identifier(), expiresAt: Int64 = 160) -> AuthorizationCodeRecord {
        AuthorizationCodeRecord(
            hash: Secrets.hash(Secrets.generate()), clientID: client, userID: "u1", redirectURI: "https://app.example/cb",
            scope: Scope(["openid", "profile"]), resources: ["https://api.example"],
            codeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", nonce: "n-0S6_WzA2Mj", authTime: 90,
            sessionID: "sid1", grantID: grant, issueRefreshToken: true, createdAt: 100, expiresAt: expiresAt)
    }

    static func grant(_ id: String, client: String, user: String = "u1", createdAt: Int64 = 100) -> GrantRecord {
        GrantRecord(
            id: id, clientID: client, userID: user, scope: Scope(["openid"]), createdAt: createdAt, revokedAt: nil,
            authTime: 90, sessionID: "sid1")
    }

    @Test(arguments: TestDatabase.available)
    func sessionsRoundTripAndDelete(db: TestDatabase) async throws {
        try await db.withStore { store in
            let s = SessionRecord(hash: Secrets.hash("cookie"), id: "sid", userID: "u1", authTime: 5, createdAt: 5, expiresAt: 50)
            try await store.insertSession(s)
            #expect(try await store.session(hash: s.hash) == s)
            #expect(try await store.session(hash: Secrets.hash("other")) == nil)
            try await store.deleteSession(hash: s.hash)
            #expect(try await store.session(hash: s.hash) == nil)
            // Expired sessions are purged.
            try await store.insertSession(s)
            _ = try await store.purgeExpired(before: 51)
            #expect(try await store.session(hash: s.hash) == nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func codeRedemptionIsSingleUseAndCreatesTheGrant(db: TestDatabase) async throws {
        try await db.withStore { store in
            let c = StorageConformanceTests.client()
            try await store.insertClient(c)
            let code = Self.code(client: c.id)
            try await store.insertAuthorizationCode(code)
            #expect(try await store.authorizationCode(hash: code.hash) == code)
            let g = Self.grant(code.grantID, client: c.id)
            let r = StorageConformanceTests.refresh(grant: g.id, client: c.id)
            #expect(try await store.redeemAuthorizationCode(hash: code.hash, at: 120, grant: g, refreshToken: r))
            #expect(try await store.authorizationCode(hash: code.hash)?.usedAt == 120)
            #expect(try await store.grant(id: g.id) == g)
            #expect(try await store.refreshToken(hash: r.hash) == r)
            // A second redemption changes nothing and says so.
            let other = StorageConformanceTests.refresh(grant: g.id, client: c.id)
            #expect(try await store.redeemAuthorizationCode(hash: code.hash, at: 121, grant: g, refreshToken: other) == false)
            #expect(try await store.refreshToken(hash: other.hash) == nil)
            #expect(try await store.authorizationCode(hash: code.hash)?.usedAt == 120)
            // Codes outlive their expiry by a day (a late replay still finds them), then go.
            _ = try await store.purgeExpired(before: 161)
            #expect(try await store.authorizationCode(hash: code.hash) != nil)
            _ = try await store.purgeExpired(before: 161 + 86_400)
            #expect(try await store.authorizationCode(hash: code.hash) == nil)
        }
    }

    /// 50 concurrent redemptions of one code: exactly one wins, and exactly one grant exists.
    @Test(arguments: TestDatabase.available)
    func fiftyConcurrentRedemptions(db: TestDatabase) async throws {
        try await db.withStore { store in
            let c = StorageConformanceTests.client()
            try await store.insertClient(c)
            let code = Self.code(client: c.id)
            try await store.insertAuthorizationCode(code)
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        try await store.redeemAuthorizationCode(
                            hash: code.hash, at: 120, grant: Self.grant(code.grantID, client: c.id),
                            refreshToken: StorageConformanceTests.refresh(grant: code.grantID, client: c.id))
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(wins == 1)
            #expect(try await store.grant(id: code.grantID) != nil)
        }
    }

    @Test(arguments: TestDatabase.available)
    func consentsUpsertAndRevokeGrantsForgetsThem(db: TestDatabase) async throws {
        try await db.withStore { store in
            let c = StorageConformanceTests.client()
            try await store.insertClient(c)
            #expect(try await store.consent(userID: "u1", clientID: c.id) == nil)
            try await store.saveConsent(ConsentRecord(userID: "u1", clientID: c.id, scope: Scope(["openid"]), createdAt: 1))
            try await store.saveConsent(
                ConsentRecord(userID: "u1", clientID: c.id, scope: Scope(["openid", "email"]), createdAt: 2))
            #expect(try await store.consent(userID: "u1", clientID: c.id)?.scope == Scope(["openid", "email"]))

            try await store.insertGrant(Self.grant("g1", client: c.id, createdAt: 100), refreshToken: nil)
            try await store.insertGrant(Self.grant("g2", client: c.id, user: "u2", createdAt: 100), refreshToken: nil)
            // A grant without refresh tokens is active while its access tokens may live.
            #expect(try await store.activeGrants(userID: "u1", createdAfter: 50, at: 200).map(\.id) == ["g1"])
            #expect(try await store.activeGrants(userID: "u1", createdAfter: 150, at: 200).isEmpty)
            // One with a live refresh token stays active.
            try await store.insertGrant(
                Self.grant("g3", client: c.id, createdAt: 10),
                refreshToken: StorageConformanceTests.refresh(grant: "g3", client: c.id))
            #expect(try await store.activeGrants(userID: "u1", createdAfter: 150, at: 200).map(\.id) == ["g3"])

            try await store.revokeGrants(userID: "u1", clientID: c.id, at: 300)
            #expect(try await store.grant(id: "g1")?.revokedAt == 300)
            #expect(try await store.grant(id: "g3")?.revokedAt == 300)
            #expect(try await store.grant(id: "g2")?.revokedAt == nil)  // another user's
            #expect(try await store.consent(userID: "u1", clientID: c.id) == nil)
            #expect(try await store.activeGrants(userID: "u1", createdAfter: 0, at: 200).isEmpty)
        }
    }

    @Test(arguments: TestDatabase.available)
    func userProfileAndPostLogoutURIsRoundTrip(db: TestDatabase) async throws {
        try await db.withStore { store in
            var c = StorageConformanceTests.client()
            c.postLogoutRedirectURIs = ["https://app.example/bye"]
            try await store.insertClient(c)
            #expect(try await store.client(id: c.id)?.postLogoutRedirectURIs == ["https://app.example/bye"])
            let profile = UserProfile(
                givenName: "Ada", familyName: "Lovelace", picture: "https://img.example/ada.png", emailVerified: true,
                phoneNumber: "+4712345678", phoneNumberVerified: false, address: "1 Analytical Way")
            let u = UserRecord(
                id: "u9", username: "ada", email: "ada@example.com", name: "Ada L", passwordHash: nil, createdAt: 1,
                updatedAt: 2, profile: profile)
            try await store.insertUser(u)
            #expect(try await store.user(id: "u9") == u)
        }
    }
}
