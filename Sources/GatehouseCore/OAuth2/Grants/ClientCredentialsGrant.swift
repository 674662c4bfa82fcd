/// RFC 6749 §4.4: the client acts on its own behalf. Confidential clients only; no refresh token
/// (§4.4.3); no database write: the token is a self-contained JWT whose `sub` is the client id
/// (RFC 9068 §2.2).
public struct ClientCredentialsGrant: TokenGrant {
    public static let grantType = GrantType.clientCredentials
    public static let allowsPublicClients = false
    public init() {}

    public func handle(_ parameters: RequestParameters, client: ClientRecord, context: TokenContext) async throws
        -> IssuedTokens
    {
        let scope = try context.resolveScope(try parameters.single("scope"), client: client)
        let resources = try context.resolveResources(parameters.all("resource"), allowed: client.resources)
        return try await context.issueNewGrant(
            client: client, userID: nil, scope: scope, resources: resources, withRefreshToken: false)
    }
}
