/// RFC 6749 §4.3, the resource owner password credentials grant. Omitted from OAuth 2.1; kept for legacy
/// apps, only for clients explicitly registered with it (`--allow-password-grant`). Failures say nothing
/// about whether the account exists; repeated failures slow the account (and the client address) down, then
/// lock the account out for a while (`LoginThrottle`).
public struct PasswordGrant: TokenGrant {
    public static let grantType = GrantType.password
    public static let allowsPublicClients = true
    public init() {}

    public func handle(_ parameters: RequestParameters, client: ClientRecord, context: TokenContext) async throws
        -> IssuedTokens
    {
        let username = try parameters.required("username")
        let password = try parameters.required("password")
        let scope = try context.resolveScope(try parameters.single("scope"), client: client)
        let resources = try context.resolveResources(parameters.all("resource"), allowed: client.resources)
        let user: UserRecord
        do {
            user = try await context.passwordAuthenticator.authenticate(
                username: username, password: password, address: context.clientAddress)
        } catch PasswordAuthenticator.Failure.invalidCredentials {
            throw OAuthError.invalidGrant.with(description: "Invalid username or password.")
        } catch PasswordAuthenticator.Failure.throttled(let retryAfter) {
            throw OAuthError.invalidGrant.with(
                description: "Too many failed attempts; try again later.", debug: "throttled \(retryAfter)s: \(username)")
        }
        try await context.checkScopeRoles(scope, userID: user.id)
        return try await context.issueNewGrant(
            client: client, userID: user.id, scope: scope, resources: resources,
            withRefreshToken: client.allows(grantType: GrantType.refreshToken))
    }
}
