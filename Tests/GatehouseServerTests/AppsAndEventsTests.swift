import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

@testable import GatehouseServer

/// Self-service app registration (`apps:create`) and lifecycle events recorded in the outbox.
@Suite("App registration and events")
struct AppsAndEventsTests {
    @Test(arguments: TestDatabase.available)
    func usersWithAppsCreateRegisterAppsAndSeeTheSecretOnce(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let dan = try await h.makeUser()
            let eve = try await h.makeUser()
            // The service `gatehouse` exists from the start (migration 8).
            try await h.admin.grant(service: "gatehouse", username: dan.username, permissions: ["apps:create"])
            _ = try await h.admin.createScope(name: "all", description: "everything", isDefault: false, requiredRole: "admin")

            // Without the permission: no page, no form.
            let other = Browser(h)
            try await other.signIn(eve.username)
            #expect(try await other.get("/account/apps").status == .forbidden)
            #expect(!(try await other.get("/account").body.contains("register-app")))

            let browser = Browser(h)
            try await browser.signIn(dan.username)
            #expect(try await browser.get("/account").body.contains(#"id="register-app""#))
            let form = try await browser.get("/account/apps")
            #expect(form.status == .ok)
            // A role-restricted scope cannot be registered here.
            let refused = try await browser.submit(
                form, to: "/account/apps", [("name", "Mine"), ("redirect_uri", "https://mine.example/cb"), ("scope", "openid all")])
            #expect(refused.status == .badRequest)
            // A bad redirect URI is refused with the registration rule's message.
            let bad = try await browser.submit(
                form, to: "/account/apps", [("name", "Mine"), ("redirect_uri", "http://mine.example/cb"), ("scope", "openid")])
            #expect(bad.status == .badRequest)
            let done = try await browser.submit(
                form, to: "/account/apps", [("name", "Mine"), ("redirect_uri", "https://mine.example/cb"), ("scope", "openid")])
            #expect(done.status == .seeOther)
            #expect(done.location == "/account/apps/created")
            #expect(done.location?.contains("secret") == false)
            let shown = try await browser.get("/account/apps/created")
            let id = try #require(Harness.element(id: "client-id", in: shown.body))
            let secret = try #require(Harness.element(id: "client-secret", in: shown.body))
            let client = try #require(try await h.store.client(id: id))
            #expect(client.name == "Mine" && client.redirectURIs == ["https://mine.example/cb"])
            #expect(Secrets.verify(secret, hash: client.secretHash ?? ""))
            // Shown once.
            #expect(try await browser.get("/account/apps/created").status == .badRequest)
        }
    }

    @Test(arguments: TestDatabase.available)
    func revocationAndSignInAreRecordedForWebhooks(db: TestDatabase) async throws {
        let hook = WebhookConfig(url: "https://hooks.example/gatehouse", secret: "0123456789abcdef0123")
        try await Harness.run(db, webhooks: [hook]) { h in
            let user = try await h.makeUser()
            let app = try await h.makeClient(grantTypes: ["refresh_token"], scope: "read", allowPassword: true)
            let browser = Browser(h)
            try await browser.signIn(user.username)
            let tokens = try await h.token(
                app, [("grant_type", "password"), ("username", user.username), ("password", Harness.password)])
            let refresh = try #require(tokens.string("refresh_token"))
            #expect(try await h.post("/oauth2/revoke", [("token", refresh)], auth: app).status == .ok)
            let events = try await h.store.claimDueEvents(at: h.testClock.clock.nowSeconds + 1, limit: 50, lease: 60)
            let names = events.map(\.event)
            #expect(names.contains(Events.userLogin))
            #expect(names.contains(Events.grantRevoked))
            #expect(!names.contains(Events.tokenIssued))  // only for hooks that ask for it
            let revoked = try #require(events.first { $0.event == Events.grantRevoked })
            #expect(revoked.url == hook.url)
            #expect(revoked.payload.contains(#""reason":"revoked_by_client""#))
            #expect(revoked.payload.contains(user.id))
        }
    }
}
