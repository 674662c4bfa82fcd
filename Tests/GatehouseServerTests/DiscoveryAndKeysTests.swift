import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

@testable import GatehouseServer

/// RFC 8414 metadata, the JWKS, and key rotation on a live server.
@Suite("Discovery and keys")
struct DiscoveryAndKeysTests {
    @Test(arguments: TestDatabase.available)
    func metadataIsTruthful(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            _ = try await h.admin.createScope(name: "read", description: "Read", isDefault: false)
            let oidc = try await h.get("/.well-known/openid-configuration")
            let oauth = try await h.get("/.well-known/oauth-authorization-server")
            #expect(oidc.status == .ok)
            #expect(oidc.body == oauth.body)
            let m = oidc.json
            #expect(m["issuer"] as? String == Harness.issuer)
            #expect(m["token_endpoint"] as? String == Harness.issuer + "/oauth2/token")
            #expect(m["jwks_uri"] as? String == Harness.issuer + "/.well-known/jwks.json")
            #expect(m["revocation_endpoint"] as? String == Harness.issuer + "/oauth2/revoke")
            #expect(m["introspection_endpoint"] as? String == Harness.issuer + "/oauth2/introspect")
            #expect(
                m["grant_types_supported"] as? [String]
                    == [
                        "authorization_code", "client_credentials", "password", "refresh_token",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ])
            #expect(m["token_endpoint_auth_methods_supported"] as? [String] == ["client_secret_basic", "client_secret_post", "none"])
            #expect((m["scopes_supported"] as? [String])?.contains("read") == true)
            // The OpenID Provider part (OIDC Discovery §3, RFC 9207 §3), and only what is served.
            #expect(m["authorization_endpoint"] as? String == Harness.issuer + "/oauth2/authorize")
            #expect(m["userinfo_endpoint"] as? String == Harness.issuer + "/oauth2/userinfo")
            #expect(m["end_session_endpoint"] as? String == Harness.issuer + "/oauth2/logout")
            #expect(m["response_types_supported"] as? [String] == ["code"])
            #expect(m["response_modes_supported"] as? [String] == ["query"])
            #expect(m["code_challenge_methods_supported"] as? [String] == ["S256"])
            #expect(m["authorization_response_iss_parameter_supported"] as? Bool == true)
            #expect(m["subject_types_supported"] as? [String] == ["public"])
            #expect(m["id_token_signing_alg_values_supported"] as? [String] == ["ES256"])
            #expect(m["request_parameter_supported"] as? Bool == false)
            #expect(m["request_uri_parameter_supported"] as? Bool == false)
            #expect((m["claims_supported"] as? [String])?.contains("email_verified") == true)
            #expect(m["registration_endpoint"] == nil)
            // Every advertised endpoint answers (POST-only ones with 405 to GET, not 404).
            for key in ["token_endpoint", "revocation_endpoint", "introspection_endpoint", "jwks_uri",
                        "authorization_endpoint", "userinfo_endpoint", "end_session_endpoint"] {
                let path = String((m[key] as! String).dropFirst(Harness.issuer.count))
                #expect(try await h.get(path).status != .notFound, "\(key)")
            }
        }
    }

    @Test func jwksHasOnlyPublicMembers() async throws {
        try await Harness.run(.sqlite) { h in
            let r = try await h.get("/.well-known/jwks.json")
            #expect(r.headers[.contentType] == "application/jwk-set+json")
            let keys = try #require(r.json["keys"] as? [[String: Any]])
            #expect(keys.count == 1)
            let k = keys[0]
            #expect(k["kid"] as? String == (try h.services.keys.snapshot.signingKey.kid))
            #expect(k["alg"] as? String == "ES256")
            #expect(k["use"] as? String == "sig")
            #expect(k["kty"] as? String == "EC")
            for privateMember in ["d", "p", "q", "dp", "dq", "qi"] { #expect(k[privateMember] == nil) }
        }
    }

    @Test(arguments: TestDatabase.available)
    func rotationKeepsOldTokensValidUntilTheyExpire(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let oldKid = try h.services.keys.snapshot.signingKey.kid
            let oldToken = try #require(try await h.token(c).string("access_token"))

            try await KeyRing.rotate(store: h.store, algorithm: .rs256, clock: h.testClock.clock)
            try await h.services.keys.reload(from: h.store)

            let newToken = try #require(try await h.token(c).string("access_token"))
            let header = Harness.decodeJWT(newToken).header
            #expect(header["alg"] as? String == "RS256")
            #expect(header["kid"] as? String != oldKid)
            let kids = (try await h.get("/.well-known/jwks.json").json["keys"] as? [[String: Any]])?.compactMap { $0["kid"] as? String }
            #expect(kids?.count == 2)
            #expect(kids?.contains(oldKid) == true)
            #expect(try await RefreshTokenTests.isActive(h, c, oldToken))
            #expect(try await RefreshTokenTests.isActive(h, c, newToken))

            // Past the retention (token lifetime + 60 s) the old key is retired and its private half wiped.
            h.testClock.advance(seconds: h.services.settings.keyRetention)
            try await h.services.keys.reload(from: h.store)
            let after = (try await h.get("/.well-known/jwks.json").json["keys"] as? [[String: Any]])?.compactMap { $0["kid"] as? String }
            #expect(after == [header["kid"] as! String])
            let stored = try await h.store.listKeys().first { $0.kid == oldKid }
            #expect(stored?.retiredAt != nil)
            #expect(stored?.privatePEM == nil)
        }
    }

    /// Instances with different token lifetimes share one database: the longest retention wins, so a
    /// short-lived instance never retires a key whose tokens a long-lived instance signed.
    @Test(arguments: TestDatabase.available)
    func retentionIsTheLargestOfAllInstances(db: TestDatabase) async throws {
        let clock = TestClock()
        try await db.withStore(clock: clock.clock) { store in
            let long = KeyRing(retention: 3600, clock: clock.clock)
            try await long.bootstrap(store: store, algorithm: .es256)
            let oldKid = try long.snapshot.signingKey.kid
            try await KeyRing.rotate(store: store, algorithm: .es256, clock: clock.clock)
            let short = KeyRing(retention: 70, clock: clock.clock)
            clock.advance(seconds: 600)
            let seen = try await short.reload(from: store)
            #expect(seen.publishedKeys.map(\.kid).contains(oldKid))
            #expect(try await store.keyRetention() == 3600)
            clock.advance(seconds: 3000)
            #expect(try await short.reload(from: store).publishedKeys.map(\.kid).contains(oldKid) == false)
        }
    }

    @Test(arguments: SigningAlgorithm.allCases)
    func everyAlgorithmSignsTokensThatIntrospect(alg: SigningAlgorithm) async throws {
        try await Harness.run(.sqlite, configure: { $0.signingAlgorithm = alg }) { h in
            let c = try await h.makeClient()
            let token = try #require(try await h.token(c).string("access_token"))
            #expect(Harness.decodeJWT(token).header["alg"] as? String == alg.rawValue)
            #expect(try await RefreshTokenTests.isActive(h, c, token))
        }
    }
}

