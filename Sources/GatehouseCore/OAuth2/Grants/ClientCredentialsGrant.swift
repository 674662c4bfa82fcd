/// RFC 6749 §4.4: the client acts on its own behalf. Confidential clients only; no refresh token
/// (§4.4.3); no database write: the token is a self-contained JWT whose `sub` is the client id
/// (RFC 9068 §2.2).
public struct ClientCredentialsGrant: TokenGrant {
    public static let grantType = GrantType.clientCredentials
    public static let allowsPublicClients = false
    public init() {}

    public struct Request: Sendable {
        public let client: ClientRecord
        public let scope: Scope
        public let resources: [String]
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        let client = request.client
        return Request(
            client: client,
            scope: try context.resolveScope(try request.parameters.single("scope"), client: client),
            resources: try context.resolveResources(request.parameters.all("resource"), allowed: client.resources))
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        try await context.issueNewGrant(
            client: request.client, userID: nil, scope: request.scope, resources: request.resources,
            withRefreshToken: false)
    }
}
