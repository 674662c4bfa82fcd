import Foundation
import GatehouseCore
import GatehouseTestSupport
import HTTPTypes
import Testing

@testable import GatehouseServer

/// Role-restricted scopes, and the compatibility profiles' mounting (the wire shapes are covered end to end
/// in Tests/EndToEnd/test_compat.py).
@Suite("Compatibility profiles and roles")
struct CompatAndRolesTests {
    static let paths = [
        "/api/token-auth/", "/api/v1/users/me/", "/authorization/oauth2/authorize/", "/auth/check", "/auth/public-key",
        "/api/oauth/token/info", "/api/oauth/authorize", "/user_details/", "/o/authorize/", "/register-by-token/x/",
    ]

    @Test(arguments: TestDatabase.available)
    func profilesThatAreOffServeNothing(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            for path in Self.paths {
                let status = try await h.get(path).status
                #expect(status == .notFound, "\(path)")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func eachProfileMountsOnlyItsOwnRoutes(db: TestDatabase) async throws {
        var options = CompatOptions()
        options.profiles = [.doorkeeper]
        try await Harness.run(db, compat: options) { h in
            let info = try await h.get("/api/oauth/token/info").status
            let dot = try await h.get("/user_details/").status
            let lego = try await h.get("/api/v1/users/me/").status
            #expect(info == .unauthorized)
            #expect(dot == .notFound)
            #expect(lego == .notFound)
        }
    }

    @Test(arguments: TestDatabase.available)
    func scopesThatNeedARoleAreGrantedOnlyToItsHolders(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            _ = try await h.admin.createScope(name: "all", description: "everything", isDefault: false, requiredRole: "admin")
            var new = Administration.NewClient(name: "Role app")
            new.redirectURIs = [Harness.redirect]
            new.scope = "openid all"
            new.skipConsent = true
            new.grantTypes = ["authorization_code"]
            new.allowPasswordGrant = true
            let (record, secret) = try await h.admin.createClient(new)
            let app = Harness.App(id: record.id, secret: secret ?? "", record: record)
            let plain = try await h.makeUser()
            let boss = try await h.makeUser()
            _ = try await h.admin.createGroup(name: "webkom")
            _ = try await h.admin.addMember(group: "webkom", username: boss.username, role: "admin")

            // Authorization endpoint: access_denied for the user without the role, a code for the holder.
            let refused = Browser(h)
            try await refused.signIn(plain.username)
            let denied = try await refused.get(Harness.authorizePath(app, scope: "openid all"))
            #expect(denied.status == .found)
            #expect(denied.redirectParameters["error"] == "access_denied")
            #expect(denied.redirectParameters["iss"] == Harness.issuer)
            let allowed = Browser(h)
            try await allowed.signIn(boss.username)
            let granted = try await allowed.get(Harness.authorizePath(app, scope: "openid all"))
            #expect(granted.redirectParameters["code"] != nil)
            // Asking only for unrestricted scopes works for anyone.
            #expect(try await refused.get(Harness.authorizePath(app, scope: "openid")).redirectParameters["code"] != nil)

            // Password grant: the same rule.
            let noRole = try await h.post(
                "/oauth2/token", [("grant_type", "password"), ("username", plain.username), ("password", Harness.password), ("scope", "all")],
                auth: app.credentials)
            #expect(noRole.error == "access_denied")
            let withRole = try await h.post(
                "/oauth2/token", [("grant_type", "password"), ("username", boss.username), ("password", Harness.password), ("scope", "all")],
                auth: app.credentials)
            #expect(withRole.status == .ok)
        }
    }

    /// dgp's `next` (the user token rides on it): allowed hosts and path prefixes only, and nothing a browser
    /// or a server would read as another path (control characters, dot segments in any spelling).
    @Test(arguments: [
        ("https://app.example.com/app/x", true), ("https://app.example.com/app/", true),
        ("https://app.example.com/admin", false), ("https://app.example.com/app/../admin", false),
        ("https://app.example.com/app/%2e%2e/admin", false), ("https://app.example.com/app/.%2E/admin", false),
        ("https://app.example.com/app/\t../admin", false), ("https://app.example.com/app/.\n./admin", false),
        ("https://app.example.com/app/..;/admin", false), ("https://app.example.com/app/..%5cadmin", false),
        ("https://app.example.com/app/%2F..%2Fadmin", false), ("https://app.example.com/app//x", false),
        ("https://app.example.com/app/ x", false), ("https://evil.com/app/x", false),
        ("https://app.example.com@evil.com/app/", false), ("http://app.example.com/app/x", false),
        ("https://app.example.com/app/x#frag", false),
    ])
    func dgpNextStaysUnderItsPaths(next: String, allowed: Bool) {
        let got = DGPTokens.allowedNext(next, hosts: ["app.example.com"], paths: ["/app/"])
        #expect((got != nil) == allowed, "\(next)")
    }
}
