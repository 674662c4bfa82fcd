import Foundation

/// RFC 8693 token exchange, for clients registered with the grant.
///
/// - With `subject_issuer` naming a configured provider: the subject token is that provider's access token.
///   Gatehouse checks it by calling the provider's user-details endpoint (extra request parameters fill a
///   templated URL), finds or creates the user and the linked identity, and issues its own access and
///   refresh token to the requesting client.
/// - Without `subject_issuer` (or with our issuer): the subject token is one of our access tokens, exchanged
///   for one with a narrower scope or another audience; the new token carries an `act` claim naming the
///   requesting client (§4.1 delegation), nested when the subject token already had one.
public struct TokenExchangeGrant: TokenGrant {
    public static let grantType = GrantType.tokenExchange
    public static let allowsPublicClients = false
    public static let accessTokenType = "urn:ietf:params:oauth:token-type:access_token"
    public static let idTokenType = "urn:ietf:params:oauth:token-type:id_token"

    let providers: @Sendable () async throws -> [ProviderRecord]
    let upstream: UpstreamClient?
    let broker: Broker?
    let verifier: AccessTokenVerifier?

    public init(
        providers: @escaping @Sendable () async throws -> [ProviderRecord], upstream: UpstreamClient?, broker: Broker?,
        verifier: AccessTokenVerifier?
    ) {
        self.providers = providers
        self.upstream = upstream
        self.broker = broker
        self.verifier = verifier
    }

    public func handle(_ parameters: RequestParameters, client: ClientRecord, context: TokenContext) async throws
        -> TokenResponse
    {
        let subjectToken = try parameters.required("subject_token")
        let subjectTokenType = try parameters.required("subject_token_type")
        if let requested = try parameters.single("requested_token_type"), requested != Self.accessTokenType {
            throw OAuthError.invalidRequest.with(description: "Only access tokens can be requested (requested_token_type).")
        }
        if try parameters.single("actor_token") != nil {
            throw OAuthError.invalidRequest.with(description: "actor_token is not supported; the client is the actor.")
        }
        let issuer = try parameters.single("subject_issuer")
        let upstream = issuer.map { $0 != context.settings.issuer } ?? false
        // An upstream OIDC provider's ID token (bound to our client by `aud`), or an access token.
        guard subjectTokenType == Self.accessTokenType || (upstream && subjectTokenType == Self.idTokenType) else {
            throw OAuthError.invalidRequest.with(
                description: "subject_token_type must be \(Self.accessTokenType) (or, for an OIDC provider, \(Self.idTokenType)).")
        }
        if let issuer, upstream {
            return try await exchangeUpstream(
                subjectToken, type: subjectTokenType, issuer: issuer, parameters: parameters, client: client, context: context)
        }
        return try await exchangeOwn(subjectToken, parameters: parameters, client: client, context: context)
    }

    func exchangeUpstream(
        _ token: String, type: String, issuer: String, parameters: RequestParameters, client: ClientRecord,
        context: TokenContext
    ) async throws -> TokenResponse {
        guard let upstream, let broker, let provider = try await providers().first(where: { $0.id == issuer }) else {
            throw OAuthError.invalidRequest.with(description: "The subject_issuer \(issuer) is not a configured provider.")
        }
        if type == Self.idTokenType, !provider.resolved.isOIDC {
            throw OAuthError.invalidRequest.with(description: "The provider \(issuer) does not issue ID tokens; send its access token.")
        }
        let scope = try context.resolveScope(try parameters.single("scope"), client: client)
        let resources = try context.resolveResources(parameters.all("resource") + parameters.all("audience"), allowed: client.resources)
        // Extra single-valued parameters fill the provider's user-details template (e.g. {username}).
        var extra: [String: String] = [:]
        for (name, values) in parameters.values where values.count == 1 { extra[name] = values[0] }
        let external: ExternalIdentity
        do {
            external = type == Self.idTokenType
                ? try await upstream.identity(forIDToken: token, provider: provider)
                : try await upstream.identity(forAccessToken: token, provider: provider, parameters: extra)
        } catch let e as UpstreamError {
            switch e.kind {
            case .rejected, .invalidResponse:
                throw OAuthError.invalidGrant.with(description: "The provider did not accept the subject_token. \(e.description)", debug: e.detail)
            case .unavailable, .misconfigured:
                throw OAuthError.temporarilyUnavailable.with(description: "The provider could not check the token.", debug: e.detail)
            }
        }
        let resolution = try await broker.resolve(external, provider: provider)
        try await context.checkScopeRoles(scope, userID: resolution.user.id)
        var response = try await context.issueNewGrant(
            client: client, userID: resolution.user.id, scope: scope, resources: resources,
            withRefreshToken: client.allows(grantType: GrantType.refreshToken))
        response.issued_token_type = Self.accessTokenType
        return response
    }

    func exchangeOwn(_ token: String, parameters: RequestParameters, client: ClientRecord, context: TokenContext)
        async throws -> TokenResponse
    {
        guard let verifier, let claims = try await verifier.activeClaims(token, revocations: context.storage) else {
            throw OAuthError.invalidGrant.with(description: "The subject_token is invalid, expired or revoked.")
        }
        // The new token may carry only what the subject token had AND what the requesting client registered.
        let original = (Scope(parsing: claims.scope) ?? .empty).intersection(client.scope)
        var scope = original
        if let requested = try parameters.single("scope") {
            guard let narrowed = Scope(parsing: requested), narrowed.isSubset(of: original) else {
                throw OAuthError.invalidScope.with(
                    description: "The scope may only narrow the subject token's scope, within the client's registration.")
            }
            if !narrowed.isEmpty { scope = narrowed }
        }
        guard !scope.isEmpty else {
            throw OAuthError.invalidScope.with(description: "The subject token has no scope this client may hold.")
        }
        if let userID = claims.userID { try await context.checkScopeRoles(scope, userID: userID) }
        // RFC 8693 §2.1: `resource` and `audience` name where the new token is used; both must be resources
        // the requesting client registered.
        let resources = try context.resolveResources(parameters.all("resource") + parameters.all("audience"), allowed: client.resources)
        let now = context.clock.nowSeconds
        let actor = ActorClaim(sub: client.id, act: claims.act)
        let exchanged = AccessTokenClaims(
            iss: context.settings.issuer, sub: claims.sub,
            aud: resources.isEmpty ? claims.aud : Audience(resources), client_id: client.id, scope: scope.description,
            jti: Secrets.identifier(), iat: now, exp: min(claims.exp, now + context.settings.accessTokenLifetime),
            grant_id: claims.grant_id, act: actor)
        let signed = try await context.issuer.sign(exchanged)
        var response = TokenResponse(access_token: signed, expires_in: exchanged.exp - now, scope: scope.description, refresh_token: nil)
        response.issued_token_type = Self.accessTokenType
        return response
    }
}
