import Foundation
import JWTKit
import Testing

@testable import GatehouseCore

/// Signing keys (RFC 7517/7518/8037 JWKs), the key ring's rotation plan, and sealed refresh successors.
@Suite("Tokens and keys")
struct TokensTests {
    @Test(arguments: SigningAlgorithm.allCases)
    func keysRoundTripThroughPEMAndVerifyThroughTheirJWK(alg: SigningAlgorithm) async throws {
        let key = try SigningKey.generate(alg, kid: "k-\(alg.rawValue)")
        let reloaded = try SigningKey(kid: key.kid, algorithm: alg, pem: key.pemRepresentation)
        #expect(try reloaded.publicJWK() == key.publicJWK())

        let jwk = try key.publicJWK()
        #expect(jwk.kid == key.kid)
        #expect(jwk.alg == alg.rawValue)
        #expect(jwk.use == "sig")

        // Sign with the private key; verify with only the published JWK (as a resource server would).
        let signer = JWTKeyCollection()
        await reloaded.add(to: signer)
        var header = JWTHeader()
        header.typ = "at+jwt"
        let claims = AccessTokenClaims(
            iss: "https://i", sub: "s", aud: Audience(["a"]), client_id: "c", scope: "x", jti: "j", iat: 1, exp: 2,
            grant_id: nil)
        let token = try await signer.sign(claims, kid: JWKIdentifier(string: key.kid), header: header)
        let jwks = String(decoding: try JSONEncoder().encode(["keys": [jwk]]), as: UTF8.self)
        let verifier = JWTKeyCollection()
        try await verifier.add(jwksJSON: jwks)
        let verified = try await verifier.verify(token, as: AccessTokenClaims.self)
        #expect(verified == claims)
        // NumericDates are integers, not fractions.
        let payload = String(decoding: Base64URL.decode(String(token.split(separator: ".")[1]))!, as: UTF8.self)
        #expect(payload.contains("\"exp\":2"))
    }

    @Test func audienceIsAStringForOneValueAndAnArrayForMore() throws {
        #expect(String(decoding: try JSONEncoder().encode(Audience(["a"])), as: UTF8.self) == "\"a\"")
        #expect(String(decoding: try JSONEncoder().encode(Audience(["a", "b"])), as: UTF8.self) == "[\"a\",\"b\"]")
        #expect(try JSONDecoder().decode(Audience.self, from: Data("\"a\"".utf8)) == Audience(["a"]))
        #expect(try JSONDecoder().decode(Audience.self, from: Data("[\"a\",\"b\"]".utf8)) == Audience(["a", "b"]))
    }

    static func record(_ kid: String, created: Int64, off: Int64? = nil, retired: Int64? = nil) -> SigningKeyRecord {
        SigningKeyRecord(kid: kid, algorithm: .es256, privatePEM: "pem", createdAt: created, deactivatedAt: off, retiredAt: retired)
    }

    @Test func rotationPlan() {
        let records = [
            Self.record("old", created: 10, off: 100),  // off at 100: published until 100 + retention
            Self.record("gone", created: 5, off: 50, retired: 60),
            Self.record("current", created: 100),
        ]
        let early = KeyRing.plan(records, now: 200, retention: 660)
        #expect(early.signing?.kid == "current")
        #expect(early.published.map(\.kid) == ["current", "old"])
        #expect(early.toRetire == [])
        let late = KeyRing.plan(records, now: 760, retention: 660)
        #expect(late.published.map(\.kid) == ["current"])
        #expect(late.toRetire == ["old"])
        // Two active keys (instances racing on first start): the newest signs, both are published.
        let racing = KeyRing.plan([Self.record("a", created: 1), Self.record("b", created: 2)], now: 3, retention: 10)
        #expect(racing.signing?.kid == "b")
        #expect(racing.published.count == 2)
    }

    @Test func successorsOpenOnlyWithTheOldToken() throws {
        let claims = AccessTokenClaims(
            iss: "https://id.example", sub: "u1", aud: Audience(["api"]), client_id: "c1", scope: "read", jti: "j1",
            iat: 634, exp: 1234, grant_id: "g1")
        let plan = SuccessorSeal.Plan(access: claims, idToken: nil, userID: "u1", refreshToken: "rt2")
        let sealed = try SuccessorSeal.seal(plan, with: "rt1")
        #expect(!sealed.contains("rt2"))
        let opened = try #require(SuccessorSeal.open(sealed, with: "rt1"))
        #expect(opened == plan)
        #expect(opened.access.exp == 1234)
        #expect(SuccessorSeal.open(sealed, with: "rt1x") == nil)
        #expect(SuccessorSeal.open("garbage", with: "rt1") == nil)
    }

    @Test func base64URL() {
        #expect(Base64URL.encode(Data([0xfb, 0xff])) == "-_8")
        #expect(Base64URL.decode("-_8") == Data([0xfb, 0xff]))
        #expect(Base64URL.decode("***") == nil)
    }
}
