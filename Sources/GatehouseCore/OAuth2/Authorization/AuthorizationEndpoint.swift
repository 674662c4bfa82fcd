import Foundation

/// A validated authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1).
public struct AuthorizationRequest: Sendable {
    public let client: ClientRecord
    /// The redirect URI the response goes to, exactly as sent (OAuth 2.1 §4.1.1 requires it).
    public let redirectURI: String
    public let state: String?
    public let scope: Scope
    public let resources: [String]
    public let codeChallenge: String?
    public let nonce: String?
    public let prompt: Set<String>
    public let maxAge: Int64?
    public let idTokenHint: IDTokenClaims?
    public let loginHint: String?
    /// The parameters as received (single values), to carry the request through the login and consent pages.
    public let parameters: [(String, String)]

    public var isOutOfBand: Bool { redirectURI == RedirectURI.outOfBand }

    /// Our authorization endpoint with `resumeParameters`: where the login and consent pages return to.
    public var resumePath: String { ServerMetadata.Path.authorization + "?" + FormEncoding.encode(resumeParameters) }

    /// The parameters to resume this request once the user has signed in: `prompt=login` and `max_age` are
    /// satisfied by that sign-in, so they are dropped (the ID token still carries `auth_time`).
    public var resumeParameters: [(String, String)] {
        parameters.compactMap { name, value in
            switch name {
            case "max_age": return nil
            case "prompt":
                let rest = value.split(separator: " ").filter { $0 != "login" }.joined(separator: " ")
                return rest.isEmpty ? nil : (name, rest)
            default: return (name, value)
            }
        }
    }
}

/// The authorization endpoint's decisions (RFC 6749 §4.1, OAuth 2.1 §4.1, OIDC Core §3.1.2). The HTTP layer
/// turns an `Outcome` into a page or a redirect; everything that decides lives here.
public struct AuthorizationEndpoint: Sendable {
    let context: TokenContext
    let hints: IDTokenHintVerifier

    public init(context: TokenContext, hints: IDTokenHintVerifier) {
        self.context = context
        self.hints = hints
    }

    /// What the authorization endpoint decided: sign in, consent, redirect with a code or an error, or an error page.
    public enum Outcome: Sendable {
        /// Must not redirect (unknown client, bad redirect URI, or an error for the out-of-band URI).
        case errorPage(OAuthError)
        /// A response for the client: code or error, with `state` and `iss` (RFC 9207).
        case redirect(String)
        /// A code for the out-of-band redirect URI, shown on a page.
        case outOfBand(code: String, state: String?)
        case login(AuthorizationRequest)
        case consent(AuthorizationRequest, user: UserRecord, scopes: [ScopeRecord])
    }

    /// The answer of the consent page.
    public enum Decision: Sendable, Equatable {
        case allow(remember: Bool)
        case deny
    }

    static let singleValued = [
        "response_type", "scope", "state", "code_challenge", "code_challenge_method", "nonce", "prompt", "max_age",
        "id_token_hint", "login_hint", "ui_locales", "display", "acr_values", "claims_locales", "response_mode",
        "request", "request_uri", "registration", "claims",
    ]
    static let promptValues: Set<String> = ["none", "login", "consent", "select_account"]

    public func authorize(
        _ parameters: RequestParameters, session: (session: SessionRecord, user: UserRecord)?, decision: Decision? = nil
    ) async throws -> Outcome {
        let request: AuthorizationRequest
        switch try await validate(parameters) {
        case .failure(.page(let error)): return .errorPage(error)
        case .failure(.redirect(let error, let to)): return respond(error: error, to: to)
        case .success(let r): request = r
        }
        let now = context.clock.nowSeconds

        // OIDC Core §3.1.2.3: authenticate when there is no session, when asked to (prompt=login), when the
        // last sign-in is older than max_age, or when the hint names someone else.
        var needsLogin = session == nil || request.prompt.contains("login")
        if let session {
            // `>=`: max_age=0 always asks again (OIDC Core errata: like prompt=login).
            if let maxAge = request.maxAge, now - session.session.authTime >= maxAge { needsLogin = true }
            if let hint = request.idTokenHint, hint.sub != session.user.id { needsLogin = true }
        }
        if needsLogin {
            if request.prompt.contains("none") { return respond(error: .loginRequired, to: request) }
            return .login(request)
        }
        guard let (session, user) = session else { return .login(request) }
        do {
            try await context.checkScopeRoles(request.scope, userID: user.id)
        } catch let error as OAuthError {
            return respond(error: error, to: request)
        }

        switch decision {
        case .deny:
            return respond(error: OAuthError.accessDenied.with(description: "The user denied the request."), to: request)
        case .allow(let remember):
            if remember, !request.isOutOfBand {
                let previous = try await context.storage.consent(userID: user.id, clientID: request.client.id)
                let scope = Scope((previous?.scope.tokens ?? []) + request.scope.tokens)
                try await context.storage.saveConsent(
                    ConsentRecord(userID: user.id, clientID: request.client.id, scope: scope, createdAt: now))
            }
        case nil:
            // The out-of-band URI is never approved silently: whoever started the request gets the code, and
            // the user must see the page that says so (a phished link would otherwise hand it over). A public
            // client never skips it (RFC 6749 §10.2: it cannot prove who it is), even one stored before that
            // rule refused the combination.
            if !request.client.skipConsent || request.client.isPublic || request.isOutOfBand {
                let remembered = try await context.storage.consent(userID: user.id, clientID: request.client.id)
                let covered = remembered.map { request.scope.isSubset(of: $0.scope) } ?? false
                if request.prompt.contains("consent") || !covered || request.isOutOfBand {
                    if request.prompt.contains("none") { return respond(error: .consentRequired, to: request) }
                    let known = try await context.storage.listScopes()
                    let scopes = request.scope.tokens.map { name in
                        known.first { $0.name == name } ?? ScopeRecord(name: name, description: name, isDefault: false)
                    }
                    return .consent(request, user: user, scopes: scopes)
                }
            }
        }
        return try await issueCode(request, user: user, session: session, now: now)
    }

