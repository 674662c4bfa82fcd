import Crypto
import Foundation
import Synchronization

/// Verifies tokens by asking the issuer (RFC 7662), for APIs that must see revocation at once.
///
/// The API authenticates as a confidential client. Positive answers are cached for `cacheTTL` seconds,
/// never past the token's `exp`; negative answers are not cached.
public struct IntrospectionVerifier: AccessTokenVerifying {
    /// How to reach the introspection endpoint: the issuer, this API's client credentials and audiences.
    public struct Configuration: Sendable, CustomStringConvertible {
        public var issuer: String
        public var audiences: [String]
        public var clientID: String
        public var clientSecret: String
        /// `nil` reads `introspection_endpoint` from discovery.
        public var introspectionURL: String?
        /// Seconds a positive answer may be reused (0 = ask every time; at most 60). A revocation is
        /// seen after at most this long.
        public var cacheTTL: TimeInterval = 5
        /// Seconds a negative answer is remembered (so a flood of bad tokens does not become a flood of
        /// introspection calls; at most 10).
        public var negativeCacheTTL: TimeInterval = 2
        /// Allow plain http for a non-loopback issuer (never in production).
        public var allowInsecureHTTP = false
        public init(issuer: String, audiences: [String], clientID: String, clientSecret: String, introspectionURL: String? = nil) {
            self.issuer = issuer
            self.audiences = audiences
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.introspectionURL = introspectionURL
        }

        /// Never prints the client secret.
        public var description: String {
            "IntrospectionVerifier.Configuration(issuer: \(issuer), audiences: \(audiences), clientID: \(clientID), clientSecret: ***)"
        }
    }

    public let configuration: Configuration
    let fetcher: any HTTPFetching
    let discovery: Discovery
    let now: @Sendable () -> Date
    private let cache = Cache()
    private let negative = Cache()

    public init(
        _ configuration: Configuration, fetcher: any HTTPFetching = AsyncHTTPClientFetcher(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        var configuration = configuration
        configuration.cacheTTL = min(max(configuration.cacheTTL, 0), 60)
        configuration.negativeCacheTTL = min(max(configuration.negativeCacheTTL, 0), 10)
        self.configuration = configuration
        self.fetcher = fetcher
        self.discovery = Discovery(issuer: configuration.issuer, fetcher: fetcher, allowInsecureHTTP: configuration.allowInsecureHTTP)
        self.now = now
    }

    public func verify(_ token: String) async throws -> AccessToken {
        let key = SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
        let t = now()
        if let hit = cache.get(key, now: t), let token = hit { return token }
        if negative.get(key, now: t) != nil { throw ResourceServerError.invalidToken("inactive (remembered)") }
        let url: String
        if let explicit = configuration.introspectionURL {
            try TransportPolicy.check(explicit, what: "introspection URL", allowInsecure: configuration.allowInsecureHTTP)
            url = explicit
        } else {
            url = try await discovery.introspectionEndpoint()
        }
        let response: FetchedResponse
        do {
            response = try await fetcher.postForm(
                url, form: [("token", token), ("token_type_hint", "access_token")],
                basicAuth: (configuration.clientID, configuration.clientSecret))
        } catch {
            throw ResourceServerError.unavailable("introspection unreachable: \(error)")
        }
        guard response.status == 200,
            let claims = try? JSONDecoder().decode([String: JSONValue].self, from: Data(response.body))
        else { throw ResourceServerError.unavailable("introspection answered \(response.status)") }
        guard claims["active"] == .bool(true) else {
            if configuration.negativeCacheTTL > 0 { negative.put(key, nil, until: t + configuration.negativeCacheTTL) }
            throw ResourceServerError.invalidToken("inactive")
        }
        // A refresh token is not an access token, whatever the issuer says about its audience.
        if claims["token_use"]?.string == "refresh_token" { throw ResourceServerError.invalidToken("refresh token") }
        if let type = claims["token_type"]?.string, !["bearer", "access_token"].contains(type.lowercased()) {
            throw ResourceServerError.invalidToken("token_type \(type)")
        }
        let accessToken = try AccessToken(claims: claims)
        guard accessToken.issuer == configuration.issuer else { throw ResourceServerError.invalidToken("wrong iss") }
        guard accessToken.audience.contains(where: configuration.audiences.contains) else {
            throw ResourceServerError.invalidToken("wrong aud")
        }
        guard accessToken.expiresAt > t else { throw ResourceServerError.invalidToken("expired") }
        if configuration.cacheTTL > 0 {
            cache.put(key, accessToken, until: min(accessToken.expiresAt, t + configuration.cacheTTL))
        }
        return accessToken
    }

    /// Answers by token hash, each until a time; bounded (expired entries go first).
    final class Cache: Sendable {
        private let table = Mutex<[String: (AccessToken?, Date)]>([:])
        /// `.some(nil)` is a remembered negative answer.
        func get(_ key: String, now: Date) -> AccessToken?? {
            table.withLock { t in
                guard let (token, until) = t[key] else { return nil }
                if until <= now { t[key] = nil; return nil }
                return .some(token)
            }
        }
        func put(_ key: String, _ token: AccessToken?, until: Date) {
            table.withLock { t in
                if t.count >= 10_000 {
                    let now = Date()
                    t = t.filter { $0.value.1 > now }
                    if t.count >= 10_000 { t.removeAll(keepingCapacity: true) }
                }
                t[key] = (token, until)
            }
        }
    }
}
