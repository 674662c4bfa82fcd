/// Token revocation (RFC 7009).
///
/// The client authenticates (public clients by client_id, §2.1) and may only revoke its own tokens.
/// Unknown, foreign and already-invalid tokens get the same 200 answer (§2.2). A storage failure is an
/// error, never a false success. Revoking a refresh token revokes its whole grant, so the access tokens
/// issued from it turn inactive too; revoking an access token records its `jti` until it expires.
public struct RevocationEndpoint: Sendable {
    /// Only what revocation uses: clients (authentication) and tokens.
    public typealias Storage = ClientStore & TokenStore
    let storage: any Storage
    let authenticator: ClientAuthenticator
    let verifier: AccessTokenVerifier
    let clock: Clock
    let events: Events

    public init(storage: any Storage, verifier: AccessTokenVerifier, clock: Clock, events: Events = .none) {
        self.events = events
        self.storage = storage
        self.authenticator = ClientAuthenticator(clients: storage, clock: clock)
        self.verifier = verifier
        self.clock = clock
    }

    public func handle(_ parameters: RequestParameters, authorization: String?) async throws {
        let (client, _) = try await authenticator.authenticate(parameters, authorization: authorization)
        let token = try parameters.required("token")
        // §2.1: the hint only speeds up the lookup; an unknown hint value may be ignored (§2.2.1 lets us
        // answer unsupported_token_type, but every type we issue is revocable).
        let hint = try parameters.single("token_type_hint")
        let looksLikeJWT = token.split(separator: ".", omittingEmptySubsequences: false).count == 3
        if hint == "access_token" || looksLikeJWT {
            if try await revokeAccessToken(token, client: client) { return }
            try await revokeRefreshToken(token, client: client)
        } else {
            try await revokeRefreshToken(token, client: client)
        }
    }

    private func revokeRefreshToken(_ token: String, client: ClientRecord) async throws {
        guard let record = try await storage.refreshToken(hash: Secrets.hash(token)), record.clientID == client.id
        else { return }
        try await storage.revokeGrant(id: record.grantID, at: clock.nowSeconds)
        try? await events.emit(
            Events.grantRevoked,
            ["grant_id": record.grantID, "client_id": client.id, "user_id": record.userID ?? "", "reason": "revoked_by_client"])
    }

    private func revokeAccessToken(_ token: String, client: ClientRecord) async throws -> Bool {
        guard let claims = await verifier.verifySignature(token) else { return false }
        guard claims.client_id == client.id else { return true }  // not theirs: answer 200, change nothing
        guard verifier.isCurrent(claims) else { return true }  // expired already
        try await storage.revokeAccessToken(jti: claims.jti, expiresAt: claims.exp)
        return true
    }
}
