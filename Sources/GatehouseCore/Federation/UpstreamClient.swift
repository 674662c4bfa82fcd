import Foundation
import JWTKit
import Synchronization

/// How federation talks HTTP to providers (a protocol: the core has no HTTP client; the server gives it one).
public protocol UpstreamHTTP: Sendable {
    func get(_ url: String, headers: [(String, String)]) async throws -> UpstreamResponse
    func postForm(_ url: String, form: [(String, String)], headers: [(String, String)]) async throws -> UpstreamResponse
    func postJSON(_ url: String, body: String, headers: [(String, String)]) async throws -> UpstreamResponse
}

/// An upstream provider's HTTP answer: status, body, and cache lifetime.
public struct UpstreamResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }
    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }
}

/// Why an upstream sign-in or token check failed. `description` is safe to show; `detail` is for logs.
public struct UpstreamError: Error, Sendable, CustomStringConvertible {
    /// `unsupported`: the provider has no way to do what was asked (e.g. prove whose an access token is);
    /// the request should not be retried as it is.
    public enum Kind: Sendable { case unavailable, rejected, invalidResponse, misconfigured, unsupported }
    public let kind: Kind
    public let description: String
    public let detail: String
    public init(_ kind: Kind, _ description: String, detail: String) {
        self.kind = kind
        self.description = description
        self.detail = detail
    }
}

/// Speaks to one provider: discovery (OIDC), the authorization URL, the code exchange, ID-token validation
/// and the user-details call, then maps the provider's claims to an `ExternalIdentity`.
public final class UpstreamClient: Sendable {
    let http: any UpstreamHTTP
    let clock: Clock
    /// Discovery documents and JWKS per issuer, kept an hour.
    private let discovery = Mutex<[String: (Endpoints, Int64)]>([:])
    private let keySets = Mutex<[String: (JWTKeyCollection, Int64)]>([:])
    private let forcedRefreshes = Mutex<[String: Int64]>([:])

    public init(http: any UpstreamHTTP, clock: Clock) {
        self.http = http
        self.clock = clock
    }

    /// A provider's endpoints: configured, or read from its discovery document.
    public struct Endpoints: Sendable {
        public var authorize: String
        public var token: String
        public var userinfo: String?
        public var jwks: String?
        public var issuer: String?
        /// RFC 7662 introspection at the provider (configured, or from the discovery document).
        public var introspection: String? = nil
    }

    public func endpoints(_ provider: ProviderRecord) async throws -> Endpoints {
        let p = provider.resolved
        guard p.isOIDC, let issuer = p.issuer else {
            guard let a = p.authorizeURL, let t = p.tokenURL else {
                throw UpstreamError(.misconfigured, "The provider is not configured correctly.", detail: "missing URLs")
            }
            return Endpoints(
                authorize: a, token: t, userinfo: p.userinfoURL, jwks: nil, issuer: nil, introspection: p.introspectionURL)
        }
        let now = clock.nowSeconds
        if let (cached, at) = discovery.withLock({ $0[issuer] }), now - at < 3600 { return cached }
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let doc = try await fetchJSON(base + "/.well-known/openid-configuration", what: "discovery document")
        // OIDC Discovery §4.3: the document's issuer must be the one we asked for.
        guard doc["issuer"] as? String == issuer, let a = doc["authorization_endpoint"] as? String,
            let t = doc["token_endpoint"] as? String, let jwks = doc["jwks_uri"] as? String
        else {
            throw UpstreamError(
                .invalidResponse, "The provider's configuration could not be read.", detail: "discovery of \(issuer) incomplete or issuer mismatch")
        }
        let introspection = p.introspectionURL ?? doc["introspection_endpoint"] as? String
        for url in [a, t, jwks] + (introspection.map { [$0] } ?? []) { try checkTransport(url) }
        let endpoints = Endpoints(
            authorize: a, token: t, userinfo: p.userinfoURL ?? doc["userinfo_endpoint"] as? String, jwks: jwks, issuer: issuer,
            introspection: introspection)
        discovery.withLock { $0[issuer] = (endpoints, now) }
        return endpoints
    }