/// Configuration precedence and validation.
@Suite("Configuration")
struct ConfigurationTests {
    @Test func defaults() throws {
        let c = try GatehouseConfiguration.load(flags: [:], environment: [:])
        #expect(c.host == "127.0.0.1")
        #expect(c.port == 8080)
        #expect(c.issuer == "http://127.0.0.1:8080")
        #expect(c.database.description == "sqlite://gatehouse.sqlite")
        #expect(c.settings.accessTokenLifetime == 600)
        #expect(c.settings.refreshGracePeriod == 0)
        #expect(c.settings.signingAlgorithm == .es256)
    }

    @Test func flagsBeatEnvironmentBeatFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gh-\(UUID()).json").path
        try #"{"port": 9001, "access_token_ttl": "5m", "issuer": "https://file.example", "refresh_grace_period": 3}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try GatehouseConfiguration.load(
            flags: ["config": path, "port": "9003"],
            environment: ["GATEHOUSE_PORT": "9002", "GATEHOUSE_ISSUER": "https://env.example"])
        #expect(c.port == 9003)
        #expect(c.issuer == "https://env.example")
        #expect(c.settings.accessTokenLifetime == 300)
        #expect(c.settings.refreshGracePeriod == 3)
    }

    @Test(arguments: [
        (["port": "http"], "--port"),
        (["port": "70000"], "--port"),
        (["issuer": "http://auth.example.com"], "--issuer"),
        (["issuer": "https://auth.example.com/?x=1"], "--issuer"),
        (["issuer": "not a url"], "--issuer"),
        (["database_url": "mysql://x"], "--database"),
        (["access_token_ttl": "0"], "--access-token-ttl"),
        (["access_token_ttl": "ten minutes"], "--access-token-ttl"),
        (["signing_algorithm": "HS256"], "--signing-algorithm"),
        (["log_level": "loud"], "--log-level"),
    ])
    func malformedSettingsNameTheSetting(flags: [String: String], name: String) throws {
        #expect {
            try GatehouseConfiguration.load(flags: flags, environment: [:])
        } throws: { error in
            "\(error)".contains(name)
        }
    }

    @Test func hostsAndIssuers() throws {
        #expect(try GatehouseConfiguration.load(flags: ["host": "::1"], environment: [:]).issuer == "http://[::1]:8080")
        // Listening beyond loopback needs the public issuer spelled out.
        #expect { try GatehouseConfiguration.load(flags: ["host": "0.0.0.0"], environment: [:]) } throws: {
            "\($0)".contains("--issuer")
        }
        let c = try GatehouseConfiguration.load(flags: ["host": "0.0.0.0", "issuer": "https://auth.example.com"], environment: [:])
        #expect(c.issuer == "https://auth.example.com")
        #expect { try GatehouseConfiguration.load(flags: ["issuer": "http://127.0.0.1.evil.example"], environment: [:]) } throws: { _ in true }
    }

    @Test func environmentErrorsNameTheVariable() throws {
        #expect {
            try GatehouseConfiguration.load(flags: [:], environment: ["GATEHOUSE_PORT": "x"])
        } throws: { "\($0)".contains("GATEHOUSE_PORT") }
    }

    @Test func unknownConfigFileKeysAreRefused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gh-\(UUID()).json").path
        try #"{"prot": 1}"#.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect { try GatehouseConfiguration.load(flags: ["config": path], environment: [:]) } throws: { "\($0)".contains("prot") }
    }

    @Test(arguments: [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600), ("30d", 2_592_000)] as [(String, Int64)])
    func durations(text: String, seconds: Int64) {
        #expect(Setting.parseDuration(text) == seconds)
    }
}
