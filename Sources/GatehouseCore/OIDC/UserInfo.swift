import Foundation

/// The UserInfo response (OpenID Connect Core §5.3.2): `sub` plus the standard claims the token's scopes
/// release (§5.4). Absent values are omitted, never sent as null.
public struct UserInfoClaims: Sendable, Codable, Equatable {
    public var sub: String
    public var name: String?
    public var given_name: String?
    public var family_name: String?
    public var preferred_username: String?
    public var picture: String?
    public var updated_at: Int64?
    public var email: String?
    public var email_verified: Bool?
    public var address: Address?
    public var phone_number: String?
    public var phone_number_verified: Bool?

    /// OIDC Core §5.1.1 `address` claim.
    public struct Address: Sendable, Codable, Equatable {
        public var formatted: String
    }

    /// Claims for `user` released by `scope` (§5.4).
    public init(user: UserRecord, scope: Scope) {
        sub = user.id
        if scope.contains("profile") {
            name = user.name
            given_name = user.profile.givenName
            family_name = user.profile.familyName
            preferred_username = user.username
            picture = user.profile.picture
            updated_at = user.updatedAt
        }
        if scope.contains("email"), let email = user.email {
            self.email = email
            email_verified = user.profile.emailVerified
        }
        if scope.contains("address"), let formatted = user.profile.address {
            address = Address(formatted: formatted)
        }
        if scope.contains("phone"), let phone = user.profile.phoneNumber {
            phone_number = phone
            phone_number_verified = user.profile.phoneNumberVerified
        }
    }

    /// Every claim this server can release, for discovery's `claims_supported`.
    public static let supported = [
        "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "sid", "name", "given_name",
        "family_name", "preferred_username", "picture", "updated_at", "email", "email_verified", "address",
        "phone_number", "phone_number_verified",
    ]
}

/// An RFC 6750 §3.1 error at a protected resource (UserInfo): answered with `WWW-Authenticate: Bearer`.
public struct BearerError: Error, Sendable, Equatable {
    public let code: String
    public let description: String
    public let status: Int

    public static func invalidToken(_ description: String = "The access token is invalid, expired or revoked.")
        -> BearerError
    { BearerError(code: "invalid_token", description: description, status: 401) }
    public static func insufficientScope(_ description: String) -> BearerError {
        BearerError(code: "insufficient_scope", description: description, status: 403)
    }
    public static func invalidRequest(_ description: String) -> BearerError {
        BearerError(code: "invalid_request", description: description, status: 400)
    }
    /// No credentials at all: §3.1 says the response should carry no error code.
    public static let missing = BearerError(code: "", description: "", status: 401)

    /// The same error as an RFC 6749 §5.2-style body (`error`, `error_description`).
    public var oauthError: OAuthError { OAuthError(code: code, description: description, status: status) }
}

/// UserInfo (Core §5.3): verifies the access token like introspection does (signature, expiry, revocation)
/// and returns the user's claims by the token's scope. Needs scope `openid`.
public struct UserInfoEndpoint: Sendable {
    /// Only what UserInfo uses: revocations and users.
    public typealias Storage = TokenStore & UserStore
    let storage: any Storage
    let verifier: AccessTokenVerifier
    /// The audience a token must carry to be used here (RFC 9700 §4.10: a token meant for another resource
    /// server cannot be replayed to read the profile).
    let audience: String

    public init(storage: any Storage, verifier: AccessTokenVerifier, audience: String) {
        self.storage = storage
        self.verifier = verifier
        self.audience = audience
    }

    public func handle(token: String) async throws -> UserInfoClaims {
        guard let claims = try await verifier.activeClaims(token, revocations: storage) else { throw BearerError.invalidToken() }
        guard claims.aud.values.contains(audience) else {
            throw BearerError.invalidToken("The access token was issued for another audience.")
        }
        let scope = Scope(parsing: claims.scope) ?? .empty
        guard scope.contains("openid") else {
            throw BearerError.insufficientScope("The access token was not issued with scope openid.")
        }
        guard let userID = claims.userID, let user = try await storage.user(id: userID) else {
            throw BearerError.invalidToken("The access token does not belong to a user.")
        }
        return UserInfoClaims(user: user, scope: scope)
    }
}
