import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

@testable import GatehouseSQL

/// Conformance of the administration storage (listing, changing, deleting; the audit log and activity
/// counters) and the `Administration` rules on top, on SQLite and (when configured) PostgreSQL.
@Suite("Administration storage conformance")
struct AdminStoreTests {
    static func admin(_ store: SQLStore, actor: AuditActor = .cli) -> Administration {
        Administration(
            storage: store, passwords: PasswordHasher(cost: 4),
            audit: AuditLog(store: store, events: .none, clock: .system), actor: actor)
    }

    @Test(arguments: TestDatabase.available)
    func usersAreListedInUsernameOrderWithPrefixSearchAndFilters(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let names = ["Zoe", "alice", "Albert", "bob", "carol", "álvaro"]
            var ids: [String: String] = [:]
            for n in names {
                ids[n] = try await admin.createUser(
                    username: n, email: "\(n.lowercased())@example.com", name: n == "bob" ? "Alfred Bob" : nil, password: nil
                ).id
            }
            // Username order, case-insensitive, byte order of the lowercased name.
            let all = try await store.listUsers(UserQuery(limit: 10)).map(\.username)
            #expect(all == ["Albert", "alice", "bob", "carol", "Zoe", "álvaro"])
            // Prefix of username, email or name; case-insensitive; nothing else.
            let al = try await store.listUsers(UserQuery(prefix: "AL", limit: 10)).map(\.username)
            #expect(al == ["Albert", "alice", "bob"])  // bob by his name "Alfred Bob"
            #expect(try await store.listUsers(UserQuery(prefix: "lice", limit: 10)).isEmpty)
            #expect(try await store.listUsers(UserQuery(prefix: "á", limit: 10)).map(\.username) == ["álvaro"])
            #expect(try await store.listUsers(UserQuery(prefix: "%", limit: 10)).isEmpty)
            // Keyset pagination.
            let first = try await admin.listUsers(UserQuery(limit: 4), cursor: nil)
            #expect(first.items.map(\.username) == ["Albert", "alice", "bob", "carol"])
            let cursor = try #require(first.next_cursor)
            _ = try await admin.createUser(username: "aaron", email: nil, name: nil, password: nil)  // lands before the cursor
            let second = try await admin.listUsers(UserQuery(limit: 4), cursor: cursor)
            #expect(second.items.map(\.username) == ["Zoe", "álvaro"])
            #expect(second.next_cursor == nil)
            // Filters.
            _ = try await admin.disableUser(id: ids["carol"]!)
            #expect(try await store.listUsers(UserQuery(disabled: true, limit: 10)).map(\.username) == ["carol"])
            #expect(!(try await store.listUsers(UserQuery(disabled: false, limit: 10)).map(\.username).contains("carol")))
            _ = try await admin.createGroup(name: "team")
            _ = try await admin.addMember(group: "team", user: ids["bob"]!, role: "member")
            #expect(try await store.listUsers(UserQuery(group: "team", limit: 10)).map(\.username) == ["bob"])
            // A cursor not made by the server is refused, naming the field.
            await #expect(throws: Administration.ValidationError.self) {
                _ = try await admin.listUsers(UserQuery(limit: 4), cursor: "%%%")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func disablingEndsSessionsRevokesGrantsAndDeactivatesTokens(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let dan = try await admin.createUser(username: "dan", email: nil, name: nil, password: "correct horse")
            let (client, _) = try await admin.createClient(Administration.NewClient(name: "app"))
            let now = Clock.system.nowSeconds
            try await store.insertSession(SessionRecord(hash: "h1", id: "s1", userID: dan.id, authTime: now, createdAt: now, expiresAt: now + 600))
            try await store.insertGrant(
                GrantRecord(id: "g1", clientID: client.id, userID: dan.id, scope: .empty, createdAt: now, revokedAt: nil),
                refreshToken: nil)
            #expect(try await store.isAccessTokenRevoked(jti: "j", grantID: nil, clientID: client.id, userID: dan.id) == false)
            #expect(try await store.sessions(userID: dan.id, at: now).map(\.id) == ["s1"])

            let disabled = try await admin.disableUser(id: dan.id)
            #expect(disabled.isDisabled)
            #expect(try await store.sessions(userID: dan.id, at: now).isEmpty)
            #expect(try await store.grant(id: "g1")?.revokedAt != nil)
            // A token without a grant (or from another grant) is inactive too: the user is disabled.
            #expect(try await store.isAccessTokenRevoked(jti: "j", grantID: nil, clientID: client.id, userID: dan.id))
            // A client's own token is unaffected.
            #expect(try await store.isAccessTokenRevoked(jti: "j", grantID: nil, clientID: client.id, userID: nil) == false)

            let enabled = try await admin.enableUser(id: dan.id)
            #expect(!enabled.isDisabled)
            #expect(try await store.isAccessTokenRevoked(jti: "j", grantID: nil, clientID: client.id, userID: dan.id) == false)
            let actions = try await store.listAuditEvents(AuditQuery(target: "user:" + dan.id)).map(\.action)
            #expect(actions == ["user.enabled", "user.disabled", "user.created"])
        }
    }

