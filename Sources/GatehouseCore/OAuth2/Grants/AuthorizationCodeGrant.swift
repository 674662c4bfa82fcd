/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.5–4.6) and OAuth 2.1 §4.1.3.
///
/// The code must exist, belong to the authenticated client, be unexpired and unused; `redirect_uri` must
/// repeat the one of the authorization request; the PKCE verifier must match the challenge, and a verifier
/// for a code issued without a challenge is refused (downgrade, RFC 9700 §4.8.2). A code used twice fails
/// and revokes every token issued from it (§4.1.2, RFC 9700 §4.2.4).
public struct AuthorizationCodeGrant: TokenGrant {
    public static let grantType = GrantType.authorizationCode
    public static let allowsPublicClients = true
    public init() {}

    public struct Request: Sendable {
        public let client: ClientRecord
        public let code: String
        public let redirectURI: String?
        public let codeVerifier: String?
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        let p = request.parameters
        return Request(
            client: request.client, code: try p.required("code"), redirectURI: try p.single("redirect_uri"),
            codeVerifier: try p.single("code_verifier"))
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        let (client, raw, redirectURI, verifier) = (request.client, request.code, request.redirectURI, request.codeVerifier)
        let invalid = OAuthError.invalidGrant.with(description: "The authorization code is invalid, expired or used.")
        let now = context.clock.nowSeconds
        guard raw.utf8.count <= 256, let code = try await context.storage.authorizationCode(hash: Secrets.hash(raw))
        else { throw invalid.with(description: invalid.description, debug: "unknown code") }
        guard code.clientID == client.id else {
            throw invalid.with(description: invalid.description, debug: "code of another client")
        }
        if code.usedAt != nil { throw try await replayed(code, now: now, context: context) }
        guard code.expiresAt > now else { throw invalid.with(description: invalid.description, debug: "code expired") }
        // RFC 6749 §4.1.3: every authorization request carried redirect_uri (OAuth 2.1 §4.1.1 requires it), so
        // the token request must repeat it, identically.
        guard let redirectURI, redirectURI == code.redirectURI else {
            throw OAuthError.invalidGrant.with(description: "The redirect_uri does not match the authorization request.")
        }
        if let challenge = code.codeChallenge {
            guard let verifier else {
                throw OAuthError.invalidGrant.with(description: "The code_verifier is required (PKCE).")
            }
            guard PKCE.isValidVerifier(verifier), PKCE.verify(verifier: verifier, challenge: challenge) else {
                throw OAuthError.invalidGrant.with(description: "The code_verifier does not match the code_challenge.")
            }
        } else if verifier != nil {
            throw OAuthError.invalidGrant.with(
                description: "A code_verifier was sent, but the authorization request had no code_challenge.")
        }
        guard let user = try await context.storage.user(id: code.userID) else {
            throw invalid.with(description: invalid.description, debug: "user deleted")
        }
        // A code issued before an administrator disabled the account gives nothing afterwards.
        guard !user.isDisabled else { throw invalid.with(description: invalid.description, debug: "user disabled") }

        let grant = GrantRecord(
            id: code.grantID, clientID: client.id, userID: user.id, scope: code.scope, createdAt: now, revokedAt: nil,
            authTime: code.authTime, sessionID: code.sessionID)
        let refresh = code.issueRefreshToken
            ? context.makeRefreshToken(
                grantID: grant.id, client: client, userID: user.id, scope: code.scope, resources: code.resources) : nil
        if client.singleGrantPerUser {
            try await context.storage.revokeGrants(userID: user.id, clientID: client.id, at: now)
        }
        guard try await context.storage.redeemAuthorizationCode(
            hash: code.hash, at: now, grant: grant, refreshToken: refresh?.record)
        else {
            // Lost a race with a concurrent redemption of the same code: that is a replay too.
            throw try await replayed(code, now: now, context: context)
        }
        // Signed only now that the code is spent: a replay or a lost race never gets a signed token.
        let claims = context.accessTokenClaims(
            client: client, subject: user.id, scope: code.scope, resources: code.resources, grantID: grant.id)
        let idToken = code.scope.contains("openid")
            ? context.idTokenInput(
                client: client, userID: user.id, authTime: code.authTime, nonce: code.nonce, sessionID: code.sessionID)
            : nil
        return try await context.sign(claims, idToken: idToken, userID: user.id, refreshToken: refresh?.raw)
    }

    /// A used code came back: revoke what the first redemption issued (RFC 6749 §4.1.2).
    private func replayed(_ code: AuthorizationCodeRecord, now: Int64, context: TokenContext) async throws -> OAuthError {
        try await context.storage.revokeGrant(id: code.grantID, at: now)
        try? await context.events.emit(
            Events.grantRevoked,
            ["grant_id": code.grantID, "client_id": code.clientID, "user_id": code.userID, "reason": "authorization_code_reuse"])
        var error = OAuthError.invalidGrant.with(
            description: "The authorization code was already used; tokens issued from it have been revoked.",
            debug: "authorization code reuse, grant \(code.grantID) revoked")
        error.event = "authorization_code.reused"
        return error
    }
}
