import Crypto
import Foundation
import Synchronization

/// Verifies tokens by asking the issuer (RFC 7662), for APIs that must see revocation at once.
///
/// The API authenticates as a confidential client. Positive answers are cached for `cacheTTL` seconds,
/// never past the token's `exp`; negative answers are not cached.
public struct IntrospectionVerifier: AccessTokenVerifying {
    public struct Configuration: Sendable {
        public var issuer: String
        public var audiences: [String]
        public var clientID: String
        public var clientSecret: String
        /// `nil` reads `introspection_endpoint` from discovery.
        public var introspectionURL: String?
        /// Seconds a positive answer may be reused (0 = ask every time).
        public var cacheTTL: TimeInterval = 5
        public init(issuer: String, audiences: [String], clientID: String, clientSecret: String, introspectionURL: String? = nil) {
            self.issuer = issuer
            self.audiences = audiences
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.introspectionURL = introspectionURL
        }
    }

    public let configuration: Configuration
    let fetcher: any HTTPFetching
    let discovery: Discovery
    let now: @Sendable () -> Date
    private let cache = Cache()

    public init(
        _ configuration: Configuration, fetcher: any HTTPFetching = AsyncHTTPClientFetcher(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.configuration = configuration
        self.fetcher = fetcher
        self.discovery = Discovery(issuer: configuration.issuer, fetcher: fetcher)
        self.now = now
    }

    public func verify(_ token: String) async throws -> AccessToken {
        let key = SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
        let t = now()
        if let hit = cache.get(key, now: t) { return hit }
        let url: String
        if let explicit = configuration.introspectionURL { url = explicit } else { url = try await discovery.introspectionEndpoint() }
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
        guard claims["active"] == .bool(true) else { throw ResourceServerError.invalidToken("inactive") }
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

    final class Cache: Sendable {
        private let table = Mutex<[String: (AccessToken, Date)]>([:])
        func get(_ key: String, now: Date) -> AccessToken? {
            table.withLock { t in
                guard let (token, until) = t[key] else { return nil }
                if until <= now { t[key] = nil; return nil }
                return token
            }
        }
        func put(_ key: String, _ token: AccessToken, until: Date) {
            table.withLock { t in
                if t.count >= 10_000 { t.removeAll(keepingCapacity: true) }
                t[key] = (token, until)
            }
        }
    }
}
