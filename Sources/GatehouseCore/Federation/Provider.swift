import Foundation

/// The kinds of upstream identity provider Gatehouse can broker.
public enum ProviderKind: String, Sendable, Codable, CaseIterable {
    /// OpenID Connect: endpoints and keys from the issuer's discovery document; the ID token is validated.
    case oidc
    /// Plain OAuth 2.0: explicit authorize, token and user-details URLs, and a claim mapping.
    case oauth2
    /// Presets that need only a client id and secret.
    case github
    case google
}

/// An upstream identity provider ("Sign in with …").
public struct ProviderRecord: Sendable, Equatable, Codable {
    /// 1–40 of `a-z 0-9 - _`: used in URLs (`/login/{id}/callback`) and as `subject_issuer`.
    public var id: String
    public var kind: ProviderKind
    /// Shown on the login button.
    public var name: String
    public var clientID: String
    /// Needed in clear to call the provider's token endpoint (like the signing keys, protect the database).
    public var clientSecret: String
    /// `oidc`: the issuer whose discovery document is used.
    public var issuer: String?
    public var authorizeURL: String?
    public var tokenURL: String?
    /// The user-details URL; may be a template with `{name}` parameters (filled from the provider's token
    /// response at sign-in; at token exchange only after the subject is known, see `whoamiURL`).
    public var userinfoURL: String?
    /// A fixed URL that says whose a bearer token is (the provider's "current user" endpoint). Defaults to
    /// the user-details URL when it is not a template (GitHub: `/user`; OIDC: UserInfo).
    public var whoamiURL: String?
    /// RFC 7662 introspection at the provider (OIDC: also from discovery). Proves who a token belongs to and
    /// that it was issued to our client there.
    public var introspectionURL: String?
    /// Accept, at token exchange, access tokens the provider cannot prove were issued to our client (a token
    /// any other app at the provider got for the person would then sign them in here): off by default.
    public var allowForeignTokens: Bool
    public var scope: Scope
    /// Our claim → the provider's JSON field (dotted paths allowed: `data.user.id`).
    public var claims: [String: String]
    /// Sign a person into an existing account with the same email, when the provider says it is verified.
    public var linkByEmail: Bool
    public var createdAt: Int64

    public init(
        id: String, kind: ProviderKind, name: String, clientID: String, clientSecret: String, issuer: String? = nil,
        authorizeURL: String? = nil, tokenURL: String? = nil, userinfoURL: String? = nil, scope: Scope = .empty,
        claims: [String: String] = [:], linkByEmail: Bool = false, createdAt: Int64 = 0, whoamiURL: String? = nil,
        introspectionURL: String? = nil, allowForeignTokens: Bool = false
    ) {
        self.whoamiURL = whoamiURL
        self.introspectionURL = introspectionURL
        self.allowForeignTokens = allowForeignTokens
        self.id = id
        self.kind = kind
        self.name = name
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.issuer = issuer
        self.authorizeURL = authorizeURL
        self.tokenURL = tokenURL
        self.userinfoURL = userinfoURL
        self.scope = scope
        self.claims = claims
        self.linkByEmail = linkByEmail
        self.createdAt = createdAt
    }

    /// Our claims, in the order they are mapped.
    public static let claimNames = ["id", "username", "email", "email_verified", "name", "picture"]

    /// The effective settings: presets filled in, defaults for the claim mapping.
    public var resolved: ProviderRecord {
        var p = self
        switch kind {
        case .github:
            p.authorizeURL = p.authorizeURL ?? "https://github.com/login/oauth/authorize"
            p.tokenURL = p.tokenURL ?? "https://github.com/login/oauth/access_token"
            p.userinfoURL = p.userinfoURL ?? "https://api.github.com/user"
            p.whoamiURL = p.whoamiURL ?? "https://api.github.com/user"
            if p.scope.isEmpty { p.scope = Scope(["read:user", "user:email"]) }
            p.claims = [
                "id": "id", "username": "login", "email": "email", "email_verified": "email_verified", "name": "name",
                "picture": "avatar_url",
            ]
                .merging(p.claims) { _, ours in ours }
        case .google:
            p.issuer = p.issuer ?? "https://accounts.google.com"
            if p.scope.isEmpty { p.scope = Scope(["openid", "email", "profile"]) }
            p.claims = Self.oidcClaims.merging(p.claims) { _, ours in ours }
        case .oidc:
            if p.scope.isEmpty { p.scope = Scope(["openid", "email", "profile"]) }
            if !p.scope.contains("openid") { p.scope = Scope(["openid"] + p.scope.tokens) }
            p.claims = Self.oidcClaims.merging(p.claims) { _, ours in ours }
        case .oauth2:
            p.claims = [
                "id": "id", "username": "username", "email": "email", "email_verified": "email_verified", "name": "name",
                "picture": "picture",
            ].merging(p.claims) { _, ours in ours }
        }
        return p
    }