    @Test(arguments: TestDatabase.available)
    func deletingAUserRemovesEverythingAndNeverReusesTheID(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let dan = try await admin.createUser(username: "dan", email: nil, name: nil, password: nil)
            _ = try await admin.createGroup(name: "team")
            _ = try await admin.addMember(group: "team", user: "dan", role: "member")
            _ = try await admin.grantPermissions(service: "gatehouse", user: "dan", permissions: ["admin"])
            let now = Clock.system.nowSeconds
            try await store.insertSession(SessionRecord(hash: "h1", id: "s1", userID: dan.id, authTime: now, createdAt: now, expiresAt: now + 600))
            try await store.insertIdentity(
                IdentityRecord(providerID: "github", subject: "42", userID: dan.id, username: nil, email: nil, createdAt: now))

            try await admin.deleteUser(id: dan.id)
            #expect(try await store.user(id: dan.id) == nil)
            #expect(try await store.isDeletedUser(id: dan.id))
            #expect(try await store.memberships(userID: dan.id).isEmpty)
            #expect(try await store.permissions(service: "gatehouse", userID: dan.id).isEmpty)
            #expect(try await store.identities(userID: dan.id).isEmpty)
            #expect(try await store.session(hash: "h1") == nil)
            #expect(try await store.isAccessTokenRevoked(jti: "j", grantID: nil, clientID: "any", userID: dan.id))
            await #expect(throws: AdminError.notFound("no user '\(dan.id)'")) { try await admin.deleteUser(id: dan.id) }
            // The name is free again; the id is not.
            let again = try await admin.createUser(username: "dan", email: nil, name: nil, password: nil)
            #expect(again.id != dan.id)
        }
    }

    @Test(arguments: TestDatabase.available)
    func updatesValidateAndKeepUsernamesUnique(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let dan = try await admin.createUser(
                username: "dan", email: "dan@example.com", name: "Dan", password: nil, profile: UserProfile(emailVerified: true))
            _ = try await admin.createUser(username: "eve", email: nil, name: nil, password: nil)
            var patch = UserPatch()
            patch.username = "EVE"
            await #expect(throws: AdminError.conflict("the username 'EVE' is already taken")) {
                _ = try await admin.updateUser(id: dan.id, patch)
            }
            patch = UserPatch()
            patch.email = .some("new@example.com")
            patch.name = .some(nil)
            let updated = try await admin.updateUser(id: dan.id, patch)
            #expect(updated.email == "new@example.com")
            #expect(updated.profile.emailVerified == false)  // a new address is not verified
            #expect(updated.name == nil)
            #expect(try await store.listUsers(UserQuery(prefix: "new@", limit: 5)).map(\.id) == [dan.id])
            patch = UserPatch()
            patch.picture = .some("javascript:alert(1)")
            do {
                _ = try await admin.updateUser(id: dan.id, patch)
                Issue.record("a javascript: picture was accepted")
            } catch let e as Administration.ValidationError {
                #expect(e.field == "picture")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func secretRotationWithGraceKeepsThePreviousSecretUntilItExpires(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            var new = Administration.NewClient(name: "svc")
            new.grantTypes = [GrantType.clientCredentials]
            let (client, first) = try await admin.createClient(new)
            let authenticator = ClientAuthenticator(clients: store)
            func works(_ secret: String?) async -> Bool {
                let params = try! RequestParameters.decodeForm(Data())
                let basic = "Basic " + Data("\(client.id):\(secret ?? "")".utf8).base64EncodedString()
                return (try? await authenticator.authenticate(params, authorization: basic)) != nil
            }
            #expect(await works(first))
            let (_, second) = try await admin.rotateSecret(clientID: client.id, grace: 600)
            #expect(await works(first))
            #expect(await works(second))
            // Rotating again without grace ends both older secrets.
            let (rotated, third) = try await admin.rotateSecret(clientID: client.id, grace: nil)
            #expect(rotated.previousSecretHash == nil)
            #expect(!(await works(first)))
            #expect(!(await works(second)))
            #expect(await works(third))
            await #expect(throws: Administration.ValidationError.self) {
                _ = try await admin.rotateSecret(clientID: client.id, grace: 90_000)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func scopesInUseNeedForceAndBuiltInsStay(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            _ = try await admin.createScope(name: "notes:read", description: nil, isDefault: false)
            var new = Administration.NewClient(name: "app")
            new.scope = "openid notes:read"
            let (client, _) = try await admin.createClient(new)
            await #expect(throws: AdminError.self) { try await admin.deleteScope(name: "openid", force: true) }
            await #expect(throws: AdminError.self) { try await admin.deleteScope(name: ScopeRecord.admin, force: true) }
            do {
                try await admin.deleteScope(name: "notes:read", force: false)
                Issue.record("a scope in use was deleted without force")
            } catch let e as AdminError {
                #expect(e.description.contains(client.id))
            }
            try await admin.deleteScope(name: "notes:read", force: true)
            #expect(try await store.scope(name: "notes:read") == nil)
            let after = try #require(try await store.client(id: client.id))
            #expect(after.scope == Scope(["openid"]))
            #expect(!after.defaultScope.contains("notes:read"))
        }
    }

    @Test(arguments: TestDatabase.available)
    func auditEventsFilterAndPageNewestFirst(db: TestDatabase) async throws {
        try await db.withStore { store in
            let log = AuditLog(store: store, events: .none, clock: .system)
            for i in 0..<5 {
                try await log.record("thing.done", actor: .client("c\(i % 2)"), target: "user:u\(i)", detail: ["n": String(i)])
            }
            try await log.record("other.done", actor: .cli, target: "user:u0")
            let admin = Self.admin(store)
            let page1 = try await admin.auditEvents(AuditQuery(action: "thing.done", limit: 2), cursor: nil)
            #expect(page1.items.map { $0.detail["n"] } == ["4", "3"])
            let page2 = try await admin.auditEvents(AuditQuery(action: "thing.done", limit: 2), cursor: page1.next_cursor)
            #expect(page2.items.map { $0.detail["n"] } == ["2", "1"])
            let page3 = try await admin.auditEvents(AuditQuery(action: "thing.done", limit: 2), cursor: page2.next_cursor)
            #expect(page3.items.map { $0.detail["n"] } == ["0"])
            #expect(page3.next_cursor == nil)
            #expect(try await store.listAuditEvents(AuditQuery(actor: "client:c1")).count == 2)
            #expect(try await store.listAuditEvents(AuditQuery(target: "user:u0")).map(\.action) == ["other.done", "thing.done"])
            let now = Clock.system.nowSeconds
            #expect(try await store.listAuditEvents(AuditQuery(since: now + 10)).isEmpty)
            #expect(try await store.listAuditEvents(AuditQuery(until: now - 10)).isEmpty)
            #expect(try await store.purgeAuditEvents(before: now + 10) == 6)
            #expect(try await store.listAuditEvents(AuditQuery()).isEmpty)
        }
    }

    @Test(arguments: TestDatabase.available)
    func activityCountersAddUpAcrossFlushes(db: TestDatabase) async throws {
        try await db.withStore { store in
            let counter = ActivityCounter()
            counter.count(ActivityCounter.tokensIssued, 3)
            counter.count(ActivityCounter.signInFailures)
            try await store.addActivity(counter.drain())
            counter.count(ActivityCounter.tokensIssued, 2)
            try await store.addActivity(counter.drain())
            #expect(counter.drain().isEmpty)
            let stats = try await store.stats(at: Clock.system.nowSeconds)
            #expect(stats.last_hour.tokens_issued == 5)
            #expect(stats.last_day.tokens_issued == 5)
            #expect(stats.last_hour.signin_failures == 1)
            #expect(stats.clients == 0)
        }
    }

    @Test(arguments: TestDatabase.available)
    func webhookDeliveriesListByStatusAndRetry(db: TestDatabase) async throws {
        try await db.withStore { store in
            let now = Clock.system.nowSeconds
            try await store.enqueueEvents([
                OutboxRecord(id: "e1", event: "user.created", url: "https://hooks.example.com/a?token=secret", payload: "{}", nextAttemptAt: now, createdAt: now - 3),
                OutboxRecord(id: "e2", event: "user.created", url: "https://hooks.example.com/a", payload: "{}", nextAttemptAt: now, createdAt: now - 2, failedAt: now - 1),
                OutboxRecord(id: "e3", event: "user.login", url: "https://hooks.example.com/a", payload: "{}", nextAttemptAt: now, createdAt: now - 1, deliveredAt: now),
            ])
            let admin = Self.admin(store)
            #expect(try await admin.events(status: nil, cursor: nil, limit: 2).items.map(\.id) == ["e3", "e2"])
            let rest = try await admin.events(status: nil, cursor: try await admin.events(status: nil, cursor: nil, limit: 2).next_cursor, limit: 2)
            #expect(rest.items.map(\.id) == ["e1"])
            #expect(rest.items.first?.url.contains("secret") == false)  // URLs are shown redacted
            #expect(try await admin.events(status: .failed, cursor: nil, limit: 10).items.map(\.id) == ["e2"])
            #expect(try await admin.events(status: .pending, cursor: nil, limit: 10).items.map(\.id) == ["e1"])
            let retried = try await admin.retryEvent(id: "e2")
            #expect(retried.status == "pending")
            #expect(retried.attempts == 0)
            await #expect(throws: AdminError.self) { _ = try await admin.retryEvent(id: "e3") }  // delivered
        }
    }
}
