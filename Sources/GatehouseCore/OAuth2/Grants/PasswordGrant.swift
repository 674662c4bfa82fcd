/// RFC 6749 §4.3, the resource owner password credentials grant. Omitted from OAuth 2.1; kept for legacy
/// apps, only for clients explicitly registered with it (`--allow-password-grant`). Failures say nothing
/// about whether the account exists; repeated failures slow the account (and the client address) down, then
/// lock the account out for a while (`LoginThrottle`).
public struct PasswordGrant: TokenGrant {
    public static let grantType = GrantType.password
    public static let allowsPublicClients = true
    public init() {}

    public struct Request: Sendable {
        public let client: ClientRecord
        public let username: String
        public let password: String
        public let scope: Scope
        public let resources: [String]
        /// Throttling counts failures per address too.
        public let clientAddress: String?
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        let p = request.parameters
        return Request(
            client: request.client, username: try p.required("username"), password: try p.required("password"),
            scope: try context.resolveScope(try p.single("scope"), client: request.client),
            resources: try context.resolveResources(p.all("resource"), allowed: request.client.resources),
            clientAddress: request.clientAddress)
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        let user: UserRecord
        do {
            user = try await context.passwordAuthenticator.authenticate(
                username: request.username, password: request.password, address: request.clientAddress)
        } catch PasswordAuthenticator.Failure.invalidCredentials {
            throw OAuthError.invalidGrant.with(description: "Invalid username or password.")
        } catch PasswordAuthenticator.Failure.disabled {
            throw OAuthError.invalidGrant.with(description: "The account is disabled.")
        } catch PasswordAuthenticator.Failure.mustChangePassword {
            throw OAuthError.invalidGrant.with(description: "The password must be changed: sign in on the sign-in page to choose a new one.")
        } catch PasswordAuthenticator.Failure.throttled(let retryAfter) {
            throw OAuthError.invalidGrant.with(
                description: "Too many failed attempts; try again later.",
                debug: "throttled \(retryAfter)s: \(request.username)")
        }
        try await context.checkScopeRoles(request.scope, userID: user.id)
        return try await context.issueNewGrant(
            client: request.client, userID: user.id, scope: request.scope, resources: request.resources,
            withRefreshToken: request.client.allows(grantType: GrantType.refreshToken))
    }
}