    /// The URL that sends the browser to the provider (RFC 6749 §4.1.1 with PKCE and, for OIDC, a nonce).
    public func authorizationURL(
        _ provider: ProviderRecord, redirectURI: String, state: String, codeVerifier: String, nonce: String
    ) async throws -> String {
        let p = provider.resolved
        let e = try await endpoints(p)
        var params: [(String, String?)] = [
            ("response_type", "code"), ("client_id", p.clientID), ("redirect_uri", redirectURI),
            ("scope", p.scope.isEmpty ? nil : p.scope.description), ("state", state),
            ("code_challenge", PKCE.challenge(for: codeVerifier)), ("code_challenge_method", PKCE.s256),
        ]
        if p.isOIDC { params.append(("nonce", nonce)) }
        return RedirectURI.appending(params, to: e.authorize)
    }

    /// Exchanges the code, validates the ID token (OIDC), fetches the user's details, and maps them.
    public func completeSignIn(
        _ provider: ProviderRecord, code: String, redirectURI: String, codeVerifier: String, nonce: String
    ) async throws -> ExternalIdentity {
        let p = provider.resolved
        let e = try await endpoints(p)
        try checkTransport(e.token)
        let response = try await http.postForm(
            e.token,
            form: [
                ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
                ("code_verifier", codeVerifier), ("client_id", p.clientID), ("client_secret", p.clientSecret),
            ], headers: [("Accept", "application/json")])
        guard let json = response.json else {
            throw UpstreamError(.invalidResponse, "The provider's answer could not be read.", detail: "token endpoint answered \(response.status), not JSON")
        }
        guard response.status == 200, let accessToken = json["access_token"] as? String else {
            throw UpstreamError(
                .rejected, "The provider did not accept the sign-in.",
                detail: "token endpoint \(response.status): \((json["error"] as? String) ?? "no access_token")")
        }
        var claims: [String: Any] = [:]
        if p.isOIDC {
            guard let idToken = json["id_token"] as? String else {
                throw UpstreamError(.invalidResponse, "The provider sent no ID token.", detail: "no id_token")
            }
            claims = try await validateIDToken(idToken, provider: p, endpoints: e, nonce: nonce)
        }
        if let userinfo = e.userinfo {
            let details = try await userDetails(userinfo, provider: p, accessToken: accessToken, parameters: json.compactMapValues { $0 as? String })
            // OIDC Core §5.3.2: UserInfo's sub must match the ID token's.
            if p.isOIDC, let sub = claims["sub"] as? String, let other = details["sub"] as? String, other != sub {
                throw UpstreamError(.invalidResponse, "The provider's answers do not agree.", detail: "userinfo sub mismatch")
            }
            claims.merge(details) { idTokenValue, _ in idTokenValue }
        }
        if p.kind == .github {
            // GitHub's /user email is the public address; only /user/emails says whether it is verified.
            let primary = (try? await githubPrimaryEmail(accessToken)) ?? [:]
            if claims["email"] == nil || claims["email"] is NSNull {
                claims.merge(primary) { a, _ in a }
            } else {
                claims["email_verified"] = primary["email_verified"] as? Bool == true
                    && (primary["email"] as? String)?.lowercased() == (claims["email"] as? String)?.lowercased()
            }
        }
        return try map(claims, provider: p)
    }

