import Crypto
import Foundation
import JWTKit
import Synchronization

/// Verifies the access tokens APIs receive as `Authorization: Bearer <token>`.
public protocol AccessTokenVerifying: Sendable {
    func verify(_ token: String) async throws -> AccessToken
}

extension AccessTokenVerifying {
    /// Reads `Authorization: Bearer <token>` (RFC 6750 §2.1) and verifies the token. Tokens in query
    /// strings or bodies are never looked at.
    public func verify(authorizationHeader header: String?) async throws -> AccessToken {
        try await verify(try BearerToken.fromAuthorizationHeader(header))
    }
}

/// Verifies JWT access tokens (RFC 9068) in-process against the issuer's JWKS.
///
/// Rejects (SECURITY.md, "Resource servers"): `alg: none` and HMAC algorithms; algorithms outside the
/// allowed set; a header `alg` different from the key's; `typ` other than `at+jwt` (an ID token used as
/// an access token); `crit`; wrong or missing `iss`/`aud`; `exp` in the past or `nbf`/`iat` in the
/// future beyond the leeway; bad signatures. The `jwk`, `jku` and `x5u` headers are ignored: only the
/// configured JWKS is trusted.
public struct TokenVerifier: AccessTokenVerifying {
    /// What a token must match: issuer, audiences, algorithms, leeway, and how the key set is fetched.
    public struct Configuration: Sendable {
        /// The issuer identifier, compared exactly with `iss`.
        public var issuer: String
        /// Accepted audiences: `aud` must contain one of them. Required (an API must know who it is).
        public var audiences: [String]
        /// The JWKS URL; `nil` reads `jwks_uri` from the issuer's discovery document.
        public var jwksURL: String?
        /// Accepted JWS algorithms (asymmetric only; `none` and HS* are never accepted).
        public var algorithms: Set<String> = TokenVerifier.asymmetricAlgorithms
        /// Clock-skew leeway for `exp`, `nbf` and `iat`, in seconds.
        public var leeway: TimeInterval = 60
        /// The least time between two refreshes triggered by unknown `kid`s.
        public var minimumRefreshInterval: TimeInterval = 10
        /// Key-set lifetime when the JWKS response has no `max-age`.
        public var defaultKeySetLifetime: TimeInterval = 300
        /// Allow plain http for a non-loopback issuer (never in production).
        public var allowInsecureHTTP = false

        public init(issuer: String, audiences: [String], jwksURL: String? = nil) {
            self.issuer = issuer
            self.audiences = audiences
            self.jwksURL = jwksURL
        }
    }

    public static let asymmetricAlgorithms: Set<String> = [
        "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
    ]

    public let configuration: Configuration
    let keys: KeySet
    let headers = HeaderCache()
    let now: @Sendable () -> Date

