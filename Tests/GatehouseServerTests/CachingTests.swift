import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Testing

@testable import GatehouseServer

/// The read caches: changes by another process (the CLI) show within the TTL; this server's own
/// revocations show at once.
@Suite("Caching")
struct CachingTests {
    @Test(arguments: TestDatabase.available)
    func cliChangesShowWithinTheTTLAndLocalRevocationsAtOnce(db: TestDatabase) async throws {
        try await Harness.run(db, configure: { $0.cacheTTL = 1 }) { h in
            let c = try await h.makeClient()
            let rs = try await h.makeClient()
            #expect(try await h.token(c).status == .ok)  // caches the client
            let newSecret = try await h.admin.rotateSecret(clientID: c.id)  // "CLI": straight to the database
            #expect(try await h.token(c).status == .ok)  // still cached
            h.testClock.advance(seconds: 1)
            #expect(try await h.token(c).status == .unauthorized)
            let c2 = (c.id, newSecret)
            let token = try #require(try await h.token(c2).string("access_token"))
            #expect(try await RefreshTokenTests.isActive(h, rs, token))  // caches "not revoked"
            // Revocation through this server: visible immediately despite the cache.
            #expect(try await h.post("/oauth2/revoke", [("token", token)], auth: c2).status == .ok)
            #expect(try await RefreshTokenTests.isActive(h, rs, token) == false)

            let token2 = try #require(try await h.token(c2).string("access_token"))
            #expect(try await RefreshTokenTests.isActive(h, rs, token2))
            try await h.admin.deleteClient(id: c.id)  // "CLI"
            h.testClock.advance(seconds: 1)
            #expect(try await RefreshTokenTests.isActive(h, rs, token2) == false)
        }
    }
}

/// The form decoder (application/x-www-form-urlencoded).
@Suite("Form decoding")
struct FormDecodingTests {
    @Test(arguments: [
        ("plain", "plain"), ("a+b", "a b"), ("a%20b", "a b"), ("%2B%2f", "+/"), ("caf%C3%A9", "caf\u{E9}"), ("", ""),
    ])
    func decodes(raw: String, decoded: String) {
        #expect(FormEncoding.decode(Substring(raw)) == decoded)
    }

    @Test(arguments: ["%", "%2", "%zz", "%C3", "a%G0"])
    func refusesMalformed(raw: String) {
        #expect(FormEncoding.decode(Substring(raw)) == nil)
    }
}
