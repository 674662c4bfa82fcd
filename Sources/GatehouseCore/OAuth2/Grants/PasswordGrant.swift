/// RFC 6749 §4.3, the resource owner password credentials grant. Omitted from OAuth 2.1; kept for legacy
/// apps, only for clients explicitly registered with it (`--allow-password-grant`). Failures say nothing
/// about whether the account exists; repeated failures lock the username out for a while.
public struct PasswordGrant: TokenGrant {
    public static let grantType = GrantType.password
    public static let allowsPublicClients = true
    public init() {}

    public func handle(_ parameters: RequestParameters, client: ClientRecord, context: TokenContext) async throws
        -> TokenResponse
    {
        let username = try parameters.required("username")
        let password = try parameters.required("password")
        let scope = try context.resolveScope(try parameters.single("scope"), client: client)
        let resources = try context.resolveResources(parameters.all("resource"), allowed: client.resources)
        let failed = OAuthError.invalidGrant.with(description: "Invalid username or password.")
        // A name no account can have costs no bcrypt and no lockout entry (but gets the same answer).
        guard Administration.isValidUsername(username), password.utf8.count <= 1024 else { throw failed }
        let limiterKey = username.lowercased()
        // Counted before the (slow) check, atomically, so parallel guesses cannot slip under the limit.
        guard context.passwordLimiter.admit(limiterKey) else {
            throw failed.with(description: "Too many failed attempts; try again later.", debug: "locked out: \(username)")
        }
        let user = try await context.storage.user(username: username)
        // Verify even for unknown users (a dummy hash) so timing does not reveal accounts.
        guard try await context.passwords.verify(password, hash: user?.passwordHash), let user else {
            throw failed
        }
        context.passwordLimiter.reset(limiterKey)
        try await context.checkScopeRoles(scope, userID: user.id)
        return try await context.issueNewGrant(
            client: client, userID: user.id, scope: scope, resources: resources,
            withRefreshToken: client.allows(grantType: GrantType.refreshToken))
    }
}
