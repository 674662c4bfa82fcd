import Crypto
import Foundation
import GatehouseResourceServerTestSupport
import JWTKit
import Synchronization
import Testing

@testable import GatehouseCore
@testable import GatehouseResourceServer

/// SECURITY.md "Resource servers": every rejection, table-driven, plus key rotation and the
/// rate-limited JWKS refresh.
@Suite("Token verifier")
struct TokenVerifierTests {
    static let audience = FakeIssuer.audience

    static func verifier(_ issuer: FakeIssuer, now: Now, interval: TimeInterval = 10) -> TokenVerifier {
        issuer.verifier(now: now, interval: interval)
    }

    @Test func acceptsAValidTokenAndExposesItsClaims() async throws {
        let key = try SigningKey.generate(.es256)
        let v = Self.verifier(FakeIssuer(keys: [key]), now: Now())
        let minted = try await Mint.token(key, claims: Mint.claims(extra: ["admin": .bool(true), "level": .number(1), "tags": .array([.string("a")])]))
        let token = try await v.verify(authorizationHeader: "Bearer " + minted)
        #expect(token.claims["admin"] == .bool(true))
        #expect(token.claims["level"] == .number(1))
        #expect(token.claims["tags"] == .array([.string("a")]))
        #expect(token.subject == "user-1")
        #expect(token.clientID == "app")
        #expect(token.scopes == ["notes:read"])
        #expect(token.audience == [Self.audience])
        #expect(token.expiresAt == Date(timeIntervalSince1970: 1_800_000_600))
        #expect(token.claims["jti"]?.string != nil)
    }

    @Test(arguments: SigningAlgorithm.allCases)
    func everyIssuerAlgorithmVerifies(alg: SigningAlgorithm) async throws {
        let key = try SigningKey.generate(alg)
        let v = Self.verifier(FakeIssuer(keys: [key]), now: Now())
        #expect(try await v.verify(try await Mint.token(key)).subject == "user-1")
    }

    enum Forgery: String, CaseIterable, CustomTestStringConvertible {
        case missingIat, nbfAsString, missingJti, missingClientID, algNone, hmacWithPublicKey, tamperedSignature, tamperedPayload, typJWT, typMissing, wrongIssuer, missingIssuer,
            wrongAudience, missingAudience, expired, notYetValid, issuedInTheFuture, jkuHeader, embeddedJWK, unknownKid,
            critHeader, algMismatch, missingKid, garbage
        var testDescription: String { rawValue }
    }

