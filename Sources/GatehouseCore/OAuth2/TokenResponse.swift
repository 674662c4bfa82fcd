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

/// What a grant issued, in the core's terms: whose tokens they are (subject, client, grant), what they
/// carry (scope, audience) and the tokens themselves. The token endpoint emits `token.issued` from it, and
/// the edge encodes it (`response`, or a legacy API's own shape).
public struct IssuedTokens: Sendable, Equatable {
    public var clientID: String
    /// The user, or the client itself for client-credentials tokens (`sub`).
    public var subject: String
    public var userID: String?
    /// The grant (token family) the tokens belong to; nil for tokens outside a family.
    public var grantID: String?
    public var scope: Scope
    /// The access token's `aud`.
    public var audience: [String]
    public var accessToken: String
    public var expiresIn: Int64
    public var refreshToken: String?
    public var idToken: String?
    /// RFC 8693 §2.2.1 `issued_token_type` (token exchange).
    public var issuedTokenType: String?

    public init(
        clientID: String, subject: String, userID: String?, grantID: String?, scope: Scope, audience: [String],
        accessToken: String, expiresIn: Int64, refreshToken: String? = nil, idToken: String? = nil,
        issuedTokenType: String? = nil
    ) {
        self.clientID = clientID
        self.subject = subject
        self.userID = userID
        self.grantID = grantID
        self.scope = scope
        self.audience = audience
        self.accessToken = accessToken
        self.expiresIn = expiresIn
        self.refreshToken = refreshToken
        self.idToken = idToken
        self.issuedTokenType = issuedTokenType
    }

    /// The RFC 6749 §5.1 response.
    public var response: TokenResponse {
        var r = TokenResponse(
            access_token: accessToken, expires_in: expiresIn, scope: scope.description, refresh_token: refreshToken,
            id_token: idToken)
        r.issued_token_type = issuedTokenType
        return r
    }
}
