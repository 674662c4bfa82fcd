import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import JWTKit
import Testing

@testable import GatehouseServer

/// RFC 7009 and RFC 7662.
@Suite("Revocation and introspection")
struct RevocationIntrospectionTests {
    @Test(arguments: TestDatabase.available)
    func introspectionReportsClaimsAndInactiveTokens(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let token = try #require(try await h.token(c).string("access_token"))
            let r = try await h.post("/oauth2/introspect", [("token", token)], auth: c)
            #expect(r.status == .ok)
            #expect(r.headers[.cacheControl] == "no-store")
            #expect(r["active"] as? Bool == true)
            #expect(r.string("client_id") == c.id)
            #expect(r.string("scope") == "read write")
            #expect(r.string("token_type") == "Bearer")
            #expect(r.string("iss") == Harness.issuer)
            #expect(r["exp"] as? Int == 1_800_000_600)

            for garbage in ["garbage", "a.b.c", "", String(repeating: "x", count: 5000), token + "x"] {
                let g = try await h.post("/oauth2/introspect", [("token", garbage)], auth: c)
                if garbage.isEmpty {
                    #expect(g.error == "invalid_request")
                } else {
                    #expect(g.body == #"{"active":false}"#, "\(garbage.prefix(20))")
                }
            }
            // Expired.
            h.testClock.advance(seconds: 601)
            #expect(try await h.post("/oauth2/introspect", [("token", token)], auth: c).body == #"{"active":false}"#)
        }
    }

    @Test func foreignAndMistypedTokensAreInactive() async throws {
        try await Harness.run(.sqlite) { h in
            let c = try await h.makeClient()
            let snapshot = try h.services.keys.snapshot
            let now = Int64(1_800_000_000)
            let claims = AccessTokenClaims(
                iss: Harness.issuer, sub: c.id, aud: Audience([Harness.issuer]), client_id: c.id, scope: "read",
                jti: "j", iat: now, exp: now + 60, grant_id: nil)
            // Same key, but typ JWT (an ID token is not an access token, RFC 9068 §4).
            var jwtHeader = JWTHeader()
            jwtHeader.typ = "JWT"
            let mistyped = try await snapshot.collection.sign(claims, kid: JWKIdentifier(string: snapshot.signingKey.kid), header: jwtHeader)
            // Another issuer's key with our kid.
            let foreign = JWTKeyCollection()
            await foreign.add(ecdsa: ES256PrivateKey(), kid: JWKIdentifier(string: snapshot.signingKey.kid))
            var atHeader = JWTHeader()
            atHeader.typ = "at+jwt"
            let forged = try await foreign.sign(claims, header: atHeader)
            // alg none.
            let none = Base64URL.encode(Data(#"{"alg":"none","typ":"at+jwt","kid":"\#(snapshot.signingKey.kid)"}"#.utf8)) + "."
                + Base64URL.encode(try JSONEncoder().encode(claims)) + "."
            // Right key, wrong issuer.
            var otherIssuer = claims
            otherIssuer.iss = "https://evil.example"
            let wrongIss = try await snapshot.collection.sign(otherIssuer, kid: JWKIdentifier(string: snapshot.signingKey.kid), header: atHeader)
            // The control: properly made, it is active.
            let good = try await snapshot.collection.sign(claims, kid: JWKIdentifier(string: snapshot.signingKey.kid), header: atHeader)
            #expect(try await h.post("/oauth2/introspect", [("token", good)], auth: c)["active"] as? Bool == true)
            for (name, t) in [("typ JWT", mistyped), ("forged", forged), ("alg none", none), ("other iss", wrongIss)] {
                let r = try await h.post("/oauth2/introspect", [("token", t)], auth: c)
                #expect(r.body == #"{"active":false}"#, "\(name)")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func introspectionNeedsAConfidentialClient(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let token = try #require(try await h.token(c).string("access_token"))
            let none = try await h.post("/oauth2/introspect", [("token", token)])
            #expect(none.status == .unauthorized)
            #expect(none.headers[.wwwAuthenticate] != nil)
            let pub = try await h.makeClient(grantTypes: ["refresh_token"], isPublic: true)
            let r = try await h.post("/oauth2/introspect", [("token", token), ("client_id", pub.id)])
            #expect(r.status == .unauthorized)
            #expect(r.error == "invalid_client")
        }
    }

    @Test(arguments: TestDatabase.available)
    func revokingAccessAndRefreshTokens(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let other = try await h.makeClient()
            let token = try #require(try await h.token(c).string("access_token"))

            // Another client cannot revoke it (answered 200, nothing changes).
            let foreign = try await h.post("/oauth2/revoke", [("token", token)], auth: other)
            #expect(foreign.status == .ok)
            #expect(try await RefreshTokenTests.isActive(h, c, token))

            let revoked = try await h.post("/oauth2/revoke", [("token", token), ("token_type_hint", "access_token")], auth: c)
            #expect(revoked.status == .ok)
            #expect(revoked.headers[.cacheControl] == "no-store")
            #expect(revoked.body.isEmpty)
            #expect(try await RefreshTokenTests.isActive(h, c, token) == false)
            // Any confidential client (a resource server) sees it inactive too.
            #expect(try await RefreshTokenTests.isActive(h, other, token) == false)

            // Unknown tokens: 200 (RFC 7009 §2.2). Missing token: invalid_request. No auth: 401.
            #expect(try await h.post("/oauth2/revoke", [("token", "nope")], auth: c).status == .ok)
            #expect(try await h.post("/oauth2/revoke", [], auth: c).error == "invalid_request")
            #expect(try await h.post("/oauth2/revoke", [("token", token)]).status == .unauthorized)

            // A refresh token: revoking it kills its family's access tokens.
            let (pc, first) = try await RefreshTokenTests.start(h)
            let rt = try #require(first.string("refresh_token"))
            let at = try #require(first.string("access_token"))
            #expect(try await RefreshTokenTests.isActive(h, pc, at))
            #expect(try await h.post("/oauth2/revoke", [("token", rt)], auth: pc).status == .ok)
            #expect(try await RefreshTokenTests.isActive(h, pc, at) == false)
            #expect(try await RefreshTokenTests.isActive(h, pc, rt) == false)
            #expect(try await RefreshTokenTests.refresh(h, pc, rt).error == "invalid_grant")
        }
    }

    @Test(arguments: TestDatabase.available)
    func deletingAClientDeactivatesItsTokens(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let rs = try await h.makeClient()
            let token = try #require(try await h.token(c).string("access_token"))
            #expect(try await RefreshTokenTests.isActive(h, rs, token))
            try await h.admin.deleteClient(id: c.id)
            #expect(try await RefreshTokenTests.isActive(h, rs, token) == false)
            #expect(try await h.token(c).status == .unauthorized)
        }
    }

    @Test(arguments: TestDatabase.available)
    func rotatingASecretRetiresTheOldOne(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            let newSecret = try await h.admin.rotateSecret(clientID: c.id)
            #expect(try await h.token(c).status == .unauthorized)
            #expect(try await h.token((c.id, newSecret)).status == .ok)
        }
    }
}
