/// A grant type handled at the token endpoint (RFC 6749 §4, §6): registered by its `grant_type`.
public protocol TokenGrant: Sendable {
    static var grantType: String { get }
    /// Public clients may use this grant (client_credentials: no, RFC 6749 §4.4).
    static var allowsPublicClients: Bool { get }
    func handle(_ parameters: RequestParameters, client: ClientRecord, context: TokenContext) async throws
        -> TokenResponse
}

public enum GrantType {
    public static let authorizationCode = "authorization_code"
    public static let clientCredentials = "client_credentials"
    public static let refreshToken = "refresh_token"
    public static let password = "password"
    /// RFC 8693 §2.1.
    public static let tokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

    /// Grant types a client may be registered with.
    public static let registrable = [authorizationCode, refreshToken, clientCredentials, password, tokenExchange]
}
