/// The token endpoint (RFC 6749 §3.2): authenticates the client, then hands the request to the grant
/// registered for its `grant_type`.
public struct TokenEndpoint: Sendable {
    public let context: TokenContext
    let authenticator: ClientAuthenticator
    let grants: [String: any TokenGrant]

    public init(context: TokenContext, grants: [any TokenGrant] = TokenEndpoint.defaultGrants) {
        self.context = context
        self.authenticator = ClientAuthenticator(clients: context.storage)
        var table: [String: any TokenGrant] = [:]
        for g in grants { table[type(of: g).grantType] = g }
        self.grants = table
    }

    public static let defaultGrants: [any TokenGrant] = [
        AuthorizationCodeGrant(), ClientCredentialsGrant(), RefreshTokenGrant(), PasswordGrant(),
    ]

    /// The grant types this endpoint handles, for discovery.
    public var supportedGrantTypes: [String] { grants.keys.sorted() }

    /// `clientAddress`: the client's IP address (password-grant throttling counts per address).
    public func handle(_ parameters: RequestParameters, authorization: String?, clientAddress: String? = nil) async throws
        -> TokenResponse
    {
        let grantType = try parameters.required("grant_type")
        let (client, _) = try await authenticator.authenticate(parameters, authorization: authorization)
        guard let grant = grants[grantType] else {
            throw OAuthError.unsupportedGrantType.with(description: "The grant type \(grantType) is not supported.")
        }
        // §5.2 unauthorized_client: the client is not registered for this grant type.
        guard client.allows(grantType: grantType) else {
            throw OAuthError.unauthorizedClient.with(description: "The client is not allowed to use the \(grantType) grant.")
        }
        guard !client.isPublic || type(of: grant).allowsPublicClients else {
            throw OAuthError.unauthorizedClient.with(description: "Public clients cannot use the \(grantType) grant.")
        }
        var context = self.context
        context.clientAddress = clientAddress
        let response = try await grant.handle(parameters, client: client, context: context)
        try? await context.events.emit(
            Events.tokenIssued, ["client_id": client.id, "grant_type": grantType, "scope": response.scope])
        return response
    }
}
