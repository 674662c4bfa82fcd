import Foundation

/// A registered OAuth client (RFC 6749 §2).
public struct ClientRecord: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    /// SHA-256 hex of the client secret; `nil` for public clients (RFC 6749 §2.1).
    public var secretHash: String?
    public var redirectURIs: [String]
    public var grantTypes: [String]
    /// Scopes the client may request.
    public var scope: Scope
    /// Scopes granted when a request omits `scope` (RFC 6749 §3.3).
    public var defaultScope: Scope
    /// Resource indicators (RFC 8707) the client may request as audience.
    public var resources: [String]
    public var skipConsent: Bool
    /// Where RP-initiated logout may send the browser afterwards (exact match, same rules as redirect URIs).
    public var postLogoutRedirectURIs: [String]
    /// "One active token per user": issuing a new grant to a user revokes the user's earlier grants for
    /// this client (django-oauth-toolkit's register-by-token policy).
    public var singleGrantPerUser: Bool
    /// Accept the registered redirect URI plus one `redirect_state` query parameter, as python-social-auth's
    /// OAuth2 backends send it (`clients create --legacy-redirect-state`); the code stays bound to the exact
    /// URI requested.
    public var legacyRedirectState: Bool
    /// Clients whose access tokens this client may exchange (RFC 8693) although they are not addressed to
    /// it (`clients create --may-exchange-from`).
    public var mayExchangeFrom: [String]
    public var createdAt: Int64
    public var updatedAt: Int64
    /// After a rotation with a grace period (`POST /admin/v1/clients/{id}/secret?grace=`): the previous
    /// secret's hash, valid until `previousSecretExpiresAt`, so deployments can roll to the new one.
    public var previousSecretHash: String? = nil
    public var previousSecretExpiresAt: Int64? = nil

    public var isPublic: Bool { secretHash == nil }
    public func allows(grantType: String) -> Bool { grantTypes.contains(grantType) }

    public init(
        id: String, name: String, secretHash: String?, redirectURIs: [String], grantTypes: [String],
        scope: Scope, defaultScope: Scope, resources: [String], skipConsent: Bool,
        postLogoutRedirectURIs: [String] = [], singleGrantPerUser: Bool = false, createdAt: Int64, updatedAt: Int64,
        legacyRedirectState: Bool = false, mayExchangeFrom: [String] = []
    ) {
        self.legacyRedirectState = legacyRedirectState
        self.mayExchangeFrom = mayExchangeFrom
        self.singleGrantPerUser = singleGrantPerUser
        self.id = id
        self.name = name
        self.secretHash = secretHash
        self.redirectURIs = redirectURIs
        self.grantTypes = grantTypes
        self.scope = scope
        self.defaultScope = defaultScope
        self.resources = resources
        self.skipConsent = skipConsent
        self.postLogoutRedirectURIs = postLogoutRedirectURIs
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

extension Scope: Codable {
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        self = Scope(parsing: raw) ?? Scope.empty
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// A person who can sign in. `id` is the stable, opaque subject identifier (`sub`).
public struct UserRecord: Sendable, Equatable {
    public var id: String
    public var username: String
    public var email: String?
    public var name: String?
    /// bcrypt hash; `nil` when the user has no password (e.g. signs in through a provider).
    public var passwordHash: String?
    public var createdAt: Int64
    public var updatedAt: Int64
    /// The OIDC standard claims (Core §5.1) beyond `name` and `email`.
    public var profile: UserProfile
    /// When an administrator disabled the account: it cannot sign in, and its tokens are inactive.
    public var disabledAt: Int64? = nil
    /// The user must choose a new password before the next sign-in completes (`require_reset`).
    public var passwordResetRequired = false

    public var isDisabled: Bool { disabledAt != nil }

    public init(
        id: String, username: String, email: String?, name: String?, passwordHash: String?, createdAt: Int64,
        updatedAt: Int64, profile: UserProfile = UserProfile()
    ) {
        self.id = id
        self.username = username
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.profile = profile
    }
}

/// Standard claims of a user (OIDC Core §5.1) that scopes `profile`, `email`, `address` and `phone` release.
public struct UserProfile: Sendable, Equatable, Codable {
    public var givenName: String?
    public var familyName: String?
    public var picture: String?
    public var emailVerified: Bool = false
    public var phoneNumber: String?
    public var phoneNumberVerified: Bool = false
    /// The postal address as one formatted string (OIDC Core §5.1.1 `formatted`).
    public var address: String?
    public init(
        givenName: String? = nil, familyName: String? = nil, picture: String? = nil, emailVerified: Bool = false,
        phoneNumber: String? = nil, phoneNumberVerified: Bool = false, address: String? = nil
    ) {
        self.givenName = givenName
        self.familyName = familyName
        self.picture = picture
        self.emailVerified = emailVerified
        self.phoneNumber = phoneNumber
        self.phoneNumberVerified = phoneNumberVerified
        self.address = address
    }
}

/// A scope the server knows, with the description shown to people.
public struct ScopeRecord: Sendable, Equatable, Codable {
    public var name: String
    public var description: String
    /// Granted to clients that registered it when a request omits `scope`.
    public var isDefault: Bool
    /// When set, the scope is granted only to users holding this role in some group.
    public var requiredRole: String?
    public init(name: String, description: String, isDefault: Bool, requiredRole: String? = nil) {
        self.name = name
        self.description = description
        self.isDefault = isDefault
        self.requiredRole = requiredRole
    }

    /// The admin API's scopes (`/admin/v1`): everything, or GET only.
    public static let admin = "gatehouse:admin"
    public static let adminRead = "gatehouse:admin:read"
    /// Reserved: created by a migration, never registrable through self-service (or dynamic registration),
    /// granted to clients only by the CLI or an administrator, and to users only with a permission of the
    /// service `gatehouse` (`admin`, or `admin:read` for the read scope).
    public static let reservedNames: Set<String> = [admin, adminRead]
    public static let adminService = "gatehouse"

    /// Whether the permissions held in the service `gatehouse` allow the reserved scopes in `scope`.
    public static func permits(_ held: Set<String>, scope: Scope) -> Bool {
        if scope.contains(admin), !held.contains("admin") { return false }
        if scope.contains(adminRead), !held.contains("admin"), !held.contains("admin:read") { return false }
        return true
    }
    public static func permits(_ held: Set<String>, scope name: String) -> Bool { permits(held, scope: Scope([name])) }

    /// Built-in scopes (OpenID Connect's and the admin API's) cannot be deleted.
    public static func isBuiltIn(_ name: String) -> Bool {
        reservedNames.contains(name) || builtIn.contains { $0.name == name }
    }

    /// The OpenID Connect scopes that exist from the start.
    public static let builtIn: [ScopeRecord] = [
        .init(name: "openid", description: "Sign you in with your account", isDefault: false),
        .init(name: "profile", description: "Read your name, username and picture", isDefault: false),
        .init(name: "email", description: "Read your email address", isDefault: false),
        .init(name: "address", description: "Read your postal address", isDefault: false),
        .init(name: "phone", description: "Read your phone number", isDefault: false),
        .init(name: "offline_access", description: "Stay signed in when you are not using the app", isDefault: false),
    ]
}

/// A signing key, stored with its private half (PEM).
public struct SigningKeyRecord: Sendable, Equatable {
    public var kid: String
    public var algorithm: SigningAlgorithm
    /// PKCS#8 / PEM private key; wiped (`nil`) once the key is retired.
    public var privatePEM: String?
    public var createdAt: Int64
    /// When another key took over signing; `nil` while this key signs.
    public var deactivatedAt: Int64?
    /// When the key left the key set for good.
    public var retiredAt: Int64?
    /// When the key starts signing (`nil`: from `createdAt`). A rotated-in key is published first and signs
    /// only from here, so every verifier has fetched it before it meets a token signed with it.
    public var activatesAt: Int64?
    /// When an operator revoked the key (`gatehouse keys revoke`): it left the key set at once.
    public var revokedAt: Int64?

    /// When the key signs from.
    public var activeFrom: Int64 { activatesAt ?? createdAt }

    public init(
        kid: String, algorithm: SigningAlgorithm, privatePEM: String?, createdAt: Int64, deactivatedAt: Int64?,
        retiredAt: Int64?, activatesAt: Int64? = nil, revokedAt: Int64? = nil
    ) {
        self.activatesAt = activatesAt
        self.revokedAt = revokedAt
        self.kid = kid
        self.algorithm = algorithm
        self.privatePEM = privatePEM
        self.createdAt = createdAt
        self.deactivatedAt = deactivatedAt
        self.retiredAt = retiredAt
    }
}

/// An authorization that tokens were issued from: the family a refresh-token chain belongs to.
/// Revoking it revokes every refresh token of the family and every access token carrying its id.
public struct GrantRecord: Sendable, Equatable {
    public var id: String
    public var clientID: String
    public var userID: String?
    public var scope: Scope
    public var createdAt: Int64
    public var revokedAt: Int64?
    /// For grants from a browser sign-in: when the user authenticated (ID token `auth_time`) and the
    /// session's public id (`sid`), so a refresh can issue a fresh ID token.
    public var authTime: Int64?
    public var sessionID: String?
    /// Until when the grant can still produce tokens without a refresh token (lego token-auth's refresh);
    /// it is listed on the account page, and revocable there, until then.
    public var liveUntil: Int64?

    public init(
        id: String, clientID: String, userID: String?, scope: Scope, createdAt: Int64, revokedAt: Int64?,
        authTime: Int64? = nil, sessionID: String? = nil, liveUntil: Int64? = nil
    ) {
        self.liveUntil = liveUntil
        self.id = id
        self.clientID = clientID
        self.userID = userID
        self.scope = scope
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.authTime = authTime
        self.sessionID = sessionID
    }
}

/// An authorization code (RFC 6749 §4.1.2), keyed by the SHA-256 of its value. Everything the token
/// request must match is bound to it.
public struct AuthorizationCodeRecord: Sendable, Equatable {
    public var hash: String
    public var clientID: String
    public var userID: String
    /// The redirect URI the authorization request used (exactly as sent).
    public var redirectURI: String
    public var scope: Scope
    public var resources: [String]
    /// PKCE S256 challenge (RFC 7636 §4.2); `nil` when the request had none.
    public var codeChallenge: String?
    public var nonce: String?
    public var authTime: Int64
    /// The session's public id (ID token `sid`).
    public var sessionID: String?
    /// The grant the code's tokens will belong to: a replayed code revokes it.
    public var grantID: String
    public var issueRefreshToken: Bool
    public var createdAt: Int64
    public var expiresAt: Int64
    public var usedAt: Int64?

    public init(
        hash: String, clientID: String, userID: String, redirectURI: String, scope: Scope,
        resources: [String], codeChallenge: String?, nonce: String?, authTime: Int64, sessionID: String?,
        grantID: String, issueRefreshToken: Bool, createdAt: Int64, expiresAt: Int64, usedAt: Int64? = nil
    ) {
        self.hash = hash
        self.clientID = clientID
        self.userID = userID
        self.redirectURI = redirectURI
        self.scope = scope
        self.resources = resources
        self.codeChallenge = codeChallenge
        self.nonce = nonce
        self.authTime = authTime
        self.sessionID = sessionID
        self.grantID = grantID
        self.issueRefreshToken = issueRefreshToken
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
    }
}

/// A signed-in browser session, keyed by the SHA-256 of the cookie value.
public struct SessionRecord: Sendable, Equatable {
    public var hash: String
    /// Public identifier (ID token `sid`); not a secret.
    public var id: String
    public var userID: String
    /// When the user last authenticated with a password (ID token `auth_time`).
    public var authTime: Int64
    public var createdAt: Int64
    public var expiresAt: Int64

    public init(hash: String, id: String, userID: String, authTime: Int64, createdAt: Int64, expiresAt: Int64) {
        self.hash = hash
        self.id = id
        self.userID = userID
        self.authTime = authTime
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// A remembered consent: the user let the client have these scopes without asking again.
public struct ConsentRecord: Sendable, Equatable {
    public var userID: String
    public var clientID: String
    public var scope: Scope
    public var createdAt: Int64

    public init(userID: String, clientID: String, scope: Scope, createdAt: Int64) {
        self.userID = userID
        self.clientID = clientID
        self.scope = scope
        self.createdAt = createdAt
    }
}

/// A refresh token, keyed by the SHA-256 of its value.
public struct RefreshTokenRecord: Sendable, Equatable {
    public var hash: String
    public var grantID: String
    public var clientID: String
    public var userID: String?
    public var scope: Scope
    public var resources: [String]
    public var issuedAt: Int64
    public var expiresAt: Int64
    /// When the token was exchanged for its successor; `nil` while unused.
    public var usedAt: Int64?
    /// The successor pair, sealed with a key derived from this token's value (so only its holder can
    /// open it): lets a retry inside the grace period receive the same answer.
    public var sealedSuccessor: String?

    public init(
        hash: String, grantID: String, clientID: String, userID: String?, scope: Scope, resources: [String],
        issuedAt: Int64, expiresAt: Int64, usedAt: Int64? = nil, sealedSuccessor: String? = nil
    ) {
        self.hash = hash
        self.grantID = grantID
        self.clientID = clientID
        self.userID = userID
        self.scope = scope
        self.resources = resources
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
        self.sealedSuccessor = sealedSuccessor
    }
}
