import Foundation

// What administration shows of each resource: the admin API's JSON bodies and the CLI's `--json` output are
// these, field for field (snake_case, as docs/admin-openapi.json describes them). Secrets and hashes never
// appear; a new client secret only in `ClientView.client_secret` of the answer that created it.

enum PageKeys: String, CodingKey { case items, next_cursor }

/// A page of a list: `next_cursor` is `null` on the last page.
public struct PageView<Item: Encodable & Sendable>: Encodable, Sendable {
    public var items: [Item]
    public var next_cursor: String?
    public init(items: [Item], next_cursor: String?) {
        self.items = items
        self.next_cursor = next_cursor
    }

    /// Encodes `next_cursor` as `null` rather than leaving it out.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: PageKeys.self)
        try c.encode(items, forKey: .items)
        try c.encode(next_cursor, forKey: .next_cursor)
    }
}

public struct UserView: Codable, Sendable, Equatable {
    public var id: String
    public var username: String
    public var email: String?
    public var email_verified: Bool
    public var name: String?
    public var given_name: String?
    public var family_name: String?
    public var picture: String?
    public var phone_number: String?
    public var phone_number_verified: Bool
    public var address: String?
    public var disabled: Bool
    public var disabled_at: Int64?
    public var has_password: Bool
    public var password_reset_required: Bool
    public var created_at: Int64
    public var updated_at: Int64

    public init(_ u: UserRecord) {
        id = u.id
        username = u.username
        email = u.email
        email_verified = u.profile.emailVerified
        name = u.name
        given_name = u.profile.givenName
        family_name = u.profile.familyName
        picture = u.profile.picture
        phone_number = u.profile.phoneNumber
        phone_number_verified = u.profile.phoneNumberVerified
        address = u.profile.address
        disabled = u.isDisabled
        disabled_at = u.disabledAt
        has_password = u.passwordHash != nil
        password_reset_required = u.passwordResetRequired
        created_at = u.createdAt
        updated_at = u.updatedAt
    }

    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey {
            case id, username, email, email_verified, name, given_name, family_name, picture, phone_number
            case phone_number_verified, address, disabled, disabled_at, has_password, password_reset_required
            case created_at, updated_at
        }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(id, forKey: .id)
        try c.encode(username, forKey: .username)
        try c.encode(email, forKey: .email)
        try c.encode(email_verified, forKey: .email_verified)
        try c.encode(name, forKey: .name)
        try c.encode(given_name, forKey: .given_name)
        try c.encode(family_name, forKey: .family_name)
        try c.encode(picture, forKey: .picture)
        try c.encode(phone_number, forKey: .phone_number)
        try c.encode(phone_number_verified, forKey: .phone_number_verified)
        try c.encode(address, forKey: .address)
        try c.encode(disabled, forKey: .disabled)
        try c.encode(disabled_at, forKey: .disabled_at)
        try c.encode(has_password, forKey: .has_password)
        try c.encode(password_reset_required, forKey: .password_reset_required)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(updated_at, forKey: .updated_at)
    }
}

public struct ClientView: Encodable, Sendable {
    public var client_id: String
    /// Only in the answer that created the client or rotated its secret.
    public var client_secret: String?
    public var name: String
    public var `public`: Bool
    public var token_endpoint_auth_method: String
    public var grant_types: [String]
    public var redirect_uris: [String]
    public var post_logout_redirect_uris: [String]
    public var scope: String
    public var default_scope: String
    public var resources: [String]
    public var skip_consent: Bool
    public var single_grant_per_user: Bool
    public var legacy_redirect_state: Bool
    public var may_exchange_from: [String]
    /// Until when the previous secret still works (after a rotation with `grace`).
    public var previous_secret_expires_at: Int64?
    public var created_at: Int64
    public var updated_at: Int64

    public init(_ c: ClientRecord, secret: String? = nil, now: Int64) {
        client_id = c.id
        client_secret = secret
        name = c.name
        `public` = c.isPublic
        token_endpoint_auth_method = c.isPublic ? "none" : "client_secret_basic"
        grant_types = c.grantTypes
        redirect_uris = c.redirectURIs
        post_logout_redirect_uris = c.postLogoutRedirectURIs
        scope = c.scope.description
        default_scope = c.defaultScope.description
        resources = c.resources
        skip_consent = c.skipConsent
        single_grant_per_user = c.singleGrantPerUser
        legacy_redirect_state = c.legacyRedirectState
        may_exchange_from = c.mayExchangeFrom
        previous_secret_expires_at = c.previousSecretHash != nil ? c.previousSecretExpiresAt.flatMap { $0 > now ? $0 : nil } : nil
        created_at = c.createdAt
        updated_at = c.updatedAt
    }

    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey {
            case client_id, client_secret, name, `public`, token_endpoint_auth_method, grant_types, redirect_uris
            case post_logout_redirect_uris, scope, default_scope, resources, skip_consent, single_grant_per_user
            case legacy_redirect_state, may_exchange_from, previous_secret_expires_at, created_at, updated_at
        }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(client_id, forKey: .client_id)
        if let client_secret { try c.encode(client_secret, forKey: .client_secret) }
        try c.encode(name, forKey: .name)
        try c.encode(`public`, forKey: .public)
        try c.encode(token_endpoint_auth_method, forKey: .token_endpoint_auth_method)
        try c.encode(grant_types, forKey: .grant_types)
        try c.encode(redirect_uris, forKey: .redirect_uris)
        try c.encode(post_logout_redirect_uris, forKey: .post_logout_redirect_uris)
        try c.encode(scope, forKey: .scope)
        try c.encode(default_scope, forKey: .default_scope)
        try c.encode(resources, forKey: .resources)
        try c.encode(skip_consent, forKey: .skip_consent)
        try c.encode(single_grant_per_user, forKey: .single_grant_per_user)
        try c.encode(legacy_redirect_state, forKey: .legacy_redirect_state)
        try c.encode(may_exchange_from, forKey: .may_exchange_from)
        try c.encode(previous_secret_expires_at, forKey: .previous_secret_expires_at)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(updated_at, forKey: .updated_at)
    }
}

