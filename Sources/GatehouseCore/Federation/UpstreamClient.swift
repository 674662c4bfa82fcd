import Foundation
import JWTKit
import Synchronization

/// How federation talks HTTP to providers (a protocol: the core has no HTTP client; the server gives it one).
public protocol UpstreamHTTP: Sendable {
    func get(_ url: String, headers: [(String, String)]) async throws -> UpstreamResponse
    func postForm(_ url: String, form: [(String, String)], headers: [(String, String)]) async throws -> UpstreamResponse
}

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
    public enum Kind: Sendable { case unavailable, rejected, invalidResponse, misconfigured }
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

    public struct Endpoints: Sendable {
        public var authorize: String
        public var token: String
        public var userinfo: String?
        public var jwks: String?
        public var issuer: String?
    }

    public func endpoints(_ provider: ProviderRecord) async throws -> Endpoints {
        let p = provider.resolved
        guard p.isOIDC, let issuer = p.issuer else {
            guard let a = p.authorizeURL, let t = p.tokenURL else {
                throw UpstreamError(.misconfigured, "The provider is not configured correctly.", detail: "missing URLs")
            }
            return Endpoints(authorize: a, token: t, userinfo: p.userinfoURL, jwks: nil, issuer: nil)
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
        for url in [a, t, jwks] { try checkTransport(url) }
        let endpoints = Endpoints(
            authorize: a, token: t, userinfo: p.userinfoURL ?? doc["userinfo_endpoint"] as? String, jwks: jwks, issuer: issuer)
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

    /// Validates an access token issued by the provider by calling its user-details endpoint (RFC 8693
    /// token exchange). `parameters` fill a templated URL (`…/users/{username}/`).
    public func identity(forAccessToken token: String, provider: ProviderRecord, parameters: [String: String]) async throws
        -> ExternalIdentity
    {
        let p = provider.resolved
        let e = try await endpoints(p)
        guard let userinfo = e.userinfo else {
            throw UpstreamError(.misconfigured, "The provider has no user-details endpoint.", detail: "no userinfo URL")
        }
        var claims = try await userDetails(userinfo, provider: p, accessToken: token, parameters: parameters)
        if p.kind == .github, claims["email"] == nil || claims["email"] is NSNull {
            claims.merge((try? await githubPrimaryEmail(token)) ?? [:]) { a, _ in a }
        }
        let identity = try map(claims, provider: p)
        // A templated URL names whose details to fetch (`…/users/{username}/`). The answer must be about that
        // very person, or a token of one person could be exchanged as another whenever the provider lets any
        // token read any profile.
        let named: [String: String?] = ["username": identity.username, "email": identity.email, "id": identity.subject]
        for (name, value) in parameters where userinfo.contains("{\(name)}") {
            guard let mapped = named[name], let mapped, mapped.lowercased() == value.lowercased() else {
                throw UpstreamError(
                    .rejected, "The token does not belong to \(name) \(value).",
                    detail: "template parameter \(name)=\(value) but the provider answered for someone else")
            }
        }
        return identity
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
            throw UpstreamError(.rejected, "The provider did not accept the token.", detail: "user details \(url) answered \(response.status)")
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

    /// The provider's fields → ours, through the claim mapping (dotted paths reach into objects).
    func map(_ claims: [String: Any], provider: ProviderRecord) throws -> ExternalIdentity {
        func value(_ ours: String) -> Any? {
            guard let path = provider.claims[ours] else { return nil }
            var current: Any? = claims
            for part in path.split(separator: ".") { current = (current as? [String: Any])?[String(part)] }
            if current is NSNull { return nil }
            return current
        }
        func string(_ ours: String) -> String? {
            switch value(ours) {
            case let s as String: return s.isEmpty ? nil : String(s.prefix(500))
            case let n as NSNumber: return n.stringValue
            default: return nil
            }
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
