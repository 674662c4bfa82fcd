/// A successful access-token response (RFC 6749 §5.1).
public struct TokenResponse: Sendable, Codable, Equatable {
    public var access_token: String
    public var token_type: String = "Bearer"
    public var expires_in: Int64
    public var scope: String
    public var refresh_token: String?
    /// OpenID Connect Core §3.1.3.3: present when the grant includes scope `openid`.
    public var id_token: String?
    /// RFC 8693 §2.2.1: present in token-exchange responses.
    public var issued_token_type: String?

    public init(access_token: String, expires_in: Int64, scope: String, refresh_token: String?, id_token: String? = nil) {
        self.id_token = id_token
        self.access_token = access_token
        self.expires_in = expires_in
        self.scope = scope
        self.refresh_token = refresh_token
    }
}
