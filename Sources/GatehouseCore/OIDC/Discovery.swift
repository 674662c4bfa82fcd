/// Authorization server metadata (RFC 8414 §2), also served as the OpenID Provider configuration
/// (OpenID Connect Discovery 1.0 §3). It lists only what this server really supports.
public struct ServerMetadata: Sendable, Codable, Equatable {
    public var issuer: String
    public var authorization_endpoint: String
    public var token_endpoint: String
    public var userinfo_endpoint: String
    public var end_session_endpoint: String
    public var jwks_uri: String
    public var revocation_endpoint: String
    public var introspection_endpoint: String
    public var grant_types_supported: [String]
    public var response_types_supported: [String]
    public var response_modes_supported: [String]
    public var scopes_supported: [String]
    public var claims_supported: [String]
    public var subject_types_supported: [String]
    public var id_token_signing_alg_values_supported: [String]
    public var code_challenge_methods_supported: [String]
    public var prompt_values_supported: [String]
    public var token_endpoint_auth_methods_supported: [String]
    public var revocation_endpoint_auth_methods_supported: [String]
    public var introspection_endpoint_auth_methods_supported: [String]
    /// RFC 9207 §3: every authorization response carries `iss`.
    public var authorization_response_iss_parameter_supported: Bool
    public var claims_parameter_supported: Bool
    public var request_parameter_supported: Bool
    public var request_uri_parameter_supported: Bool
    /// RFC 8707 resource indicators are accepted at the authorization and token endpoints.
    public var resource_indicators_supported: Bool

    /// Paths, relative to the issuer, of the endpoints. One table so routes and metadata cannot drift.
    public enum Path {
        public static let authorization = "/oauth2/authorize"
        public static let token = "/oauth2/token"
        public static let userinfo = "/oauth2/userinfo"
        public static let endSession = "/oauth2/logout"
        public static let revocation = "/oauth2/revoke"
        public static let introspection = "/oauth2/introspect"
        public static let jwks = "/.well-known/jwks.json"
        public static let openIDConfiguration = "/.well-known/openid-configuration"
        public static let authorizationServer = "/.well-known/oauth-authorization-server"
        // Pages
        public static let login = "/login"
        public static let consent = "/consent"
        public static let account = "/account"
        public static let accountRevoke = "/account/revoke"
        public static let accountLogout = "/account/logout"
        public static let accountUnlink = "/account/unlink"
        public static let outOfBand = "/oauth2/oob"
        public static let stylesheet = "/static/gatehouse.css"
    }

    /// `signingAlgorithms`: the algorithms of the published keys (the current one first).
    public init(issuer: String, grantTypes: [String], scopes: [String], signingAlgorithms: [String]) {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.issuer = issuer
        self.authorization_endpoint = base + Path.authorization
        self.token_endpoint = base + Path.token
        self.userinfo_endpoint = base + Path.userinfo
        self.end_session_endpoint = base + Path.endSession
        self.jwks_uri = base + Path.jwks
        self.revocation_endpoint = base + Path.revocation
        self.introspection_endpoint = base + Path.introspection
        self.grant_types_supported = grantTypes
        self.response_types_supported = ["code"]
        self.response_modes_supported = ["query"]
        self.scopes_supported = scopes
        self.claims_supported = UserInfoClaims.supported
        self.subject_types_supported = ["public"]
        self.id_token_signing_alg_values_supported = signingAlgorithms
        self.code_challenge_methods_supported = [PKCE.s256]
        self.prompt_values_supported = ["none", "login", "consent", "select_account"]
        self.token_endpoint_auth_methods_supported = ClientAuthenticator.Method.allCases.map(\.rawValue)
        self.revocation_endpoint_auth_methods_supported = ClientAuthenticator.Method.allCases.map(\.rawValue)
        // Introspection needs a confidential client.
        self.introspection_endpoint_auth_methods_supported = [
            ClientAuthenticator.Method.clientSecretBasic.rawValue, ClientAuthenticator.Method.clientSecretPost.rawValue,
        ]
        self.authorization_response_iss_parameter_supported = true
        self.claims_parameter_supported = false
        self.request_parameter_supported = false
        self.request_uri_parameter_supported = false
        self.resource_indicators_supported = true
    }
}