    @Test(arguments: Forgery.allCases)
    func rejects(_ forgery: Forgery) async throws {
        let key = try SigningKey.generate(.es256)
        let attacker = try SigningKey.generate(.es256, kid: "attacker")
        let issuer = FakeIssuer(keys: [key])
        let v = Self.verifier(issuer, now: Now())
        let good = try await Mint.token(key)
        let token: String
        switch forgery {
        case .algNone:
            token = try Mint.raw(header: #"{"alg":"none","typ":"at+jwt","kid":"\#(key.kid)"}"#, claims: Mint.claims())
        case .hmacWithPublicKey:
            // HS256 keyed with the public JWK (the classic alg-confusion attack).
            let jwk = String(decoding: try JSONEncoder().encode(try key.publicJWK()), as: UTF8.self)
            let unsigned = try Mint.raw(header: #"{"alg":"HS256","typ":"at+jwt","kid":"\#(key.kid)"}"#, claims: Mint.claims())
            let input = String(unsigned.dropLast())
            let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(jwk.utf8)))
            token = input + "." + Base64URL.encode(Data(mac))
        case .tamperedSignature:
            var s = Array(good.utf8)
            s[s.count - 5] = s[s.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            token = String(decoding: s, as: UTF8.self)
        case .tamperedPayload:
            let parts = good.split(separator: ".")
            let payload = Base64URL.encode(try JSONEncoder().encode(Mint.claims(scope: "notes:read notes:admin")))
            token = "\(parts[0]).\(payload).\(parts[2])"
        case .typJWT: token = try await Mint.token(key, typ: "JWT")
        case .typMissing: token = try await Mint.token(key, typ: nil)
        case .wrongIssuer: token = try await Mint.token(key, claims: Mint.claims(iss: "https://evil.example"))
        case .missingIssuer: token = try await Mint.token(key, claims: Mint.claims(iss: nil))
        case .wrongAudience: token = try await Mint.token(key, claims: Mint.claims(aud: .string("https://other.example")))
        case .missingAudience: token = try await Mint.token(key, claims: Mint.claims(aud: nil))
        case .expired: token = try await Mint.token(key, claims: Mint.claims(exp: 1_800_000_000 - 61))
        case .notYetValid: token = try await Mint.token(key, claims: Mint.claims(nbf: 1_800_000_000 + 120))
        case .issuedInTheFuture: token = try await Mint.token(key, claims: Mint.claims(iat: 1_800_000_000 + 120))
        case .jkuHeader:
            // Signed by the attacker, pointing at the attacker's key set: the header is ignored.
            token = try await Mint.token(attacker, headerExtra: ["jku": "https://evil.example/jwks"])
        case .embeddedJWK:
            // Signed by the attacker under the real kid, with the attacker's key embedded.
            let jwk = String(decoding: try JSONEncoder().encode(try attacker.publicJWK()), as: UTF8.self)
            token = try await Mint.token(attacker, kid: key.kid, headerExtra: ["jwk": jwk])
        case .unknownKid: token = try await Mint.token(attacker)
        case .critHeader:
            token = try Mint.raw(header: #"{"alg":"ES256","typ":"at+jwt","kid":"\#(key.kid)","crit":["exp"]}"#, claims: Mint.claims(), signature: "AAAA")
        case .algMismatch:
            token = try Mint.raw(header: #"{"alg":"RS256","typ":"at+jwt","kid":"\#(key.kid)"}"#, claims: Mint.claims(), signature: "AAAA")
        case .missingKid:
            token = try Mint.raw(header: #"{"alg":"ES256","typ":"at+jwt"}"#, claims: Mint.claims(), signature: "AAAA")
        case .garbage: token = "not.a.token"
        case .missingIat: token = try await Mint.token(key, claims: Mint.claims(iat: nil))
        case .nbfAsString: token = try await Mint.token(key, claims: Mint.claims(extra: ["nbf": .string("1900000000")]))
        case .missingJti:
            var c = Mint.claims()
            c["jti"] = nil
            token = try await Mint.token(key, claims: c)
        case .missingClientID:
            var c = Mint.claims()
            c["client_id"] = nil
            token = try await Mint.token(key, claims: c)
        }
        do {
            _ = try await v.verify(token)
            Issue.record("\(forgery) was accepted")
        } catch let e as ResourceServerError {
            #expect(e.code == "invalid_token", "\(forgery): \(e)")
            #expect(e.status == 401)
        }
        // The control: the genuine token still passes with the same verifier.
        #expect(try await v.verify(good).subject == "user-1")
    }

    @Test func leewayAcceptsSmallSkew() async throws {
        let key = try SigningKey.generate(.es256)
        let v = Self.verifier(FakeIssuer(keys: [key]), now: Now())
        // Expired 30 s ago and issued 30 s in the future by our clock: both within the 60 s leeway.
        let token = try await v.verify(
            try await Mint.token(key, claims: Mint.claims(exp: 1_800_000_000 - 30, iat: 1_800_000_030)))
        #expect(token.subject == "user-1")
        #expect(token.expiresAt == Date(timeIntervalSince1970: 1_800_000_000 - 30))
        // `nbf` gets the same leeway.
        let notBefore = try await v.verify(try await Mint.token(key, claims: Mint.claims(nbf: 1_800_000_030)))
        #expect(notBefore.subject == "user-1")
    }

    @Test(arguments: [
        (nil, ResourceServerError.headerMissing), ("", ResourceServerError.headerMissing),
        ("Basic dXNlcjpwYXNz", ResourceServerError.typeNotSupported), ("JWT abc", ResourceServerError.typeNotSupported),
        ("Bearer", ResourceServerError.invalidFormat), ("Bearer a b", ResourceServerError.invalidFormat),
        ("Bearer ab\"c", ResourceServerError.invalidFormat),
    ] as [(String?, String)])
    func authorizationHeaders(header: String?, code: String) async throws {
        let v = Self.verifier(FakeIssuer(keys: [try SigningKey.generate(.es256)]), now: Now())
        await #expect { try await v.verify(authorizationHeader: header) } throws: { ($0 as? ResourceServerError)?.code == code }
    }

    /// The issuer rotates its key: the first token with the new kid triggers one refresh and passes.
    @Test func keyRotationWithoutAFailedRequest() async throws {
        let old = try SigningKey.generate(.es256)
        let new = try SigningKey.generate(.rs256)
        let issuer = FakeIssuer(keys: [old])
        let v = Self.verifier(issuer, now: Now())
        _ = try await v.verify(try await Mint.token(old))
        issuer.publish([new, old])
        _ = try await v.verify(try await Mint.token(new))
        _ = try await v.verify(try await Mint.token(old))
        #expect(issuer.jwksFetches == 2)
    }

    /// A flood of unknown kids causes at most one refresh per interval.
    @Test func unknownKidRefreshIsRateLimited() async throws {
        let key = try SigningKey.generate(.es256)
        let issuer = FakeIssuer(keys: [key])
        let now = Now()
        let v = Self.verifier(issuer, now: now, interval: 10)
        _ = try await v.verify(try await Mint.token(key))
        #expect(issuer.jwksFetches == 1)
        for i in 0..<100 {
            let forged = try await Mint.token(try SigningKey.generate(.es256, kid: "forged-\(i)"))
            await #expect(throws: ResourceServerError.self) { try await v.verify(forged) }
        }
        #expect(issuer.jwksFetches == 2)
        now.advance(11)
        await #expect(throws: ResourceServerError.self) { try await v.verify(try await Mint.token(try SigningKey.generate(.es256))) }
        #expect(issuer.jwksFetches == 3)
    }

    /// 50 requests on a cold verifier share one JWKS fetch.
    @Test func concurrentRequestsShareOneFetch() async throws {
        let key = try SigningKey.generate(.es256)
        let issuer = FakeIssuer(keys: [key])
        let v = Self.verifier(issuer, now: Now())
        let token = try await Mint.token(key)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<50 { group.addTask { _ = try await v.verify(token) } }
            try await group.waitForAll()
        }
        #expect(issuer.jwksFetches == 1)
    }

    /// Keys of kinds the verifier does not use (encryption keys, HMAC keys, unknown algorithms) are
    /// skipped; the signing key next to them still works.
    @Test func unsupportedKeysInTheSetAreSkipped() async throws {
        let key = try SigningKey.generate(.es256)
        let issuer = FakeIssuer(keys: [key])
        issuer.extraJWKs.withLock {
            $0 = [
                #"{"kty":"oct","kid":"hmac","alg":"HS256","k":"c2VjcmV0"}"#,
                #"{"kty":"RSA","kid":"enc","use":"enc","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"}"#,
                #"{"kty":"OKP","kid":"x","crv":"X25519","x":"AAAA"}"#,
                #"{"kty":"EC","kid":"\#(key.kid)-copy","alg":"ES256","use":"enc","crv":"P-256","x":"AAAA","y":"AAAA"}"#,
            ]
        }
        let v = Self.verifier(issuer, now: Now())
        #expect(try await v.verify(try await Mint.token(key)).subject == "user-1")
        let hmac = try Mint.raw(header: #"{"alg":"HS256","typ":"at+jwt","kid":"hmac"}"#, claims: Mint.claims(), signature: "AAAA")
        await #expect(throws: ResourceServerError.self) { try await v.verify(hmac) }
    }

    /// The issuer is down at start: 503, and no new fetch within the minimum interval (no hammering).
    @Test func issuerDownFailsClosedWithBackoff() async throws {
        let key = try SigningKey.generate(.es256)
        let issuer = FakeIssuer(keys: [key])
        issuer.down.withLock { $0 = true }
        let now = Now()
        let v = Self.verifier(issuer, now: now)
        let token = try await Mint.token(key)
        for _ in 0..<20 {
            await #expect { try await v.verify(token) } throws: { ($0 as? ResourceServerError)?.status == 503 }
        }
        #expect(issuer.jwksFetches == 1)
        issuer.down.withLock { $0 = false }
        now.advance(11)
        #expect(try await v.verify(token).subject == "user-1")
        #expect(issuer.jwksFetches == 2)
    }

    /// A key set that cannot be refreshed for a day is dropped: fail closed, not trust forever.
    @Test func aKeySetTooOldIsDropped() async throws {
        let key = try SigningKey.generate(.es256)
        let issuer = FakeIssuer(keys: [key])
        let now = Now()
        let v = Self.verifier(issuer, now: now)
        _ = try await v.verify(try await Mint.token(key))
        issuer.down.withLock { $0 = true }
        now.advance(86_401)
        let later = try await Mint.token(key, claims: Mint.claims(exp: 1_800_090_000, iat: 1_800_086_401))
        await #expect { try await v.verify(later) } throws: { ($0 as? ResourceServerError)?.status == 503 }
    }

    /// Plain http is refused for a non-loopback issuer (anyone on the path could serve keys).
    @Test func httpIssuerOnTheNetworkIsRefused() async throws {
        let key = try SigningKey.generate(.es256)
        let v = TokenVerifier(
            .init(issuer: "http://issuer.example.test", audiences: [Self.audience]), fetcher: FakeIssuer(keys: [key]),
            now: Now().closure)
        await #expect { try await v.verify(try await Mint.token(key)) } throws: { ($0 as? ResourceServerError)?.status == 503 }
    }

    /// Past the cache lifetime the set is refreshed in the background; requests keep working.
    @Test func staleKeySetIsRefreshedInTheBackground() async throws {
        let key = try SigningKey.generate(.es256)
        let issuer = FakeIssuer(keys: [key])
        let now = Now()
        let v = Self.verifier(issuer, now: now)
        _ = try await v.verify(try await Mint.token(key))
        now.advance(301)
        _ = try await v.verify(try await Mint.token(key, claims: Mint.claims(exp: 1_800_001_000)))
        let refreshed = try await waitUntil { issuer.jwksFetches >= 2 }
        try #require(refreshed, "no background JWKS refresh within 5 s")
        #expect(issuer.jwksFetches == 2)
    }
}


@Suite("Introspection verifier")
struct IntrospectionVerifierTests {
    @Test func activeInactiveAndCached() async throws {
        let issuer = FakeIssuer(keys: [])
        let now = Now()
        var config = IntrospectionVerifier.Configuration(
            issuer: FakeIssuer.issuer, audiences: ["https://api.example.test"], clientID: "rs", clientSecret: "rs-secret")
        config.cacheTTL = 5
        let v = IntrospectionVerifier(config, fetcher: issuer, now: now.closure)
        issuer.setIntrospection(
            token: "good",
            answer: #"{"active":true,"sub":"u","client_id":"app","scope":"notes:read","iss":"\#(FakeIssuer.issuer)","aud":"https://api.example.test","exp":1800000600}"#)
        issuer.setIntrospection(
            token: "other-aud",
            answer: #"{"active":true,"sub":"u","iss":"\#(FakeIssuer.issuer)","aud":"https://x.example","exp":1800000600}"#)
        #expect(try await v.verify("good").scopes == ["notes:read"])
        #expect(try await v.verify("good").subject == "u")
        #expect(issuer.introspections == 1)  // cached
        now.advance(6)
        _ = try await v.verify("good")
        #expect(issuer.introspections == 2)
        await #expect(throws: ResourceServerError.invalidToken("inactive")) { try await v.verify("revoked") }
        await #expect(throws: ResourceServerError.self) { try await v.verify("other-aud") }
        issuer.setIntrospection(
            token: "refresh",
            answer: #"{"active":true,"sub":"u","client_id":"app","iss":"\#(FakeIssuer.issuer)","aud":"https://api.example.test","exp":1800000600,"token_use":"refresh_token"}"#)
        await #expect(throws: ResourceServerError.invalidToken("refresh token")) { try await v.verify("refresh") }
        // Negative answers are remembered briefly: a flood of bad tokens is not a flood of calls.
        let before = issuer.introspections
        for _ in 0..<5 { await #expect(throws: ResourceServerError.self) { try await v.verify("bad-token") } }
        #expect(issuer.introspections == before + 1)
        // Revocation is seen once the cache entry lapses.
        issuer.setIntrospection(token: "good", answer: #"{"active":false}"#)
        now.advance(6)
        await #expect(throws: ResourceServerError.self) { try await v.verify("good") }
    }
}
