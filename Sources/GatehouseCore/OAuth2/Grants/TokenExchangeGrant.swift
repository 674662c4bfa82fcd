import Foundation

/// RFC 8693 token exchange, for clients registered with the grant.
///
/// - With `subject_issuer` naming a configured provider: the subject token is that provider's access token
///   (or, for OIDC providers, its ID token). The provider says whose it is and that it was issued to our
///   client there (`UpstreamClient.identity`); Gatehouse finds or creates the user and the linked identity,
///   and issues its own access token (and a refresh token, if the client is registered for them).
/// - Without `subject_issuer` (or with our issuer): the subject token is one of our access tokens, exchanged
///   for one with a narrower scope or another audience; the new token carries an `act` claim naming the
///   requesting client (§4.1 delegation), nested when the subject token already had one. Only tokens of
///   the client itself, addressed to it, or of clients it may exchange from (`mayExchangeFrom`) qualify.
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

    /// What the exchange is of: a provider's token, or one of ours.
    public enum Request: Sendable {
        case upstream(Upstream)
        case own(Own)
    }

    /// A provider's access token (or, for OIDC providers, ID token), `subject_issuer` naming the provider.
    public struct Upstream: Sendable {
        public let client: ClientRecord
        public let token: String
        public let isIDToken: Bool
        /// The provider's id (`subject_issuer`).
        public let provider: String
        /// Parameters that may fill a templated user-details URL (`templateParameters(_:)`).
        public let templateParameters: [String: String]
        public let scope: Scope
        public let resources: [String]
    }

    /// One of our access tokens, exchanged for a narrower scope or another audience.
    public struct Own: Sendable {
        public let client: ClientRecord
        public let token: String
        /// The narrower scope asked for (nil: the subject token's, within the client's registration).
        public let scope: Scope?
        public let resources: [String]
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        let (parameters, client) = (request.parameters, request.client)
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
        // RFC 8693 §2.1: `resource` and `audience` name where the new token is used; both must be resources
        // the requesting client registered.
        let resources = try context.resolveResources(
            parameters.all("resource") + parameters.all("audience"), allowed: client.resources)
        let requestedScope = try parameters.single("scope")
        if let issuer, upstream {
            return .upstream(
                Upstream(
                    client: client, token: subjectToken, isIDToken: subjectTokenType == Self.idTokenType, provider: issuer,
                    templateParameters: Self.templateParameters(parameters),
                    scope: try context.resolveScope(requestedScope, client: client), resources: resources))
        }
        var scope: Scope?
        if let requestedScope {
            guard let parsed = Scope(parsing: requestedScope) else {
                throw OAuthError.invalidScope.with(description: "The scope parameter is malformed.")
            }
            if !parsed.isEmpty { scope = parsed }
        }
        return .own(Own(client: client, token: subjectToken, scope: scope, resources: resources))
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        var issued: IssuedTokens
        switch request {
        case .upstream(let r):
            issued = try await exchangeUpstream(r, context: context)
        case .own(let r):
            issued = try await exchangeOwn(r, context: context)
        }
        issued.issuedTokenType = Self.accessTokenType
        return issued
    }

    /// Request parameters that may fill a provider's templated user-details URL: single-valued ones, never
    /// the credentials or the token themselves.
    public static func templateParameters(_ parameters: RequestParameters, excluding more: Set<String> = []) -> [String: String] {
        let excluded = Set([
            "subject_token", "subject_token_type", "actor_token", "actor_token_type", "client_id", "client_secret",
            "client_assertion", "client_assertion_type",
            "access_token", "grant_type", "scope", "resource", "audience", "requested_token_type", "subject_issuer",
        ]).union(more)
        var extra: [String: String] = [:]
        for (name, values) in parameters.values where values.count == 1 && !excluded.contains(name) { extra[name] = values[0] }
        return extra
    }

    /// The parameters of an exchange of `provider`'s access token (dot's register-by-token): the client's
    /// default scope and no resource; `templateParameters` are the request's other parameters, which may
    /// fill a templated user-details URL (`templateParameters(_:)` picks them).
    public static func upstreamExchange(accessToken: String, provider: String, templateParameters: RequestParameters)
        -> RequestParameters
    {
        var values: [String: [String]] = [:]
        for (name, value) in Self.templateParameters(templateParameters) { values[name] = [value] }
        values["grant_type"] = [grantType]
        values["subject_token"] = [accessToken]
        values["subject_token_type"] = [accessTokenType]
        values["subject_issuer"] = [provider]
        return RequestParameters(values)
    }

    /// The upstream half of the exchange: the provider establishes whose token it is
    /// (`UpstreamClient.identity`), the person is found or created, and tokens are issued to the client — a
    /// refresh token only when the client is registered for `refresh_token`.
    func exchangeUpstream(_ request: Upstream, context: TokenContext) async throws -> IssuedTokens {
        let (token, idToken, client, scope) = (request.token, request.isIDToken, request.client, request.scope)
        guard let provider = try await providers().first(where: { $0.id == request.provider }) else {
            throw OAuthError.invalidRequest.with(
                description: "The subject_issuer \(request.provider) is not a configured provider.")
        }
        guard let upstream, let broker else {
            throw OAuthError.invalidRequest.with(description: "Token exchange with providers is not available.")
        }
        if idToken, !provider.resolved.isOIDC {
            throw OAuthError.invalidRequest.with(description: "The provider \(provider.id) does not issue ID tokens; send its access token.")
        }
        let external: ExternalIdentity
        do {
            external = idToken
                ? try await upstream.identity(forIDToken: token, provider: provider)
                : try await upstream.identity(forAccessToken: token, provider: provider, parameters: request.templateParameters)
        } catch let e as UpstreamError {
            switch e.kind {
            case .rejected, .invalidResponse:
                throw OAuthError.invalidGrant.with(description: "The provider did not accept the subject_token. \(e.description)", debug: e.detail)
            case .unsupported:
                throw OAuthError.invalidRequest.with(description: e.description, debug: e.detail)
            case .unavailable, .misconfigured:
                throw OAuthError.temporarilyUnavailable.with(description: "The provider could not check the token.", debug: e.detail)
            }
        }
        let resolution = try await broker.resolve(external, provider: provider)
        try await context.checkScopeRoles(scope, userID: resolution.user.id)
        return try await context.issueNewGrant(
            client: client, userID: resolution.user.id, scope: scope, resources: request.resources,
            withRefreshToken: client.allows(grantType: GrantType.refreshToken))
    }

    func exchangeOwn(_ request: Own, context: TokenContext) async throws -> IssuedTokens {
        let client = request.client
        guard let verifier, let claims = try await verifier.activeClaims(request.token, revocations: context.storage) else {
            throw OAuthError.invalidGrant.with(description: "The subject_token is invalid, expired or revoked.")
        }
        // Whose tokens this client may exchange: its own, those addressed to it (`aud`), and those of the
        // clients it is allowed to exchange from (`--may-exchange-from`). Any other client's user token must
        // not become one under this client's id.
        guard claims.client_id == client.id || claims.aud.values.contains(client.id)
            || client.mayExchangeFrom.contains(claims.client_id)
        else {
            throw OAuthError.invalidGrant.with(
                description: "This client may not exchange tokens issued to another client.",
                debug: "subject token of \(claims.client_id), aud \(claims.aud.values), requester \(client.id)")
        }
        // The new token may carry only what the subject token had AND what the requesting client registered.
        let original = (Scope(parsing: claims.scope) ?? .empty).intersection(client.scope)
        var scope = original
        if let narrowed = request.scope {
            guard narrowed.isSubset(of: original) else {
                throw OAuthError.invalidScope.with(
                    description: "The scope may only narrow the subject token's scope, within the client's registration.")
            }
            scope = narrowed
        }
        guard !scope.isEmpty else {
            throw OAuthError.invalidScope.with(description: "The subject token has no scope this client may hold.")
        }
        if let userID = claims.userID { try await context.checkScopeRoles(scope, userID: userID) }
        let resources = request.resources
        let now = context.clock.nowSeconds
        let actor = ActorClaim(sub: client.id, act: claims.act)
        let exchanged = AccessTokenClaims(
            iss: context.settings.issuer, sub: claims.sub,
            aud: resources.isEmpty ? claims.aud : Audience(resources), client_id: client.id, scope: scope.description,
            jti: Secrets.identifier(), iat: now, exp: min(claims.exp, now + context.settings.accessTokenLifetime),
            grant_id: claims.grant_id, act: actor)
        return try await context.sign(exchanged, idToken: nil, userID: claims.userID, refreshToken: nil, now: now)
    }
}