    /// RFC 6749 §4.1.2: a random code, stored as its hash, bound to everything the token request must match.
    func issueCode(_ request: AuthorizationRequest, user: UserRecord, session: SessionRecord, now: Int64) async throws
        -> Outcome
    {
        let raw = Secrets.generate()
        let client = request.client
        // A refresh token when the client has the grant, and — if it registered offline_access — only when
        // that scope was granted (OIDC Core §11).
        let refresh = client.allows(grantType: GrantType.refreshToken)
            && (request.scope.contains("offline_access") || !client.scope.contains("offline_access"))
        let record = AuthorizationCodeRecord(
            hash: Secrets.hash(raw), clientID: client.id, userID: user.id, redirectURI: request.redirectURI,
            scope: request.scope, resources: request.resources,
            codeChallenge: request.codeChallenge, nonce: request.nonce, authTime: session.authTime,
            sessionID: session.id, grantID: Secrets.identifier(), issueRefreshToken: refresh, createdAt: now,
            expiresAt: now + context.settings.authorizationCodeLifetime)
        try await context.storage.insertAuthorizationCode(record)
        if request.isOutOfBand { return .outOfBand(code: raw, state: request.state) }
        return .redirect(
            RedirectURI.appending(
                [("code", raw), ("state", request.state), ("iss", context.settings.issuer)], to: request.redirectURI))
    }

    /// An error for the client: redirected with `error`, `error_description`, `state` and `iss` (RFC 6749
    /// §4.1.2.1, RFC 9207 §2), or shown on a page for the out-of-band URI.
    func respond(error: OAuthError, to request: AuthorizationRequest) -> Outcome {
        respond(error: error, to: (request.redirectURI, request.state))
    }

    func respond(error: OAuthError, to target: (uri: String, state: String?)) -> Outcome {
        if target.uri == RedirectURI.outOfBand { return .errorPage(error) }
        return .redirect(
            RedirectURI.appending(
                [
                    ("error", error.code), ("error_description", error.safeDescription), ("state", target.state),
                    ("iss", context.settings.issuer),
                ], to: target.uri))
    }

    enum Invalid: Error {
        case page(OAuthError)
        case redirect(OAuthError, to: (uri: String, state: String?))
    }

