import Tracing

/// The token endpoint (RFC 6749 §3.2): authenticates the client, then hands the request to the grant
/// registered for its `grant_type`.
public struct TokenEndpoint: Sendable {
    public let context: TokenContext
    let authenticator: ClientAuthenticator
    let grants: [String: any TokenGrant]

    public init(context: TokenContext, grants: [any TokenGrant] = TokenEndpoint.defaultGrants) {
        self.context = context
        self.authenticator = ClientAuthenticator(clients: context.storage, clock: context.clock)
        var table: [String: any TokenGrant] = [:]
        for g in grants { table[type(of: g).grantType] = g }
        self.grants = table
    }

    public static let defaultGrants: [any TokenGrant] = [
        AuthorizationCodeGrant(), ClientCredentialsGrant(), RefreshTokenGrant(), PasswordGrant(),
    ]

    /// The grant types this endpoint handles, for discovery.
    public var supportedGrantTypes: [String] {
        grants.filter { type(of: $0.value).atTokenEndpoint }.keys.sorted()
    }

    /// `clientAddress`: the client's IP address (password-grant throttling counts per address).
    public func handle(_ parameters: RequestParameters, authorization: String?, clientAddress: String? = nil) async throws
        -> IssuedTokens
    {
        let grant: any TokenGrant
        let client: ClientRecord
        do {
            let grantType = try parameters.required("grant_type")
            (client, _) = try await authenticator.authenticate(parameters, authorization: authorization)
            guard let known = grants[grantType], type(of: known).atTokenEndpoint else {
                throw OAuthError.unsupportedGrantType.with(description: "The grant type \(grantType) is not supported.")
            }
            grant = known
        } catch let error as OAuthError {
            // Before a grant is chosen the grant type is not one of ours: not a label value.
            context.metrics.tokenError(code: error.code, grantType: "unknown")
            throw error
        }
        return try await run(grant, TokenRequest(parameters: parameters, client: client, clientAddress: clientAddress))
    }

    /// Runs a grant for a first-party endpoint of a compatibility profile, for `client` (the configured
    /// `compat_client_id`; the endpoint has no client authentication of its own). The same registration
    /// checks and the same `token.issued` event as at the token endpoint.
    public func issue(
        grantType: String, _ parameters: RequestParameters, client: ClientRecord, clientAddress: String? = nil
    ) async throws -> IssuedTokens {
        guard let grant = grants[grantType] else {
            throw OAuthError.unsupportedGrantType.with(description: "The grant type \(grantType) is not supported.")
        }
        return try await run(grant, TokenRequest(parameters: parameters, client: client, clientAddress: clientAddress))
    }

    /// The registration checks, then the grant's two steps: `validate` (the parameters, into the grant's
    /// typed request) and `issue`.
    private func run<Grant: TokenGrant>(_ grant: Grant, _ request: TokenRequest) async throws -> IssuedTokens {
        let client = request.client
        // §5.2 unauthorized_client: the client is not registered for this grant type.
        guard client.allows(grantType: Grant.registeredAs) else {
            throw OAuthError.unauthorizedClient.with(
                description: "The client is not allowed to use the \(Grant.registeredAs) grant.")
        }
        guard !client.isPublic || Grant.allowsPublicClients else {
            throw OAuthError.unauthorizedClient.with(description: "Public clients cannot use the \(Grant.grantType) grant.")
        }
        // Tracing on: a span per grant, with its type and client (the database calls are its children).
        let span = TraceContext.childSpan("oauth2.token \(Grant.grantType)")
        span?.attributes["oauth.grant_type"] = Grant.grantType
        span?.attributes["gatehouse.client_id"] = client.id
        defer { span?.end() }
        let issued: IssuedTokens
        do {
            let validated = try grant.validate(request, context: context)
            if let span {
                issued = try await ServiceContext.$current.withValue(TraceContext.recording(span.context)) {
                    try await grant.issue(validated, context: context)
                }
            } else {
                issued = try await grant.issue(validated, context: context)
            }
        } catch let error as OAuthError {
            span?.attributes["oauth.error"] = error.code
            context.metrics.tokenError(code: error.code, grantType: Grant.grantType)
            throw error
        }
        // The one place `token.issued` is emitted (and counted).
        await context.events.tokenIssued(clientID: client.id, grantType: Grant.grantType, scope: issued.scope.description)
        context.metrics.tokenIssued(grantType: Grant.grantType, clientID: client.id)
        return issued
    }
}