    /// Establishes whose access token this is (RFC 8693 token exchange, dot's register-by-token).
    ///
    /// The person is only ever identified by the provider itself, from a fixed endpoint: introspection (RFC
    /// 7662, or GitHub's application token check), which also proves the token was issued to our client at
    /// the provider; or, when the operator allows foreign tokens for the provider, its fixed "who am I"
    /// endpoint. Request `parameters` never identify: they may only fill a templated user-details URL
    /// (`…/users/{username}/`) *after* the subject is known, and that answer must be about the same subject.
    public func identity(forAccessToken token: String, provider: ProviderRecord, parameters: [String: String]) async throws
        -> ExternalIdentity
    {
        let p = provider.resolved
        let e = try await endpoints(p)
        var identity: ExternalIdentity
        if p.kind == .github, p.introspectionURL == nil, !p.allowForeignTokens {
            identity = try await githubApplicationCheck(token, provider: p)
        } else if let introspection = e.introspection {
            identity = try await introspect(token, at: introspection, provider: p, whoami: Self.whoami(p, e))
        } else if let whoami = Self.whoami(p, e) {
            guard p.allowForeignTokens else {
                throw UpstreamError(
                    .unsupported,
                    "The provider \(p.id) cannot show that an access token was issued to Gatehouse: send its ID token, or configure introspection_url or allow_foreign_tokens for it.",
                    detail: "no introspection for \(p.id) and foreign tokens not allowed")
            }
            var claims = try await userDetails(whoami, provider: p, accessToken: token, parameters: [:])
            if p.kind == .github { claims = await withGitHubEmail(claims, token: token) }
            identity = try map(claims, provider: p)
        } else {
            throw UpstreamError(
                .unsupported,
                "The provider \(p.id) cannot establish who owns an access token: configure whoami_url or introspection_url for it.",
                detail: "only a templated user-details URL for \(p.id)")
        }
        // A templated URL (`…/users/{username}/`) may add details once the subject is known, and only when its
        // answer is about that same subject: a token of one person never reads as another.
        if let template = e.userinfo, Self.isTemplate(template),
            Self.placeholders(template).allSatisfy({ !(parameters[$0] ?? "").isEmpty })
        {
            let details = try map(
                try await userDetails(template, provider: p, accessToken: token, parameters: parameters), provider: p)
            guard details.subject == identity.subject else {
                throw UpstreamError(
                    .rejected, "The token does not belong to the account the parameters name.",
                    detail: "templated user details answered for \(details.subject), the token is \(identity.subject)'s")
            }
            identity = ExternalIdentity(
                subject: identity.subject, username: details.username ?? identity.username,
                email: details.email ?? identity.email,
                emailVerified: details.email != nil ? details.emailVerified : identity.emailVerified,
                name: details.name ?? identity.name, picture: details.picture ?? identity.picture)
        }
        return identity
    }