    static let oidcClaims = [
        "id": "sub", "username": "preferred_username", "email": "email", "email_verified": "email_verified",
        "name": "name", "picture": "picture",
    ]

    /// Uses OpenID Connect (discovery, ID token) rather than plain OAuth 2.0.
    public var isOIDC: Bool { kind == .oidc || kind == .google }

    /// Checks a new provider; the message names the option that is wrong.
    public func validate() throws {
        typealias V = Administration.ValidationError
        guard (1...40).contains(id.count), id.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
        else { throw V("--id must be 1 to 40 of a-z, 0-9, - and _") }
        // `/login/password` is the page where a user chooses a password an administrator asked them to change.
        guard id != "password" else { throw V("--id cannot be 'password' (the sign-in pages use that path)") }
        guard !name.isEmpty, name.count <= 100 else { throw V("--name must be 1 to 100 characters") }
        guard !clientID.isEmpty, clientID.utf8.count <= 500 else { throw V("--client-id is required") }
        guard !clientSecret.isEmpty, clientSecret.utf8.count <= 2000 else { throw V("the client secret is required (--client-secret-stdin)") }
        let r = resolved
        switch kind {
        case .oidc:
            guard let issuer = r.issuer else { throw V("--kind oidc needs --issuer") }
            try Self.checkURL(issuer, option: "--issuer")
        case .oauth2:
            guard let a = r.authorizeURL, let t = r.tokenURL, let u = r.userinfoURL else {
                throw V("--kind oauth2 needs --authorize-url, --token-url and --userinfo-url")
            }
            try Self.checkURL(a, option: "--authorize-url")
            try Self.checkURL(t, option: "--token-url")
            try Self.checkURL(u.replacingOccurrences(of: "{", with: "").replacingOccurrences(of: "}", with: ""), option: "--userinfo-url")
        case .github, .google:
            break
        }
        // Whatever URL is set, for any kind, must be https (or loopback http).
        for (url, option) in [(authorizeURL, "--authorize-url"), (tokenURL, "--token-url"), (issuer, "--issuer")] {
            if let url { try Self.checkURL(url, option: option) }
        }
        if let u = userinfoURL {
            try Self.checkURL(u.replacingOccurrences(of: "{", with: "").replacingOccurrences(of: "}", with: ""), option: "--userinfo-url")
        }
        if let u = whoamiURL {
            guard !u.contains("{"), !u.contains("}") else {
                throw V("--whoami-url must be a fixed URL (no {placeholders}): it alone says whose a token is")
            }
            try Self.checkURL(u, option: "--whoami-url")
        }
        if let u = introspectionURL { try Self.checkURL(u, option: "--introspection-url") }
        for (ours, theirs) in claims {
            guard Self.claimNames.contains(ours) else {
                throw V("--claim \(ours)=\(theirs): our claim must be one of \(Self.claimNames.joined(separator: ", "))")
            }
            guard !theirs.isEmpty, theirs.count <= 200 else { throw V("--claim \(ours)= needs the provider's field name") }
        }
    }

    /// What an operator should know about token exchange with this provider, when it is limited: `nil` when
    /// its access tokens are checked by introspection (so bound to our client), or for OIDC (ID tokens are
    /// bound by `aud`; access tokens need an introspection endpoint in the discovery document).
    public var exchangeNote: String? {
        let r = resolved
        if r.kind == .github || r.introspectionURL != nil { return nil }
        if r.isOIDC {
            return r.allowForeignTokens
                ? nil
                : "provider \(id): token exchange accepts its ID tokens; its access tokens only if its discovery document lists an introspection_endpoint (or with --allow-foreign-tokens)"
        }
        let whoami = r.whoamiURL ?? r.userinfoURL.flatMap { $0.contains("{") ? nil : $0 }
        guard whoami != nil else {
            return "provider \(id) cannot establish who owns an access token (its user-details URL is a template): token exchange and register-by-token are refused for it; set --whoami-url or --introspection-url"
        }
        return r.allowForeignTokens
            ? nil
            : "provider \(id) cannot show that an access token was issued to Gatehouse: token exchange and register-by-token refuse its access tokens; set --introspection-url, or --allow-foreign-tokens (a risk: a token any app got for a person signs them in here)"
    }

    /// https, or http on a loopback address (development and tests).
    public static func checkURL(_ url: String, option: String) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), let host = c.host, !host.isEmpty
        else { throw Administration.ValidationError("\(option) is not an absolute URL") }
        // Never echo credentials: the URL is quoted only without its userinfo.
        guard c.user == nil, c.password == nil else {
            throw Administration.ValidationError("\(option) must not contain credentials (user:password@); use a secret setting")
        }
        guard c.fragment == nil else { throw Administration.ValidationError("\(option) must not have a fragment: \(url)") }
        guard scheme == "https" || (scheme == "http" && RedirectURI.isLoopback(host)) else {
            throw Administration.ValidationError("\(option) must use https (http only on loopback): \(url)")
        }
    }
}