public struct ScopeView: Encodable, Sendable {
    public var name: String
    public var description: String
    public var `default`: Bool
    public var required_role: String?
    public var built_in: Bool
    public init(_ s: ScopeRecord) {
        name = s.name
        description = s.description
        `default` = s.isDefault
        required_role = s.requiredRole
        built_in = ScopeRecord.isBuiltIn(s.name)
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case name, description, `default`, required_role, built_in }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(name, forKey: .name)
        try c.encode(description, forKey: .description)
        try c.encode(`default`, forKey: .default)
        try c.encode(required_role, forKey: .required_role)
        try c.encode(built_in, forKey: .built_in)
    }
}

public struct GroupView: Encodable, Sendable {
    public var name: String
    public var members: Int
    public var created_at: Int64
    public init(_ g: GroupRecord, members: Int) {
        name = g.name
        self.members = members
        created_at = g.createdAt
    }
}

public struct MemberView: Encodable, Sendable {
    public var group: String
    public var user_id: String
    public var username: String
    public var role: String
    public init(group: String, user_id: String, username: String, role: String) {
        self.group = group
        self.user_id = user_id
        self.username = username
        self.role = role
    }
}

public struct ServiceView: Encodable, Sendable {
    public var name: String
    public var permissions_url: String?
    public var created_at: Int64
    public init(_ s: ServiceRecord) {
        name = s.name
        permissions_url = s.permissionsURL.map(Redaction.url)
        created_at = s.createdAt
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case name, permissions_url, created_at }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(name, forKey: .name)
        try c.encode(permissions_url, forKey: .permissions_url)
        try c.encode(created_at, forKey: .created_at)
    }
}

public struct ServiceGrantView: Encodable, Sendable {
    public var service: String
    public var user_id: String
    public var username: String
    public var permissions: [String]
    public init(service: String, user_id: String, username: String, permissions: [String]) {
        self.service = service
        self.user_id = user_id
        self.username = username
        self.permissions = permissions
    }
}

public struct SessionView: Encodable, Sendable {
    /// The session's public id (ID token `sid`), not its cookie.
    public var id: String
    public var user_id: String
    public var auth_time: Int64
    public var created_at: Int64
    public var expires_at: Int64
    public init(_ s: SessionRecord) {
        id = s.id
        user_id = s.userID
        auth_time = s.authTime
        created_at = s.createdAt
        expires_at = s.expiresAt
    }
}

public struct GrantView: Encodable, Sendable {
    public var id: String
    public var client_id: String
    public var user_id: String?
    public var scope: String
    public var created_at: Int64
    public var revoked_at: Int64?
    public init(_ g: GrantRecord) {
        id = g.id
        client_id = g.clientID
        user_id = g.userID
        scope = g.scope.description
        created_at = g.createdAt
        revoked_at = g.revokedAt
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case id, client_id, user_id, scope, created_at, revoked_at }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(id, forKey: .id)
        try c.encode(client_id, forKey: .client_id)
        try c.encode(user_id, forKey: .user_id)
        try c.encode(scope, forKey: .scope)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(revoked_at, forKey: .revoked_at)
    }
}

public struct IdentityView: Encodable, Sendable {
    public var provider: String
    public var subject: String
    public var user_id: String
    public var username: String?
    public var email: String?
    public var created_at: Int64
    public init(_ i: IdentityRecord) {
        provider = i.providerID
        subject = i.subject
        user_id = i.userID
        username = i.username
        email = i.email
        created_at = i.createdAt
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case provider, subject, user_id, username, email, created_at }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(provider, forKey: .provider)
        try c.encode(subject, forKey: .subject)
        try c.encode(user_id, forKey: .user_id)
        try c.encode(username, forKey: .username)
        try c.encode(email, forKey: .email)
        try c.encode(created_at, forKey: .created_at)
    }
}