    /// RFC 7662 at the provider, authenticated as our client there (§2.1; client_secret_basic, RFC 6749
    /// §2.3.1). The token must be active and issued to our client (`client_id`, or `aud` containing it),
    /// unless the provider allows foreign tokens.
    ///
    /// The subject must be the very field sign-in maps as `id` (else one person's upstream username could
    /// equal another's numeric id): when the answer lacks it, the fixed who-am-I URL is asked with the token
    /// just proved ours; without one, the exchange is refused. RFC 7662's `sub` is not a substitute.
    func introspect(_ token: String, at url: String, provider p: ProviderRecord, whoami: String?) async throws
        -> ExternalIdentity
    {
        try checkTransport(url)
        let credentials = FormEncoding.encode(p.clientID) + ":" + FormEncoding.encode(p.clientSecret)
        let response: UpstreamResponse
        do {
            response = try await http.postForm(
                url, form: [("token", token), ("token_type_hint", "access_token")],
                headers: [
                    ("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString()), ("Accept", "application/json"),
                ])
        } catch let e as UpstreamError {
            throw e
        } catch {
            throw UpstreamError(.unavailable, "The provider could not be reached.", detail: "introspection \(url): \(error)")
        }
        guard response.status == 200, let answer = response.json else {
            // 401/403: the provider refused *our* credentials (RFC 7662 §2.1) — a configuration problem.
            let kind: UpstreamError.Kind =
                response.status >= 500 ? .unavailable : [401, 403].contains(response.status) ? .misconfigured : .invalidResponse
            throw UpstreamError(kind, "The provider could not check the token.", detail: "introspection \(url) answered \(response.status)")
        }
        guard answer["active"] as? Bool == true else {
            throw UpstreamError(.rejected, "The provider says the token is not active.", detail: "introspection: inactive")
        }
        let audience: [String] = (answer["aud"] as? [String]) ?? ((answer["aud"] as? String).map { [$0] } ?? [])
        let bound = (answer["client_id"] as? String) == p.clientID || audience.contains(p.clientID)
        guard bound || p.allowForeignTokens else {
            throw UpstreamError(
                .rejected, "The token was not issued to Gatehouse at the provider \(p.id).",
                detail: "introspection client_id \(answer["client_id"] as? String ?? "-") is not \(p.clientID)")
        }
        if let identity = try? map(answer, provider: p) { return identity }
        guard let whoami else {
            throw UpstreamError(
                .unsupported,
                "The provider \(p.id)'s introspection does not say who owns the token (no \(p.claims["id"] ?? "id") field): configure whoami_url for it.",
                detail: "introspection answer without the mapped id field")
        }
        return try map(try await userDetails(whoami, provider: p, accessToken: token, parameters: [:]), provider: p)
    }

    /// The fixed "who am I" URL: configured, or the user-details URL when it is not a template.
    static func whoami(_ p: ProviderRecord, _ e: Endpoints) -> String? {
        p.whoamiURL ?? e.userinfo.flatMap { isTemplate($0) ? nil : $0 }
    }

    /// GitHub's check that a token belongs to our OAuth app (`POST /applications/{client_id}/token`, with the
    /// app's credentials): 200 with the token's `user`, 404 for a token of any other app or none.
    func githubApplicationCheck(_ token: String, provider p: ProviderRecord) async throws -> ExternalIdentity {
        let url = "https://api.github.com/applications/\(FormEncoding.encode(p.clientID))/token"
        let body = (try? JSONSerialization.data(withJSONObject: ["access_token": token])) ?? Data()
        let credentials = p.clientID + ":" + p.clientSecret
        let response: UpstreamResponse
        do {
            response = try await http.postJSON(
                url, body: String(decoding: body, as: UTF8.self),
                headers: [
                    ("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString()),
                    ("Accept", "application/vnd.github+json"), ("Content-Type", "application/json"),
                ])
        } catch let e as UpstreamError {
            throw e
        } catch {
            throw UpstreamError(.unavailable, "GitHub could not be reached.", detail: "\(url): \(error)")
        }
        guard response.status == 200, let user = response.json?["user"] as? [String: Any] else {
            throw UpstreamError(
                response.status >= 500 ? .unavailable : .rejected, "GitHub did not accept the token for this app.",
                detail: "application token check answered \(response.status)")
        }
        return try map(await withGitHubEmail(user, token: token), provider: p)
    }

    /// Whether a URL has `{name}` placeholders.
    static func isTemplate(_ url: String) -> Bool { url.contains("{") }

    /// The placeholder names of a templated URL, in order.
    static func placeholders(_ template: String) -> [String] {
        var names: [String] = []
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            names.append(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return names
    }

    /// Token exchange of an OIDC provider's ID token (RFC 8693 `…:token-type:id_token`): valid only when
    /// issued to our client at that provider (`aud`), which an access token cannot prove.
    public func identity(forIDToken token: String, provider: ProviderRecord) async throws -> ExternalIdentity {
        let p = provider.resolved
        guard p.isOIDC else {
            throw UpstreamError(.rejected, "This provider does not issue ID tokens.", detail: "id_token for a non-OIDC provider")
        }
        let e = try await endpoints(p)
        let claims = try await validateIDToken(token, provider: p, endpoints: e, nonce: nil)
        return try map(claims, provider: p)
    }

    // MARK: steps

    func userDetails(_ template: String, provider: ProviderRecord, accessToken: String, parameters: [String: String])
        async throws -> [String: Any]
    {
        let url = try Self.fill(template, with: parameters)
        try checkTransport(url)
        let response: UpstreamResponse
        do {
            response = try await http.get(url, headers: [("Authorization", "Bearer \(accessToken)"), ("Accept", "application/json")])
        } catch let e as UpstreamError {
            throw e
        } catch {
            throw UpstreamError(.unavailable, "The provider could not be reached.", detail: "\(url): \(error)")
        }
        guard response.status == 200 else {
            // 5xx: the provider is down (retry later), not a verdict on the token.
            throw UpstreamError(
                response.status >= 500 ? .unavailable : .rejected,
                response.status >= 500 ? "The provider could not be reached." : "The provider did not accept the token.",
                detail: "user details \(url) answered \(response.status)")
        }
        guard let json = response.json else {
            throw UpstreamError(.invalidResponse, "The provider's answer could not be read.", detail: "user details not a JSON object")
        }
        return json
    }

    /// `{name}` placeholders from the request; values are percent-encoded (they cannot change the path).
    static func fill(_ template: String, with parameters: [String: String]) throws -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            let name = String(rest[rest.index(after: open)..<close])
            guard let value = parameters[name], !value.isEmpty else {
                throw UpstreamError(.rejected, "The parameter \(name) is required for this provider.", detail: "template parameter \(name) missing")
            }
            // Percent-encoding keeps `/` out; dot segments would still move the path (`..`).
            guard !value.allSatisfy({ $0 == "." }) else {
                throw UpstreamError(.rejected, "The parameter \(name) is not valid.", detail: "template parameter \(name) is a dot segment")
            }
            out += FormEncoding.encode(value)
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    /// GitHub's `/user` and app-check answers carry no email when it is private: add the primary one.
    func withGitHubEmail(_ claims: [String: Any], token: String) async -> [String: Any] {
        guard claims["email"] == nil || claims["email"] is NSNull else { return claims }
        return claims.merging((try? await githubPrimaryEmail(token)) ?? [:]) { a, _ in a }
    }

    func githubPrimaryEmail(_ token: String) async throws -> [String: Any] {
        let response = try await http.get(
            "https://api.github.com/user/emails", headers: [("Authorization", "Bearer \(token)"), ("Accept", "application/json")])
        guard response.status == 200, let list = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [[String: Any]],
            let primary = list.first(where: { $0["primary"] as? Bool == true })
        else { return [:] }
        return ["email": primary["email"] as Any, "email_verified": primary["verified"] as? Bool ?? false]
    }

    struct UpstreamIDToken: JWTPayload {
        var iss: String
        var sub: String
        var aud: Audience
        var exp: Int64
        var iat: Int64?
        var nonce: String?
        var azp: String?
        func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    /// OIDC Core §3.1.3.7: signature with a key from the provider's JWKS (asymmetric only), `iss`, `aud`
    /// (and `azp` with several audiences), `exp`, `nonce`.
    func validateIDToken(_ token: String, provider: ProviderRecord, endpoints e: Endpoints, nonce: String?) async throws
        -> [String: Any]
    {
        let invalid = { (why: String) in UpstreamError(.invalidResponse, "The provider's ID token is not valid.", detail: why) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Base64URL.decode(String(parts[0])),
            let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any],
            let alg = header["alg"] as? String, !alg.uppercased().hasPrefix("HS"), alg.lowercased() != "none",
            header["jku"] == nil, header["jwk"] == nil, header["x5u"] == nil
        else { throw invalid("malformed header or disallowed alg") }
        guard let jwksURL = e.jwks, let issuer = e.issuer else { throw invalid("no jwks_uri") }
        var claims: UpstreamIDToken?
        for refresh in [false, true] {
            let keys = try await keySet(jwksURL, refresh: refresh)
            if let verified = try? await keys.verify(token, as: UpstreamIDToken.self) {
                claims = verified
                break
            }
        }
        guard let claims else { throw invalid("signature does not verify with the provider's JWKS") }
        let now = clock.nowSeconds
        guard claims.iss == issuer else { throw invalid("iss \(claims.iss) is not \(issuer)") }
        guard claims.aud.values.contains(provider.clientID) else { throw invalid("aud does not contain our client id") }
        if claims.aud.values.count > 1, claims.azp != provider.clientID { throw invalid("azp is not our client id") }
        guard claims.exp + 60 > now else { throw invalid("expired") }
        if let nonce {
            guard let n = claims.nonce, Secrets.constantTimeEquals(n, nonce) else { throw invalid("nonce mismatch") }
        }
        guard let payload = Base64URL.decode(String(parts[1])),
            let object = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any]
        else { throw invalid("payload not JSON") }
        return object
    }

    func keySet(_ url: String, refresh: Bool) async throws -> JWTKeyCollection {
        let now = clock.nowSeconds
        if let (keys, at) = keySets.withLock({ $0[url] }) {
            if !refresh, now - at < 3600 { return keys }
            // An unknown key refetches, but at most every 10 s (not one fetch per bad token).
            if refresh, let last = forcedRefreshes.withLock({ $0[url] }), now - last < 10 { return keys }
        }
        if refresh { forcedRefreshes.withLock { $0[url] = now } }
        let response = try await http.get(url, headers: [("Accept", "application/json")])
        guard response.status == 200 else {
            throw UpstreamError(.unavailable, "The provider's keys could not be fetched.", detail: "jwks \(response.status)")
        }
        let keys = JWTKeyCollection()
        do {
            try await keys.add(jwksJSON: String(decoding: response.body, as: UTF8.self))
        } catch {
            throw UpstreamError(.invalidResponse, "The provider's keys could not be read.", detail: "jwks: \(error)")
        }
        keySets.withLock { $0[url] = (keys, now) }
        return keys
    }

    func fetchJSON(_ url: String, what: String) async throws -> [String: Any] {
        try checkTransport(url)
        let response: UpstreamResponse
        do {
            response = try await http.get(url, headers: [("Accept", "application/json")])
        } catch let e as UpstreamError {
            throw e
        } catch {
            throw UpstreamError(.unavailable, "The provider could not be reached.", detail: "\(what) \(url): \(error)")
        }
        guard response.status == 200, let json = response.json else {
            throw UpstreamError(.unavailable, "The provider could not be reached.", detail: "\(what) \(url) answered \(response.status)")
        }
        return json
    }

    func checkTransport(_ url: String) throws {
        do { try ProviderRecord.checkURL(url, option: "URL") } catch {
            throw UpstreamError(.misconfigured, "The provider is not configured correctly.", detail: "\(error)")
        }
    }

    /// The value at a dotted path (`data.user.id`); `nil` for JSON null.
    static func value(at path: String, in claims: [String: Any]) -> Any? {
        var current: Any? = claims
        for part in path.split(separator: ".") { current = (current as? [String: Any])?[String(part)] }
        if current is NSNull { return nil }
        return current
    }

    /// The provider's fields → ours, through the claim mapping (dotted paths reach into objects).
    func map(_ claims: [String: Any], provider: ProviderRecord) throws -> ExternalIdentity {
        func value(_ ours: String) -> Any? {
            guard let path = provider.claims[ours] else { return nil }
            return Self.value(at: path, in: claims)
        }
        func string(_ ours: String) -> String? {
            switch value(ours) {
            case let s as String: return s.isEmpty ? nil : String(s.prefix(500))
            case let n as NSNumber: return n.stringValue
            default: return nil
            }
        }
        // The subject is never cut short (two long ids sharing a prefix would become one person).
        if let raw = value("id") as? String, raw.count > 500 {
            throw UpstreamError(.invalidResponse, "The provider's user id is too long.", detail: "id longer than 500 characters")
        }
        guard let subject = string("id") else {
            throw UpstreamError(.invalidResponse, "The provider did not say who you are.", detail: "no value for claim id (\(provider.claims["id"] ?? "-"))")
        }
        let verified: Bool
        switch value("email_verified") {
        case let b as Bool: verified = b
        case let s as String: verified = s == "true"
        default: verified = false
        }
        return ExternalIdentity(
            subject: subject, username: string("username"), email: string("email"), emailVerified: verified,
            name: string("name"), picture: string("picture"))
    }
}
