/// The authorization server's protocol settings, with their defaults. The settings table
/// (`GatehouseConfiguration.settingsTable` in GatehouseServer) reads them into this value and documents them.
public struct ServerSettings: Sendable {
    /// The issuer identifier (RFC 8414 §2): an https URL (http only on loopback), no query or fragment.
    public var issuer: String
    /// `aud` of access tokens when the request names no `resource` (RFC 8707). Defaults to the issuer.
    public var defaultAudience: String?
    /// Access-token lifetime in seconds (default 10 minutes: JWTs stay valid offline until they expire).
    public var accessTokenLifetime: Int64 = 600
    /// Refresh-token lifetime in seconds; each rotation starts a new period (default 30 days).
    public var refreshTokenLifetime: Int64 = 30 * 24 * 3600
    /// Seconds after a refresh token's first use during which a retry gets the same new pair instead of
    /// revoking the family (default 0: any reuse revokes the family, RFC 9700 §4.14.2).
    public var refreshGracePeriod: Int64 = 0
    /// The algorithm of the key generated on first start and by `keys rotate` without `--algorithm`.
    public var signingAlgorithm: SigningAlgorithm = .default
    /// How often a running server re-reads the signing keys from the database, in seconds.
    public var keyReloadInterval: Int64 = 10
    /// Seconds a running server may serve client records and "not revoked" answers from memory; changes
    /// made by the CLI or another instance take effect within this time (0 = no caching).
    public var cacheTTL: Int64 = 1
    /// Failed password attempts (password grant and login page) per username before a temporary lockout;
    /// the login page also allows 5× this per client address.
    public var passwordMaxFailures: Int = 10
    /// Lockout and counting window for failed password attempts, in seconds.
    public var passwordLockoutWindow: Int64 = 15 * 60

    /// Authorization-code lifetime in seconds (RFC 6749 §4.1.2 recommends at most 10 minutes; 60 s default).
    public var authorizationCodeLifetime: Int64 = 60
    /// ID-token lifetime in seconds.
    public var idTokenLifetime: Int64 = 600
    /// Browser session lifetime in seconds from sign-in (default 12 hours).
    public var sessionLifetime: Int64 = 12 * 3600
    /// How long a "Sign in with …" round trip to an upstream provider may take, in seconds (its stored
    /// state and the browser-binding cookie expire then).
    public var upstreamFlowLifetime: Int64 = 600

    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` say who the client is (`trusted_proxies`);
    /// empty: those headers are ignored and the TCP peer is the client.
    public var trustedProxies: [IPNetwork] = []
    /// The header those proxies set (`forwarded_header`): only it is read.
    public var forwardedHeader: ForwardedHeader = .xForwardedFor

    public init(issuer: String) { self.issuer = issuer }

    /// An https issuer: cookies get `Secure` and the `__Host-` prefix.
    public var isHTTPS: Bool { issuer.lowercased().hasPrefix("https://") }

    public var audience: String { defaultAudience ?? issuer }
    /// How long a deactivated signing key stays published: an instance may sign with it until its next
    /// key reload, and the token lives `accessTokenLifetime` after that; plus 60 s of clock skew. The
    /// database keeps the largest value any instance asked for (see `KeyStore.raiseKeyRetention`).
    public var keyRetention: Int64 { accessTokenLifetime + keyReloadInterval + 60 }
}
