/// A grant type handled at the token endpoint (RFC 6749 §4, §6): registered by its `grant_type`.
///
/// A grant validates the request and issues tokens (`IssuedTokens`); it never encodes a response, and it
/// signs tokens only after the database has consumed whatever the request spends (a code, a refresh token).
/// `TokenEndpoint` authenticates the client, checks that the client is registered for the grant, runs it
/// and emits `token.issued`.
public protocol TokenGrant: Sendable {
    static var grantType: String { get }
    /// Public clients may use this grant (client_credentials: no, RFC 6749 §4.4).
    static var allowsPublicClients: Bool { get }
    /// The grant type a client must be registered for to use this grant (default: `grantType`).
    static var registeredAs: String { get }
    /// Whether clients reach it with `grant_type` at the token endpoint (default: yes). First-party grants
    /// of the compatibility profiles are run only by their own endpoints (`TokenEndpoint.issue`).
    static var atTokenEndpoint: Bool { get }
    func handle(_ parameters: RequestParameters, client: ClientRecord, context: TokenContext) async throws
        -> IssuedTokens
}

extension TokenGrant {
    public static var registeredAs: String { grantType }
    public static var atTokenEndpoint: Bool { true }
}

/// The `grant_type` values Gatehouse knows (RFC 6749 §4, RFC 8693) and its first-party ones.
public enum GrantType {
    public static let authorizationCode = "authorization_code"
    public static let clientCredentials = "client_credentials"
    public static let refreshToken = "refresh_token"
    public static let password = "password"
    /// RFC 8693 §2.1.
    public static let tokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

    /// Gatehouse's first-party grants (not reachable at the token endpoint; see `FirstPartyGrants.swift`).
    public static let passwordSession = "urn:gatehouse:grant-type:password-session"
    public static let sessionTokenRefresh = "urn:gatehouse:grant-type:session-token-refresh"

    /// Grant types a client may be registered with.
    public static let registrable = [authorizationCode, refreshToken, clientCredentials, password, tokenExchange]
}
