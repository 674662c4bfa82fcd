/// A grant type handled at the token endpoint (RFC 6749 §4, §6): registered by its `grant_type`.
///
/// A grant runs in two steps. `validate` reads the request's parameters into the grant's typed `Request`:
/// required and single-valued parameters, scope and resource syntax and what the client registered — no
/// storage, no clock, no network. `issue` does the rest: looks up and consumes what the request spends (a
/// code, a refresh token), stores what the tokens rest on, and only then signs (`IssuedTokens`). A grant
/// never encodes a response. `TokenEndpoint` authenticates the client, checks that the client is registered
/// for the grant, runs both steps and emits `token.issued`.
public protocol TokenGrant: Sendable {
    /// The request this grant has read and checked; carries the client it is for.
    associatedtype Request: Sendable
    static var grantType: String { get }
    /// Public clients may use this grant (client_credentials: no, RFC 6749 §4.4).
    static var allowsPublicClients: Bool { get }
    /// The grant type a client must be registered for to use this grant (default: `grantType`).
    static var registeredAs: String { get }
    /// Whether clients reach it with `grant_type` at the token endpoint (default: yes). First-party grants
    /// of the compatibility profiles are run only by their own endpoints (`TokenEndpoint.issue`).
    static var atTokenEndpoint: Bool { get }
    /// Reads the parameters: malformed, missing or repeated ones, and scopes or resources the client did not
    /// register, are refused here (RFC 6749 §5.2 `invalid_request`, `invalid_scope`, RFC 8707 `invalid_target`).
    func validate(_ request: TokenRequest, context: TokenContext) throws -> Request
    /// Issues the tokens for a validated request (signed after the database has consumed what it spends).
    func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens
}

extension TokenGrant {
    public static var registeredAs: String { grantType }
    public static var atTokenEndpoint: Bool { true }
}

/// One request at the token endpoint (or at a profile's first-party endpoint): its parameters, the client
/// it authenticated as, and the client's address (password throttling counts per address).
public struct TokenRequest: Sendable {
    public let parameters: RequestParameters
    public let client: ClientRecord
    public let clientAddress: String?

    public init(parameters: RequestParameters, client: ClientRecord, clientAddress: String? = nil) {
        self.parameters = parameters
        self.client = client
        self.clientAddress = clientAddress
    }
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