    public init(
        _ configuration: Configuration, fetcher: any HTTPFetching = AsyncHTTPClientFetcher(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        precondition(!configuration.audiences.isEmpty, "configure at least one audience")
        var configuration = configuration
        configuration.algorithms = configuration.algorithms.intersection(Self.asymmetricAlgorithms)
        // Sane ranges: a zero interval would remove the unknown-kid rate limit.
        configuration.leeway = min(max(configuration.leeway, 0), 300)
        configuration.minimumRefreshInterval = min(max(configuration.minimumRefreshInterval, 1), 3600)
        configuration.defaultKeySetLifetime = min(max(configuration.defaultKeySetLifetime, 60), 86_400)
        self.configuration = configuration
        self.now = now
        let issuer = configuration.issuer
        let explicit = configuration.jwksURL
        let insecure = configuration.allowInsecureHTTP
        let discovered = Discovery(issuer: issuer, fetcher: fetcher, allowInsecureHTTP: insecure)
        self.keys = KeySet(
            jwksURL: {
                let url: String
                if let explicit { url = explicit } else { url = try await discovered.jwksURI() }
                try TransportPolicy.check(url, what: "jwks_uri", allowInsecure: insecure)
                return url
            }, fetcher: fetcher,
            minimumRefreshInterval: configuration.minimumRefreshInterval,
            defaultLifetime: configuration.defaultKeySetLifetime, now: now)
    }

    /// Fetches the key set now (optional: the first request would).
    public func prefetch() async throws { try await keys.refresh() }

    /// How many times the JWKS has been fetched.
    public var keySetFetchCount: Int { get async { await keys.fetchCount } }

    public func verify(_ token: String) async throws -> AccessToken {
        let utf8 = Array(token.utf8)
        guard utf8.count <= 16_384, let dot1 = utf8.firstIndex(of: UInt8(ascii: ".")),
            let dot2 = utf8[(dot1 + 1)...].firstIndex(of: UInt8(ascii: ".")),
            !utf8[(dot2 + 1)...].contains(UInt8(ascii: "."))
        else { throw ResourceServerError.invalidToken("not a JWS") }
        // Tokens of one issuer key share their header segment: its checked form is remembered.
        let (alg, kid) = try headers.checked(utf8[..<dot1]) { try self.checkHeader($0) }
        let snapshot: KeySet.Snapshot
        if let fresh = keys.freshSnapshot(for: kid, now: now()) {
            snapshot = fresh
        } else {
            snapshot = try await keys.snapshot(for: kid)
        }
        guard let keyAlg = snapshot.algorithms[kid], let key = snapshot.verifiers[kid] else {

            throw ResourceServerError.invalidToken("unknown kid")
        }
        guard keyAlg == alg else { throw ResourceServerError.invalidToken("alg \(alg) does not match the key's \(keyAlg)") }
        guard let signature = Base64URLDecoding.decode(utf8[(dot2 + 1)...]),
            (try? key.verify(signature, signs: utf8[..<dot2])) == true
        else { throw ResourceServerError.invalidToken("bad signature") }
        guard let payloadData = Base64URLDecoding.decode(utf8[(dot1 + 1)..<dot2]),
            let object = (try? JSONSerialization.jsonObject(with: payloadData)) as? [String: Any]
        else { throw ResourceServerError.invalidToken("malformed payload") }
        let claims = object.mapValues(JSONValue.init(any:))
        guard claims["iss"]?.string == configuration.issuer else { throw ResourceServerError.invalidToken("wrong iss") }
        let audiences: [String]
        switch claims["aud"] {
        case .string(let a)?: audiences = [a]
        case .array(let list)?: audiences = list.compactMap(\.string)
        default: audiences = []
        }
        guard audiences.contains(where: configuration.audiences.contains) else {
            throw ResourceServerError.invalidToken("wrong aud")
        }
        // RFC 9068 §2.2: exp, iat, jti and client_id are required; times are numbers.
        let t = now().timeIntervalSince1970
        guard let exp = claims["exp"]?.number, exp + configuration.leeway > t else {
            throw ResourceServerError.invalidToken("expired or no exp")
        }
        guard let iat = claims["iat"]?.number, iat <= t + configuration.leeway else {
            throw ResourceServerError.invalidToken("no iat, or issued in the future")
        }
        if let nbf = claims["nbf"] {
            guard let n = nbf.number, n <= t + configuration.leeway else { throw ResourceServerError.invalidToken("not yet valid") }
        }
        guard claims["jti"]?.string != nil, claims["client_id"]?.string != nil else {
            throw ResourceServerError.invalidToken("no jti or client_id")
        }
        return try AccessToken(claims: claims)
    }
}

extension TokenVerifier {
    /// The header checks (RFC 9068 §4 and SECURITY.md): an accepted asymmetric `alg`, `typ` at+jwt, no
    /// `crit`, a `kid`. `jwk`, `jku`, `x5u` and `x5c` are never read: only the configured key set is trusted.
    func checkHeader(_ segment: ArraySlice<UInt8>) throws -> (alg: String, kid: String) {
        guard let data = Base64URLDecoding.decode(segment),
            let header = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { throw ResourceServerError.invalidToken("malformed header") }
        guard let alg = header["alg"] as? String, configuration.algorithms.contains(alg) else {
            throw ResourceServerError.invalidToken("algorithm \(header["alg"] as? String ?? "none") not accepted")
        }
        guard let typ = (header["typ"] as? String)?.lowercased(), typ == "at+jwt" || typ == "application/at+jwt" else {
            throw ResourceServerError.invalidToken("typ \(header["typ"] as? String ?? "missing") is not at+jwt")
        }
        guard header["crit"] == nil else { throw ResourceServerError.invalidToken("crit header not supported") }
        guard let kid = header["kid"] as? String else { throw ResourceServerError.invalidToken("no kid") }
        return (alg, kid)
    }
}

/// Header segments that passed the checks, by their exact bytes (only valid ones are kept; bounded).
final class HeaderCache: Sendable {
    private let table = Mutex<[ArraySlice<UInt8>: (alg: String, kid: String)]>([:])

