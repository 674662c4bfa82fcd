import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

/// RFC 6749 §6 with rotation and reuse detection (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
@Suite("Refresh tokens")
struct RefreshTokenTests {
    /// A password-grant client, a user, and a first token response.
    static func start(_ h: Harness, scope: String = "read write") async throws -> ((id: String, secret: String), Harness.Reply) {
        let c = try await h.makeClient(grantTypes: ["refresh_token"], scope: scope, allowPassword: true)
        let name = "u\(UUID().uuidString.prefix(8))"
        _ = try await h.admin.createUser(username: name, email: nil, name: nil, password: "pass phrase 1")
        let first = try await h.token(c, [("grant_type", "password"), ("username", name), ("password", "pass phrase 1")])
        #expect(first.status == .ok)
        return (c, first)
    }

    static func refresh(_ h: Harness, _ c: (id: String, secret: String), _ token: String, scope: String? = nil) async throws -> Harness.Reply {
        var p = [("grant_type", "refresh_token"), ("refresh_token", token)]
        if let scope { p.append(("scope", scope)) }
        return try await h.token(c, p)
    }

    static func isActive(_ h: Harness, _ c: (id: String, secret: String), _ token: String) async throws -> Bool {
        try await h.post("/oauth2/introspect", [("token", token)], auth: c)["active"] as? Bool ?? false
    }

