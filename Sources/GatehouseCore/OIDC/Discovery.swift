/// Authorization server metadata (RFC 8414 §2), also served as the OpenID Provider configuration
/// (OpenID Connect Discovery 1.0 §3). It lists only what this server really supports.
public struct ServerMetadata: Sendable, Codable, Equatable {
    public var issuer: String
    public var token_endpoint: String
    public var jwks_uri: String
    public var revocation_endpoint: String
    public var introspection_endpoint: String
    public var grant_types_supported: [String]
    /// No authorization-endpoint flow is served yet, so no response type is supported (RFC 8414 §2).
    public var response_types_supported: [String]
    public var scopes_supported: [String]
    public var token_endpoint_auth_methods_supported: [String]
    public var revocation_endpoint_auth_methods_supported: [String]
    public var introspection_endpoint_auth_methods_supported: [String]
    /// RFC 8707 resource indicators are accepted at the token endpoint.
    public var resource_indicators_supported: Bool

    /// Paths, relative to the issuer, of the endpoints. One table so routes and metadata cannot drift.
    public enum Path {
        public static let token = "/oauth2/token"
        public static let revocation = "/oauth2/revoke"
        public static let introspection = "/oauth2/introspect"
        public static let jwks = "/.well-known/jwks.json"
        public static let openIDConfiguration = "/.well-known/openid-configuration"
        public static let authorizationServer = "/.well-known/oauth-authorization-server"
    }

    public init(issuer: String, grantTypes: [String], scopes: [String]) {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        self.issuer = issuer
        self.token_endpoint = base + Path.token
        self.jwks_uri = base + Path.jwks
        self.revocation_endpoint = base + Path.revocation
        self.introspection_endpoint = base + Path.introspection
        self.grant_types_supported = grantTypes
        self.response_types_supported = []
        self.scopes_supported = scopes
        self.token_endpoint_auth_methods_supported = ClientAuthenticator.Method.allCases.map(\.rawValue)
        self.revocation_endpoint_auth_methods_supported = ClientAuthenticator.Method.allCases.map(\.rawValue)
        // Introspection needs a confidential client.
        self.introspection_endpoint_auth_methods_supported = [
            ClientAuthenticator.Method.clientSecretBasic.rawValue, ClientAuthenticator.Method.clientSecretPost.rawValue,
        ]
        self.resource_indicators_supported = true
    }
}