public struct ProviderView: Encodable, Sendable {
    public var id: String
    public var kind: String
    public var name: String
    public var client_id: String
    public var issuer: String?
    public var scope: String
    public var link_by_email: Bool
    /// `config` (the config file's, read-only here) or `database`.
    public var source: String
    public init(
        id: String, kind: String, name: String, client_id: String, issuer: String?, scope: String, link_by_email: Bool,
        source: String
    ) {
        self.id = id
        self.kind = kind
        self.name = name
        self.client_id = client_id
        self.issuer = issuer
        self.scope = scope
        self.link_by_email = link_by_email
        self.source = source
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case id, kind, name, client_id, issuer, scope, link_by_email, source }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(id, forKey: .id)
        try c.encode(kind, forKey: .kind)
        try c.encode(name, forKey: .name)
        try c.encode(client_id, forKey: .client_id)
        try c.encode(issuer, forKey: .issuer)
        try c.encode(scope, forKey: .scope)
        try c.encode(link_by_email, forKey: .link_by_email)
        try c.encode(source, forKey: .source)
    }
}

public struct KeyView: Encodable, Sendable {
    public var kid: String
    public var algorithm: String
    /// `signing`, `pending`, `published`, `expiring`, `retired` or `revoked`.
    public var status: String
    public var created_at: Int64
    public var activates_at: Int64
    public var deactivated_at: Int64?
    public var retired_at: Int64?
    public var revoked_at: Int64?
    public init(
        kid: String, algorithm: String, status: String, created_at: Int64, activates_at: Int64, deactivated_at: Int64?,
        retired_at: Int64?, revoked_at: Int64?
    ) {
        self.kid = kid
        self.algorithm = algorithm
        self.status = status
        self.created_at = created_at
        self.activates_at = activates_at
        self.deactivated_at = deactivated_at
        self.retired_at = retired_at
        self.revoked_at = revoked_at
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case kid, algorithm, status, created_at, activates_at, deactivated_at, retired_at, revoked_at }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(kid, forKey: .kid)
        try c.encode(algorithm, forKey: .algorithm)
        try c.encode(status, forKey: .status)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(activates_at, forKey: .activates_at)
        try c.encode(deactivated_at, forKey: .deactivated_at)
        try c.encode(retired_at, forKey: .retired_at)
        try c.encode(revoked_at, forKey: .revoked_at)
    }
}

public struct EventView: Encodable, Sendable {
    public var id: String
    public var event: String
    public var url: String
    /// `pending`, `delivered` or `failed`.
    public var status: String
    public var attempts: Int
    public var next_attempt_at: Int64?
    public var created_at: Int64
    public var delivered_at: Int64?
    public var failed_at: Int64?
    public var last_error: String?
    public init(_ r: OutboxRecord) {
        id = r.id
        event = r.event
        // Only the hook's origin: chat services put the hook's token in the path.
        url = Redaction.origin(r.url)
        status = r.deliveredAt != nil ? "delivered" : r.failedAt != nil ? "failed" : "pending"
        attempts = r.attempts
        next_attempt_at = status == "pending" ? r.nextAttemptAt : nil
        created_at = r.createdAt
        delivered_at = r.deliveredAt
        failed_at = r.failedAt
        last_error = r.lastError.map { $0.replacingOccurrences(of: r.url, with: url) }
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey {
            case id, event, url, status, attempts, next_attempt_at, created_at, delivered_at, failed_at, last_error
        }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(id, forKey: .id)
        try c.encode(event, forKey: .event)
        try c.encode(url, forKey: .url)
        try c.encode(status, forKey: .status)
        try c.encode(attempts, forKey: .attempts)
        try c.encode(next_attempt_at, forKey: .next_attempt_at)
        try c.encode(created_at, forKey: .created_at)
        try c.encode(delivered_at, forKey: .delivered_at)
        try c.encode(failed_at, forKey: .failed_at)
        try c.encode(last_error, forKey: .last_error)
    }
}

public struct AuditEventView: Encodable, Sendable {
    public var id: String
    public var time: Int64
    public var actor: String
    public var action: String
    public var target: String?
    public var client_address: String?
    public var request_id: String?
    public var detail: [String: String]
    public init(_ e: AuditEventRecord) {
        id = e.id
        time = e.createdAt
        actor = e.actor
        action = e.action
        target = e.target
        client_address = e.clientAddress
        request_id = e.requestID
        detail = e.detail
    }
    public func encode(to encoder: any Encoder) throws {
        enum K: String, CodingKey { case id, time, actor, action, target, client_address, request_id, detail }
        var c = encoder.container(keyedBy: K.self)
        try c.encode(id, forKey: .id)
        try c.encode(time, forKey: .time)
        try c.encode(actor, forKey: .actor)
        try c.encode(action, forKey: .action)
        try c.encode(target, forKey: .target)
        try c.encode(client_address, forKey: .client_address)
        try c.encode(request_id, forKey: .request_id)
        try c.encode(detail, forKey: .detail)
    }
}