    @Test(arguments: TestDatabase.available)
    func rotationAndReuseDetection(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let (c, first) = try await Self.start(h)
            let rt1 = try #require(first.string("refresh_token"))
            let at1 = try #require(first.string("access_token"))

            let second = try await Self.refresh(h, c, rt1)
            #expect(second.status == .ok)
            // Without a grace period nothing but hashes is stored: no sealed successor.
            let stored = try await h.store.refreshToken(hash: Secrets.hash(rt1))
            #expect(stored?.usedAt != nil)
            #expect(stored?.sealedSuccessor == nil)
            #expect(second.headers[.cacheControl] == "no-store")
            let rt2 = try #require(second.string("refresh_token"))
            #expect(rt2 != rt1)
            #expect(try await Self.isActive(h, c, rt2))
            #expect(try await Self.isActive(h, c, rt1) == false)  // consumed

            // Replaying the consumed token fails and revokes the whole family.
            let replay = try await Self.refresh(h, c, rt1)
            #expect(replay.error == "invalid_grant")
            #expect(try await Self.refresh(h, c, rt2).error == "invalid_grant")
            #expect(try await Self.isActive(h, c, at1) == false)
            #expect(try await Self.isActive(h, c, try #require(second.string("access_token"))) == false)
        }
    }

    /// A replay that also asks for something invalid is still a replay.
    @Test(arguments: TestDatabase.available)
    func replayWithAnInvalidScopeStillRevokesTheFamily(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let (c, first) = try await Self.start(h)
            let rt1 = try #require(first.string("refresh_token"))
            let rt2 = try #require(try await Self.refresh(h, c, rt1).string("refresh_token"))
            let replay = try await Self.refresh(h, c, rt1, scope: "read admin")
            #expect(replay.error == "invalid_grant")
            #expect(try await Self.refresh(h, c, rt2).error == "invalid_grant")
        }
    }

    @Test(arguments: TestDatabase.available)
    func scopeMayOnlyNarrow(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let (c, first) = try await Self.start(h)
            let narrowed = try await Self.refresh(h, c, try #require(first.string("refresh_token")), scope: "read")
            #expect(narrowed.string("scope") == "read")
            // The family keeps its original scope: the next refresh may ask for write again.
            let again = try await Self.refresh(h, c, try #require(narrowed.string("refresh_token")), scope: "read write")
            #expect(again.status == .ok)
            #expect(again.string("scope") == "read write")
            let wider = try await Self.refresh(h, c, try #require(again.string("refresh_token")), scope: "read admin")
            #expect(wider.error == "invalid_scope")
        }
    }

    @Test(arguments: TestDatabase.available)
    func boundToItsClientAndExpires(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let (c, first) = try await Self.start(h)
            let other = try await h.makeClient(grantTypes: ["refresh_token"], scope: "read write", allowPassword: true)
            let rt = try #require(first.string("refresh_token"))
            let stolen = try await Self.refresh(h, other, rt)
            #expect(stolen.error == "invalid_grant")
            // The other client's attempt did not consume or revoke it.
            #expect(try await Self.isActive(h, c, rt))
            #expect(try await Self.isActive(h, other, rt) == false)  // introspection of another client's refresh token

            h.testClock.advance(seconds: 30 * 24 * 3600 + 1)
            #expect(try await Self.refresh(h, c, rt).error == "invalid_grant")
            #expect(try await Self.refresh(h, c, "garbage").error == "invalid_grant")
        }
    }

    @Test(arguments: TestDatabase.available)
    func gracePeriodReturnsTheSamePair(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.refreshGracePeriod = 30 }) { h in
            let (c, first) = try await Self.start(h)
            let rt1 = try #require(first.string("refresh_token"))
            let a = try await Self.refresh(h, c, rt1)
            h.testClock.advance(seconds: 10)
            let b = try await Self.refresh(h, c, rt1)
            #expect(b.status == .ok)
            #expect(b.string("refresh_token") == a.string("refresh_token"))
            // The same access token: the pair is sealed unsigned and signed when handed out, so the retry's
            // token carries the same claims (same jti, exp) under a fresh signature.
            let firstClaims = Harness.decodeJWT(try #require(a.string("access_token"))).claims
            let again = Harness.decodeJWT(try #require(b.string("access_token"))).claims
            #expect(again["jti"] as? String != nil)
            #expect(again["jti"] as? String == firstClaims["jti"] as? String)
            #expect(again["exp"] as? Int == firstClaims["exp"] as? Int)
            #expect(NSDictionary(dictionary: again).isEqual(to: firstClaims))
            #expect(b["expires_in"] as? Int == 590)
            // After the grace period a reuse revokes the family.
            h.testClock.advance(seconds: 21)
            #expect(try await Self.refresh(h, c, rt1).error == "invalid_grant")
            #expect(try await Self.refresh(h, c, try #require(a.string("refresh_token"))).error == "invalid_grant")
        }
    }

    /// Within the grace period, but after the successor has itself been refreshed: the old token coming back
    /// is reuse (the family is revoked), never a second copy of a spent successor and a live access token.
    @Test(arguments: TestDatabase.available)
    func graceEndsOnceTheSuccessorIsUsed(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.refreshGracePeriod = 30 }) { h in
            let (c, first) = try await Self.start(h)
            let rt1 = try #require(first.string("refresh_token"))
            let a = try await Self.refresh(h, c, rt1)
            let rt2 = try #require(a.string("refresh_token"))
            let b = try await Self.refresh(h, c, rt2)
            #expect(b.status == .ok)
            let rt3 = try #require(b.string("refresh_token"))
            h.testClock.advance(seconds: 5)
            let late = try await Self.refresh(h, c, rt1)
            #expect(late.error == "invalid_grant")
            #expect(late.string("access_token") == nil)
            // The family is revoked: the newest token no longer works either.
            #expect(try await Self.refresh(h, c, rt3).error == "invalid_grant")
        }
    }

    /// A used token that comes back after it expired is still reuse: the family is revoked (waiting out the
    /// expiry must not dodge detection).
    @Test(arguments: TestDatabase.available)
    func anExpiredUsedTokenStillRevokesItsFamily(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.refreshTokenLifetime = 100 }) { h in
            let (c, first) = try await Self.start(h)
            let rt1 = try #require(first.string("refresh_token"))
            h.testClock.advance(seconds: 60)
            let rt2 = try #require(try await Self.refresh(h, c, rt1).string("refresh_token"))
            h.testClock.advance(seconds: 50)  // rt1 expired 10 s ago; rt2 is valid for 50 s more
            let replay = try await Self.refresh(h, c, rt1)
            #expect(replay.error == "invalid_grant")
            #expect(replay.string("error_description")?.contains("already used") == true)
            #expect(try await Self.refresh(h, c, rt2).error == "invalid_grant")
        }
    }

    /// 50 concurrent uses of one refresh token. Without a grace period exactly one succeeds, the others
    /// are reuse and revoke the family: no second family is ever forked. With a grace period all of them
    /// receive the same pair and exactly one live family remains.
    @Test(arguments: TestDatabase.available)
    func fiftyConcurrentUses(db: TestDatabase) async throws {
        for grace: Int64 in [0, 10] {
            try await Harness.run(db, configure: { $0.refreshGracePeriod = grace }) { h in
                let (c, first) = try await Self.start(h)
                let rt = try #require(first.string("refresh_token"))
                let replies = try await withThrowingTaskGroup(of: Harness.Reply.self) { group in
                    for _ in 0..<50 { group.addTask { try await Self.refresh(h, c, rt) } }
                    var all: [Harness.Reply] = []
                    for try await r in group { all.append(r) }
                    return all
                }
                let ok = replies.filter { $0.status == .ok }
                let newTokens = Set(ok.compactMap { $0.string("refresh_token") })
                #expect(newTokens.count == 1, "grace \(grace): one successor, got \(newTokens.count)")
                #expect(replies.allSatisfy { $0.status == .ok || $0.error == "invalid_grant" })
                if grace == 0 {
                    #expect(ok.count == 1)
                    #expect(try await Self.isActive(h, c, newTokens.first!) == false)  // family revoked by the reuse
                } else {
                    #expect(ok.count == 50)
                    #expect(try await Self.isActive(h, c, newTokens.first!))
                    let next = try await Self.refresh(h, c, newTokens.first!)
                    #expect(next.status == .ok)
                }
            }
        }
    }
}