    func checked(_ segment: ArraySlice<UInt8>, _ check: (ArraySlice<UInt8>) throws -> (alg: String, kid: String)) throws
        -> (alg: String, kid: String)
    {
        if let hit = table.withLock({ $0[segment] }) { return hit }
        let result = try check(segment)
        table.withLock { t in
            if t.count >= 64 { t.removeAll() }
            t[ArraySlice(Array(segment))] = result
        }
        return result
    }
}

/// Reads `jwks_uri` (and `introspection_endpoint`) from the issuer's metadata, once.
final class Discovery: Sendable {
    let issuer: String
    let fetcher: any HTTPFetching
    let allowInsecureHTTP: Bool
    private let cached = Mutex<[String: JSONValue]?>(nil)

    init(issuer: String, fetcher: any HTTPFetching, allowInsecureHTTP: Bool) {
        self.issuer = issuer
        self.fetcher = fetcher
        self.allowInsecureHTTP = allowInsecureHTTP
    }

    func document() async throws -> [String: JSONValue] {
        if let doc = cached.withLock({ $0 }) { return doc }
        try TransportPolicy.check(issuer, what: "issuer", allowInsecure: allowInsecureHTTP)
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
            guard let r = try? await fetcher.get(base + path), r.status == 200,
                let doc = try? JSONDecoder().decode([String: JSONValue].self, from: Data(r.body))
            else { continue }
            // RFC 8414 §3.3: the metadata's issuer must be the one we asked.
            guard doc["issuer"]?.string == issuer else {
                throw ResourceServerError.unavailable("discovery issuer mismatch at \(base + path)")
            }
            cached.withLock { $0 = doc }
            return doc
        }
        throw ResourceServerError.unavailable("no discovery document at \(issuer)")
    }

    func jwksURI() async throws -> String {
        guard let uri = try await document()["jwks_uri"]?.string else {
            throw ResourceServerError.unavailable("discovery has no jwks_uri")
        }
        return uri
    }

    func introspectionEndpoint() async throws -> String {
        guard let uri = try await document()["introspection_endpoint"]?.string else {
            throw ResourceServerError.unavailable("discovery has no introspection_endpoint")
        }
        try TransportPolicy.check(uri, what: "introspection_endpoint", allowInsecure: allowInsecureHTTP)
        return uri
    }
}

enum Base64URLDecoding {
    static func decode(_ s: ArraySlice<UInt8>) -> Data? {
        var b = [UInt8]()
        b.reserveCapacity(s.count + 3)
        for c in s {
            switch c {
            case UInt8(ascii: "-"): b.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): b.append(UInt8(ascii: "/"))
            case UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="): return nil
            default: b.append(c)
            }
        }
        while b.count % 4 != 0 { b.append(UInt8(ascii: "=")) }
        return Data(base64Encoded: Data(b))
    }
}