    /// Checks the request in the order RFC 6749 §4.1.2.1 requires: client and redirect URI first (errors
    /// there never redirect), then everything else (errors go back to the client).
    func validate(_ p: RequestParameters) async throws -> Result<AuthorizationRequest, Invalid> {
        func page(_ description: String) -> Result<AuthorizationRequest, Invalid> {
            .failure(.page(OAuthError.invalidRequest.with(description: description)))
        }
        guard (p.values["client_id"] ?? []).count <= 1, (p.values["redirect_uri"] ?? []).count <= 1 else {
            return page("The parameters client_id and redirect_uri must not be repeated.")
        }
        guard let clientID = try p.single("client_id") else { return page("The parameter client_id is required.") }
        guard clientID.utf8.count <= 200, let client = try await context.storage.client(id: clientID) else {
            return page("Unknown client.")
        }
        // OAuth 2.1 §4.1.1 and OIDC Core §3.1.2.1 require redirect_uri (RFC 6749 let it be omitted).
        guard let sentRedirect = try p.single("redirect_uri") else { return page("The parameter redirect_uri is required.") }
        // python-social-auth's `redirect_state`: only for clients registered with --legacy-redirect-state.
        let legacy = client.legacyRedirectState ? RedirectURI.withoutRedirectState(sentRedirect) : nil
        guard client.redirectURIs.contains(where: { registered in
            RedirectURI.matches(registered: registered, requested: sentRedirect)
                || legacy.map { RedirectURI.matches(registered: registered, requested: $0) } == true
        }) else {
            return page("The redirect_uri is not registered for this client.")
        }
        let redirectURI = sentRedirect

        // From here on, errors are returned to the client. A repeated state cannot be echoed.
        let stateValues = p.values["state"] ?? []
        let target = (uri: redirectURI, state: stateValues.count == 1 && !stateValues[0].isEmpty ? stateValues[0] : nil)
        func fail(_ error: OAuthError, _ description: String? = nil) -> Result<AuthorizationRequest, Invalid> {
            .failure(.redirect(description.map { error.with(description: $0) } ?? error, to: target))
        }
        for name in Self.singleValued where (p.values[name] ?? []).count > 1 {
            return fail(.invalidRequest, "The parameter \(name) must not be repeated.")
        }
        if target.state.map({ $0.utf8.count > 2000 }) == true { return fail(.invalidRequest, "The state is too long.") }
        if try p.single("request") != nil { return fail(.requestNotSupported) }
        if try p.single("request_uri") != nil { return fail(.requestURINotSupported) }
        if try p.single("registration") != nil { return fail(.registrationNotSupported) }

        guard let responseType = try p.single("response_type") else {
            return fail(.invalidRequest, "The parameter response_type is required.")
        }
        // OAuth 2.1 §4.1.1: only the code flow; implicit (`token`) and hybrid types are refused.
        guard responseType == "code" else {
            return fail(.unsupportedResponseType, "The response_type \(responseType) is not supported; use code.")
        }
        if let mode = try p.single("response_mode"), mode != "query" {
            return fail(.invalidRequest, "Only response_mode=query is supported.")
        }
        guard client.allows(grantType: GrantType.authorizationCode) else {
            return fail(.unauthorizedClient, "The client is not allowed to use the authorization code flow.")
        }
        let scope: Scope
        let resources: [String]
        do {
            scope = try context.resolveScope(try p.single("scope"), client: client)
            resources = try context.resolveResources(p.all("resource"), allowed: client.resources)
        } catch let error as OAuthError {
            return fail(error)
        }

        // RFC 7636 with OAuth 2.1 §4.1.1: S256 only; required for public clients.
        let method = try p.single("code_challenge_method")
        let challenge = try p.single("code_challenge")
        if let method, method != PKCE.s256 {
            return fail(.invalidRequest, "The code_challenge_method \(method) is not supported; use S256.")
        }
        if let challenge {
            guard method != nil else { return fail(.invalidRequest, "code_challenge_method=S256 is required.") }
            guard PKCE.isValidChallenge(challenge) else {
                return fail(.invalidRequest, "The code_challenge is not a valid S256 challenge.")
            }
        } else if method != nil {
            return fail(.invalidRequest, "The parameter code_challenge is required.")
        } else if client.isPublic {
            return fail(.invalidRequest, "Public clients must use PKCE (code_challenge with S256).")
        }

        let nonce = try p.single("nonce")
        if let nonce, nonce.utf8.count > 512 { return fail(.invalidRequest, "The nonce is too long.") }
        let prompt = Set((try p.single("prompt") ?? "").split(separator: " ").map(String.init))
        if let unknown = prompt.first(where: { !Self.promptValues.contains($0) }) {
            return fail(.invalidRequest, "The prompt value \(unknown) is not supported.")
        }
        if prompt.contains("none"), prompt.count > 1 {
            return fail(.invalidRequest, "prompt=none cannot be combined with other values.")
        }
        var maxAge: Int64?
        if let raw = try p.single("max_age") {
            guard let value = Int64(raw), value >= 0 else {
                return fail(.invalidRequest, "max_age must be a non-negative number of seconds.")
            }
            maxAge = value
        }
        var hint: IDTokenClaims?
        if let raw = try p.single("id_token_hint") {
            guard let claims = await hints.verify(raw), claims.aud.values.contains(client.id) else {
                return fail(.invalidRequest, "The id_token_hint is not an ID token this server issued to this client.")
            }
            hint = claims
        }
        let loginHint = try p.single("login_hint").flatMap { $0.utf8.count <= 150 ? $0 : nil }

        var kept: [(String, String)] = []
        for (name, values) in p.values.sorted(by: { $0.key < $1.key })
        where values.count == 1 && !values[0].isEmpty
            && (Self.singleValued.contains(name) || name == "client_id" || name == "redirect_uri")
        {
            kept.append((name, values[0]))
        }
        for r in p.all("resource") { kept.append(("resource", r)) }
        return .success(
            AuthorizationRequest(
                client: client, redirectURI: redirectURI, state: target.state,
                scope: scope, resources: resources, codeChallenge: challenge, nonce: nonce, prompt: prompt,
                maxAge: maxAge, idTokenHint: hint, loginHint: loginHint, parameters: kept))
    }
}