/// A person as an upstream provider describes them, after the claim mapping.
public struct ExternalIdentity: Sendable, Equatable {
    /// The provider's stable id for the person (`sub`, GitHub's numeric `id`, …).
    public var subject: String
    public var username: String?
    public var email: String?
    public var emailVerified: Bool
    public var name: String?
    public var picture: String?

    public init(subject: String, username: String?, email: String?, emailVerified: Bool, name: String?, picture: String?) {
        self.subject = subject
        self.username = username
        self.email = email
        self.emailVerified = emailVerified
        self.name = name
        self.picture = picture
    }
}

/// A link between a user and an account at an upstream provider.
public struct IdentityRecord: Sendable, Equatable {
    public var providerID: String
    public var subject: String
    public var userID: String
    public var username: String?
    public var email: String?
    public var createdAt: Int64
    public init(providerID: String, subject: String, userID: String, username: String?, email: String?, createdAt: Int64) {
        self.providerID = providerID
        self.subject = subject
        self.userID = userID
        self.username = username
        self.email = email
        self.createdAt = createdAt
    }
}

/// A sign-in in progress at an upstream provider, keyed by the SHA-256 of its `state`.
public struct UpstreamFlowRecord: Sendable, Equatable {
    public var stateHash: String
    public var providerID: String
    /// SHA-256 of the browser-binding cookie: the callback must come from the browser that started it.
    public var browserHash: String
    public var codeVerifier: String
    public var nonce: String
    /// Where to go after sign-in (our authorization endpoint or the account page).
    public var returnTo: String
    /// Set when a signed-in user is linking another account.
    public var linkUserID: String?
    public var expiresAt: Int64
    /// The client address that started it (pending flows are bounded per address).
    public var addressKey: String?
    public init(
        stateHash: String, providerID: String, browserHash: String, codeVerifier: String, nonce: String,
        returnTo: String, linkUserID: String?, expiresAt: Int64, addressKey: String? = nil
    ) {
        self.addressKey = addressKey
        self.stateHash = stateHash
        self.providerID = providerID
        self.browserHash = browserHash
        self.codeVerifier = codeVerifier
        self.nonce = nonce
        self.returnTo = returnTo
        self.linkUserID = linkUserID
        self.expiresAt = expiresAt
    }
}

/// A lifecycle event waiting in the outbox for delivery to one webhook.
public struct OutboxRecord: Sendable, Equatable {
    public var id: String
    public var event: String
    public var url: String
    /// The JSON body, exactly as it will be signed and sent.
    public var payload: String
    public var attempts: Int
    public var nextAttemptAt: Int64
    public var createdAt: Int64
    public var deliveredAt: Int64?
    public var failedAt: Int64?
    public var lastError: String?
    /// The W3C trace context (`traceparent`, `tracestate`) of the request that raised the event, when it was
    /// traced: the delivery joins that trace and sends `traceparent` on to the hook.
    public var traceContext: String?
    public init(
        id: String, event: String, url: String, payload: String, attempts: Int = 0, nextAttemptAt: Int64,
        createdAt: Int64, deliveredAt: Int64? = nil, failedAt: Int64? = nil, lastError: String? = nil,
        traceContext: String? = nil
    ) {
        self.id = id
        self.event = event
        self.url = url
        self.payload = payload
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.createdAt = createdAt
        self.deliveredAt = deliveredAt
        self.failedAt = failedAt
        self.lastError = lastError
        self.traceContext = traceContext
    }
}

/// Storage for federation: providers, linked identities, upstream flows in progress, and the webhook outbox.
public protocol FederationStore: Sendable {
    /// Throws `StorageError.duplicate` when the id exists.
    func insertProvider(_ provider: ProviderRecord) async throws
    func listProviders() async throws -> [ProviderRecord]
    func deleteProvider(id: String) async throws -> Bool

    func identity(providerID: String, subject: String) async throws -> IdentityRecord?
    func identities(userID: String) async throws -> [IdentityRecord]
    /// Throws `StorageError.duplicate` when the provider account is already linked.
    func insertIdentity(_ identity: IdentityRecord) async throws
    /// Creates a user and links the identity in one transaction: both or neither. Throws
    /// `StorageError.duplicate("user …")` when the username is taken and `StorageError.duplicate("identity …")`
    /// when the provider account got linked meanwhile (a concurrent first sign-in).
    func insertUser(_ user: UserRecord, linking identity: IdentityRecord) async throws
    /// Unlinks, but never the user's last way to sign in (no password and no other identity): then `false`.
    func deleteIdentity(providerID: String, subject: String, userID: String) async throws -> Bool
    /// Case-insensitive; `nil` when no user or more than one user has the address.
    func user(email: String) async throws -> UserRecord?

}
