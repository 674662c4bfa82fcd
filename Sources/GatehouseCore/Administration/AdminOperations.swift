import Foundation

/// What an administrative operation can refuse, beyond invalid input (`Administration.ValidationError`).
public enum AdminError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No such resource (404).
    case notFound(String)
    /// The change conflicts with what is stored (409): a duplicate name, a scope in use, a built-in.
    case conflict(String)

    public var description: String {
        switch self {
        case .notFound(let m), .conflict(let m): return m
        }
    }
}

/// Opaque list cursors: base64url of the last item's sort key.
public enum AdminCursor {
    public static func encode(_ key: String) -> String { Base64URL.encode(Array(key.utf8)) }
    public static func decode(_ cursor: String?) throws -> String? {
        guard let cursor else { return nil }
        guard cursor.utf8.count <= 1024, let bytes = Base64URL.decode(cursor), let key = String(bytes: bytes, encoding: .utf8),
            !key.unicodeScalars.contains(where: { $0.value < 0x20 })
        else { throw Administration.ValidationError("the cursor is not one this server gave out", field: "cursor") }
        return key
    }

    /// One page of an in-memory list sorted by `key`: items after the cursor, and the next cursor.
    static func page<T>(_ all: [T], key: (T) -> String, after cursor: String?, limit: Int) throws -> ([T], String?) {
        let after = try decode(cursor)
        let rest = after.map { a in all.filter { key($0) > a } } ?? all
        let items = Array(rest.prefix(limit))
        return (items, rest.count > limit ? items.last.map { encode(key($0)) } : nil)
    }
}

/// The fields `PATCH /users/{id}` may change; `nil` leaves a field as it is, `.some(nil)` clears it.
public struct UserPatch: Sendable {
    public var username: String?
    public var email: String??
    public var name: String??
    public var givenName: String??
    public var familyName: String??
    public var picture: String??
    public var phoneNumber: String??
    public var address: String??
    public var emailVerified: Bool?
    public var phoneNumberVerified: Bool?
    public init() {}
}

/// The fields `PATCH /clients/{id}` and `clients update` may change (`nil`: unchanged).
public struct ClientPatch: Sendable {
    public var name: String?
    public var redirectURIs: [String]?
    public var postLogoutRedirectURIs: [String]?
    public var grantTypes: [String]?
    public var scope: String?
    public var defaultScope: String?
    public var resources: [String]?
    public var skipConsent: Bool?
    public var singleGrantPerUser: Bool?
    public var legacyRedirectState: Bool?
    public var mayExchangeFrom: [String]?
    public init() {}
}

extension Administration {
    /// The console's refusals (403 pages): no admin permission; `admin:read` trying to change something.
    public static let consoleNotAllowed = Refusal(
        OAuthError(code: "access_denied", description: "Your account may not use the administration console.", status: 403),
        heading: "Not allowed", log: "no gatehouse admin permission")
    public static let consoleReadOnly = Refusal(
        OAuthError(
            code: "access_denied",
            description: "Your account may look at the administration console but not change anything.", status: 403),
        heading: "Not allowed", log: "admin:read may not change anything")

    public var now: Int64 { clock.nowSeconds }

    private func record(_ action: String, target: String?, _ detail: [String: String] = [:]) async throws {
        try await audit.record(action, actor: actor, target: target, detail: detail)
    }

    // MARK: users

    public func listUsers(_ query: UserQuery, cursor: String?) async throws -> PageView<UserView> {
        guard (1...200).contains(query.limit) else { throw ValidationError("limit must be 1 to 200", field: "limit") }
        if let prefix = query.prefix, prefix.count > 200 { throw ValidationError("query must be at most 200 characters", field: "query") }
        var q = query
        q.after = try AdminCursor.decode(cursor)
        q.limit = query.limit + 1
        let users = try await storage.listUsers(q)
        let items = Array(users.prefix(query.limit))
        let next = users.count > query.limit ? items.last.map { AdminCursor.encode($0.username.lowercased()) } : nil
        return PageView(items: items.map(UserView.init), next_cursor: next)
    }

    public func user(id: String) async throws -> UserRecord {
        guard let user = try await storage.user(id: id) else { throw AdminError.notFound("no user '\(id)'") }
        return user
    }

    /// `gatehouse users create` and `POST /admin/v1/users`. `passwordHash` imports an existing bcrypt hash.
    public func createUser(
        username: String, email: String?, name: String?, password: String?, passwordHash: String? = nil,
        profile: UserProfile = UserProfile()
    ) async throws -> UserRecord {
        if password != nil, passwordHash != nil {
            throw ValidationError("give password or password_hash, not both", field: "password_hash")
        }
        if let passwordHash, !PasswordHasher.isBcryptHash(passwordHash) {
            throw ValidationError("password_hash must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 16)", field: "password_hash")
        }
        let user = try await insertUser(
            username: username, email: email, name: name, password: password,
            passwordHash: passwordHash.map(PasswordHasher.normalizedBcryptHash), profile: profile)
        // The lifecycle event as well (hooks that want `user.created`), however the user was made.
        try? await audit.events.emit(
            Events.userCreated, ["user_id": user.id, "username": user.username, "provider": actor == .cli ? "cli" : "admin"])
        return user
    }

    public func updateUser(id: String, _ patch: UserPatch) async throws -> UserRecord {
        var user = try await self.user(id: id)
        if let username = patch.username {
            let trimmed = username.trimmingCharacters(in: .whitespacesAndNewlines)
            guard Self.isValidUsername(trimmed) else {
                throw ValidationError("the username must be 1 to 150 letters, digits or . _ - @ +", field: "username")
            }
            user.username = trimmed
        }
        if let email = patch.email {
            if let email { try Self.checkEmail(email) }
            if email?.lowercased() != user.email?.lowercased() { user.profile.emailVerified = false }
            user.email = email
        }
        if let name = patch.name { user.name = try Self.checkText(name, field: "name") }
        if let v = patch.givenName { user.profile.givenName = try Self.checkText(v, field: "given_name") }
        if let v = patch.familyName { user.profile.familyName = try Self.checkText(v, field: "family_name") }
        if let v = patch.address { user.profile.address = try Self.checkText(v, field: "address", limit: 500) }
        if let v = patch.phoneNumber {
            user.profile.phoneNumber = try Self.checkText(v, field: "phone_number", limit: 40)
            user.profile.phoneNumberVerified = false
        }
        if let v = patch.picture {
            if let v { try Self.checkPicture(v) }
            user.profile.picture = v
        }
        if let v = patch.emailVerified {
            if v, user.email == nil { throw ValidationError("email_verified needs an email address", field: "email_verified") }
            user.profile.emailVerified = v
        }
        if let v = patch.phoneNumberVerified {
            if v, user.profile.phoneNumber == nil {
                throw ValidationError("phone_number_verified needs a phone number", field: "phone_number_verified")
            }
            user.profile.phoneNumberVerified = v
        }
        user.updatedAt = now
        do {
            guard try await storage.updateUser(user) else { throw AdminError.notFound("no user '\(id)'") }
        } catch StorageError.duplicate {
            throw AdminError.conflict("the username '\(user.username)' is already taken")
        }
        try await record("user.updated", target: "user:" + id, ["username": user.username])
        return user
    }

    /// Sets a new password (bcrypt, off the event loop), or with `requireReset` makes the user choose one at
    /// the next sign-in. Either way every session of the user ends.
    public func setPassword(userID: String, password: String?, requireReset: Bool) async throws -> UserRecord {
        let user = try await self.user(id: userID)
        if let password {
            guard (8...72).contains(password.utf8.count) else {
                throw ValidationError("the password must be 8 to 72 bytes long", field: "password")
            }
            let hash = try await passwords.hash(password)
            _ = try await storage.setPassword(userID: userID, hash: hash, resetRequired: requireReset, at: now)
            try await record("user.password_set", target: "user:" + userID, ["require_reset": String(requireReset)])
        } else {
            guard requireReset else { throw ValidationError("give password or require_reset: true", field: "password") }
            _ = try await storage.setPassword(userID: userID, hash: user.passwordHash, resetRequired: true, at: now)
            try await record("user.password_reset_required", target: "user:" + userID)
        }
        _ = try await storage.deleteSessions(userID: userID)
        return try await self.user(id: userID)
    }

    /// A disabled user cannot sign in, their sessions end and their grants are revoked at once.
    public func disableUser(id: String) async throws -> UserRecord {
        let user = try await self.user(id: id)
        if !user.isDisabled {
            _ = try await storage.setUserDisabled(id: id, at: now, now: now)
            try await record("user.disabled", target: "user:" + id, ["username": user.username])
        }
        return try await self.user(id: id)
    }

    public func enableUser(id: String) async throws -> UserRecord {
        let user = try await self.user(id: id)
        if user.isDisabled {
            _ = try await storage.setUserDisabled(id: id, at: nil, now: now)
            try await record("user.enabled", target: "user:" + id, ["username": user.username])
        }
        return try await self.user(id: id)
    }

    public func deleteUser(id: String) async throws {
        let user = try await self.user(id: id)
        guard try await storage.deleteUser(id: id, at: now) else { throw AdminError.notFound("no user '\(id)'") }
        try await record("user.deleted", target: "user:" + id, ["username": user.username])
    }

    public func sessions(userID: String) async throws -> [SessionView] {
        _ = try await user(id: userID)
        return try await storage.sessions(userID: userID, at: now).map(SessionView.init)
    }

    /// Signs the user out everywhere; returns how many sessions ended.
    public func endSessions(userID: String) async throws -> Int {
        _ = try await user(id: userID)
        let n = try await storage.deleteSessions(userID: userID)
        try await record("user.signed_out_everywhere", target: "user:" + userID, ["sessions": String(n)])
        return n
    }

    /// Ends one session (by its public id).
    public func endSession(userID: String, sessionID: String) async throws {
        guard let session = try await storage.sessions(userID: userID, at: now).first(where: { $0.id == sessionID }) else {
            throw AdminError.notFound("user '\(userID)' has no session '\(sessionID)'")
        }
        try await storage.deleteSession(hash: session.hash)
        try await record("user.session_ended", target: "user:" + userID, ["session_id": sessionID])
    }

    /// Grants still holding a token.
    public func grants(userID: String) async throws -> [GrantView] {
        _ = try await user(id: userID)
        return try await storage.activeGrants(userID: userID, createdAfter: now - settings.accessTokenLifetime, at: now)
            .map(GrantView.init)
    }

    public func identities(userID: String) async throws -> [IdentityView] {
        _ = try await user(id: userID)
        return try await storage.identities(userID: userID).map(IdentityView.init)
    }

    public func unlinkIdentity(userID: String, provider: String, subject: String) async throws {
        _ = try await user(id: userID)
        guard try await storage.identity(providerID: provider, subject: subject)?.userID == userID else {
            throw AdminError.notFound("user '\(userID)' has no identity \(provider)/\(subject)")
        }
        guard try await storage.deleteIdentity(providerID: provider, subject: subject, userID: userID) else {
            throw AdminError.conflict("this identity is the user's only way to sign in: set a password first")
        }
        try await record("user.identity_unlinked", target: "user:" + userID, ["provider": provider, "subject": subject])
    }

    public func memberships(userID: String) async throws -> [MembershipRecord] {
        try await storage.memberships(userID: userID)
    }

    // MARK: clients

    public func listClients(cursor: String?, limit: Int) async throws -> PageView<ClientView> {
        guard (1...200).contains(limit) else { throw ValidationError("limit must be 1 to 200", field: "limit") }
        let (items, next) = try AdminCursor.page(try await storage.listClients().sorted { $0.id < $1.id }, key: \.id, after: cursor, limit: limit)
        return PageView(items: items.map { ClientView($0, now: now) }, next_cursor: next)
    }

    public func client(id: String) async throws -> ClientRecord {
        guard let client = try await storage.client(id: id) else { throw AdminError.notFound("no client '\(id)'") }
        return client
    }

    public func updateClient(id: String, _ patch: ClientPatch) async throws -> ClientRecord {
        let current = try await client(id: id)
        // The same validation as registration, on the merged fields.
        var new = NewClient(name: patch.name ?? current.name)
        new.redirectURIs = patch.redirectURIs ?? current.redirectURIs
        new.postLogoutRedirectURIs = patch.postLogoutRedirectURIs ?? current.postLogoutRedirectURIs
        new.grantTypes = patch.grantTypes ?? current.grantTypes
        new.allowPasswordGrant = new.grantTypes.contains(GrantType.password)
        new.scope = patch.scope ?? current.scope.description
        new.defaultScope = patch.defaultScope ?? (patch.scope == nil ? current.defaultScope.description : nil)
        new.resources = patch.resources ?? current.resources
        new.isPublic = current.isPublic
        new.skipConsent = patch.skipConsent ?? current.skipConsent
        new.singleGrantPerUser = patch.singleGrantPerUser ?? current.singleGrantPerUser
        new.legacyRedirectState = patch.legacyRedirectState ?? current.legacyRedirectState
        new.mayExchangeFrom = patch.mayExchangeFrom ?? current.mayExchangeFrom
        var record = try await validatedClient(new, id: current.id, secretHash: current.secretHash, createdAt: current.createdAt)
        record.previousSecretHash = current.previousSecretHash
        record.previousSecretExpiresAt = current.previousSecretExpiresAt
        guard try await storage.updateClient(record) else { throw AdminError.notFound("no client '\(id)'") }
        try await self.record("client.updated", target: "client:" + id, ["name": record.name])
        return record
    }

    /// A new secret (returned once). With `grace` seconds (at most 24 h) the old one keeps working that long.
    public func rotateSecret(clientID: String, grace: Int64?) async throws -> (ClientRecord, String) {
        let client = try await self.client(id: clientID)
        guard !client.isPublic else { throw AdminError.conflict("client '\(clientID)' is public and has no secret") }
        if let grace, !(0...86400).contains(grace) {
            throw ValidationError("grace must be 0 to 86400 seconds", field: "grace")
        }
        let secret = Secrets.generate()
        let until = grace.flatMap { $0 > 0 ? now + $0 : nil }
        _ = try await storage.rotateClientSecret(id: clientID, secretHash: Secrets.hash(secret), previousUntil: until, at: now)
        try await record("client.secret_rotated", target: "client:" + clientID, ["grace": String(grace ?? 0)])
        return (try await self.client(id: clientID), secret)
    }

    // MARK: scopes

    public func scope(name: String) async throws -> ScopeRecord {
        guard let scope = try await storage.scope(name: name) else { throw AdminError.notFound("no scope '\(name)'") }
        return scope
    }

    public func updateScope(name: String, description: String?, isDefault: Bool?, requiredRole: String??) async throws
        -> ScopeRecord
    {
        var scope = try await self.scope(name: name)
        if let description {
            guard (1...500).contains(description.count) else {
                throw ValidationError("description must be 1 to 500 characters", field: "description")
            }
            scope.description = description
        }
        if let isDefault {
            if isDefault, ScopeRecord.reservedNames.contains(name) {
                throw ValidationError("the admin scopes cannot be default scopes", field: "default")
            }
            scope.isDefault = isDefault
        }
        if let requiredRole {
            if let role = requiredRole, !Self.isValidName(role) {
                throw ValidationError("required_role must be 1 to 100 letters, digits or . _ - :", field: "required_role")
            }
            scope.requiredRole = requiredRole
        }
        _ = try await storage.updateScope(scope)
        try await record("scope.updated", target: "scope:" + name)
        return scope
    }

    /// A built-in scope is never deleted; one that clients may request only with `force` (it leaves them).
    public func deleteScope(name: String, force: Bool) async throws {
        guard !ScopeRecord.isBuiltIn(name) else { throw AdminError.conflict("the scope '\(name)' is built in and cannot be deleted") }
        switch try await storage.deleteScope(name: name, force: force, at: now) {
        case .notFound: throw AdminError.notFound("no scope '\(name)'")
        case .inUse(let clients):
            throw AdminError.conflict(
                "the scope '\(name)' is registered for \(clients.count) client(s) (\(clients.prefix(5).joined(separator: ", "))); delete with force to remove it from them")
        case .deleted:
            try await record("scope.deleted", target: "scope:" + name, ["force": String(force)])
        }
    }

    // MARK: groups

    public func listGroups() async throws -> [GroupView] {
        try await storage.listGroups().map { GroupView($0.group, members: $0.members) }
    }

    public func group(name: String) async throws -> GroupView {
        guard let found = try await storage.listGroups().first(where: { $0.group.name == name }) else {
            throw AdminError.notFound("no group '\(name)'")
        }
        return GroupView(found.group, members: found.members)
    }

    public func deleteGroup(name: String) async throws {
        guard try await storage.deleteGroup(name: name) else { throw AdminError.notFound("no group '\(name)'") }
        try await record("group.deleted", target: "group:" + name)
    }

    public func members(group: String) async throws -> [MemberView] {
        _ = try await self.group(name: group)
        var out: [MemberView] = []
        for m in try await storage.members(group: group) {
            let username = try await storage.user(id: m.userID)?.username ?? m.userID
            out.append(MemberView(group: group, user_id: m.userID, username: username, role: m.role))
        }
        return out
    }

    /// Adds (or changes the role of) a member given by user id or username.
    public func addMember(group: String, user key: String, role: String) async throws -> MemberView {
        _ = try await self.group(name: group)
        let user = try await resolveUser(key)
        guard Self.isValidName(role) else { throw ValidationError("role must be 1 to 100 letters, digits or . _ - :", field: "role") }
        try await storage.saveMembership(MembershipRecord(group: group, userID: user.id, role: role))
        try await record("group.member_added", target: "group:" + group, ["user_id": user.id, "role": role])
        return MemberView(group: group, user_id: user.id, username: user.username, role: role)
    }

    public func removeMember(group: String, user key: String) async throws {
        _ = try await self.group(name: group)
        let user = try await resolveUser(key)
        guard try await storage.removeMember(group: group, userID: user.id) else {
            throw AdminError.notFound("'\(user.username)' is not a member of '\(group)'")
        }
        try await record("group.member_removed", target: "group:" + group, ["user_id": user.id])
    }

    /// A user by id, else by username.
    public func resolveUser(_ key: String) async throws -> UserRecord {
        if let user = try await storage.user(id: key) { return user }
        if Self.isValidUsername(key), let user = try await storage.user(username: key) { return user }
        throw AdminError.notFound("no user '\(key)'")
    }

    // MARK: services

    public func service(name: String) async throws -> ServiceRecord {
        guard let s = try await storage.service(name: name) else { throw AdminError.notFound("no service '\(name)'") }
        return s
    }

    public func deleteService(name: String) async throws {
        guard name != ScopeRecord.adminService else {
            throw AdminError.conflict("the service 'gatehouse' holds the admin permissions and cannot be deleted")
        }
        guard try await storage.deleteService(name: name) else { throw AdminError.notFound("no service '\(name)'") }
        try await record("service.deleted", target: "service:" + name)
    }

    public func serviceGrants(service: String) async throws -> [ServiceGrantView] {
        _ = try await self.service(name: service)
        var out: [ServiceGrantView] = []
        for g in try await storage.serviceGrants(service: service) {
            let username = try await storage.user(id: g.userID)?.username ?? g.userID
            out.append(ServiceGrantView(service: service, user_id: g.userID, username: username, permissions: g.permissions))
        }
        return out
    }

    public func grantPermissions(service: String, user key: String, permissions: [String]) async throws -> ServiceGrantView {
        _ = try await self.service(name: service)
        let user = try await resolveUser(key)
        guard !permissions.isEmpty else { throw ValidationError("name at least one permission", field: "permissions") }
        for p in permissions where !Self.isValidName(p) {
            throw ValidationError("'\(p)' is not a valid permission name (1 to 100 letters, digits or . _ - :)", field: "permissions")
        }
        try await storage.grantPermissions(service: service, userID: user.id, permissions: permissions)
        try await record(
            "service.permissions_granted", target: "service:" + service,
            ["user_id": user.id, "permissions": permissions.joined(separator: " ")])
        let held = try await storage.permissions(service: service, userID: user.id)
        return ServiceGrantView(service: service, user_id: user.id, username: user.username, permissions: held)
    }

    /// Revokes the named permissions, or all of the user's permissions for the service (`nil`).
    public func revokePermissions(service: String, user key: String, permissions: [String]?) async throws -> Int {
        _ = try await self.service(name: service)
        let user = try await resolveUser(key)
        let n = try await storage.revokePermissions(service: service, userID: user.id, permissions: permissions)
        guard n > 0 else { throw AdminError.notFound("'\(user.username)' holds no such permission of '\(service)'") }
        try await record(
            "service.permissions_revoked", target: "service:" + service,
            ["user_id": user.id, "permissions": permissions?.joined(separator: " ") ?? "*"])
        return n
    }

    public func deleteProvider(id: String) async throws {
        guard try await storage.deleteProvider(id: id) else { throw AdminError.notFound("no provider '\(id)'") }
        try await record("provider.deleted", target: "provider:" + id)
    }

    // MARK: grants, keys, events, audit

    public func revokeGrant(id: String) async throws {
        guard let grant = try await storage.grant(id: id) else { throw AdminError.notFound("no grant '\(id)'") }
        try await storage.revokeGrant(id: id, at: now)
        try await record("grant.revoked", target: "grant:" + id, ["client_id": grant.clientID, "user_id": grant.userID ?? ""])
    }

    public func keys() async throws -> [KeyView] {
        let retention = max(settings.keyRetention, try await storage.keyRetention() ?? 0)
        let keys = try await storage.listKeys()
        let signing = KeyRing.plan(keys, now: now, retention: retention).signing?.kid
        return keys.map { k in
            let status: String
            if k.revokedAt != nil { status = "revoked" }
            else if k.retiredAt != nil { status = "retired" }
            else if k.kid == signing { status = "signing" }
            else if k.activeFrom > now { status = "pending" }
            else if let off = k.deactivatedAt, off + retention <= now { status = "expiring" }
            else { status = "published" }
            return KeyView(
                kid: k.kid, algorithm: k.algorithm.rawValue, status: status, created_at: k.createdAt,
                activates_at: k.activeFrom, deactivated_at: k.deactivatedAt, retired_at: k.retiredAt, revoked_at: k.revokedAt)
        }
    }

    /// A new signing key, published now and signing after `key_reload_interval` + 60 s (or at once with `immediately`).
    public func rotateKey(algorithm name: String?, immediately: Bool) async throws -> KeyView {
        var algorithm = settings.signingAlgorithm
        if let name {
            guard let a = SigningAlgorithm(name: name) else {
                throw ValidationError("unknown algorithm '\(name)' (ES256, ES384, RS256, PS256, EdDSA)", field: "algorithm")
            }
            algorithm = a
        }
        let lead = immediately ? 0 : KeyRing.publishLead(keyReloadInterval: settings.keyReloadInterval)
        let key = try await KeyRing.rotate(store: storage, algorithm: algorithm, activatesIn: lead, clock: clock)
        try await record(AuditAction.keyRotated, target: "key:" + key.kid, ["algorithm": algorithm.rawValue, "activates_in": String(lead)])
        guard let view = try await keys().first(where: { $0.kid == key.kid }) else { throw AdminError.notFound("no key '\(key.kid)'") }
        return view
    }

    /// Emergency revocation; returns the replacement signing key's id when one was needed.
    public func revokeKey(kid: String) async throws -> String? {
        guard try await storage.listKeys().contains(where: { $0.kid == kid }) else { throw AdminError.notFound("no key '\(kid)'") }
        let replacement: SigningKeyRecord?
        do {
            replacement = try await KeyRing.revoke(kid: kid, store: storage, algorithm: settings.signingAlgorithm, clock: clock)
        } catch let e as KeyRingError {
            throw AdminError.conflict(e.description)
        }
        try await record(AuditAction.keyRevoked, target: "key:" + kid, ["replacement": replacement?.kid ?? ""])
        return replacement?.kid
    }

    public func events(status: OutboxStatus?, cursor: String?, limit: Int) async throws -> PageView<EventView> {
        guard (1...200).contains(limit) else { throw ValidationError("limit must be 1 to 200", field: "limit") }
        var before: (Int64, String)?
        if let key = try AdminCursor.decode(cursor) {
            let parts = key.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let t = Int64(parts[0]) else {
                throw ValidationError("the cursor is not one this server gave out", field: "cursor")
            }
            before = (t, String(parts[1]))
        }
        let rows = try await storage.listEvents(status: status, before: before, limit: limit + 1)
        let items = Array(rows.prefix(limit))
        let next = rows.count > limit ? items.last.map { AdminCursor.encode("\($0.createdAt) \($0.id)") } : nil
        return PageView(items: items.map(EventView.init), next_cursor: next)
    }

    public func event(id: String) async throws -> EventView {
        guard let r = try await storage.outbox(id: id) else { throw AdminError.notFound("no event '\(id)'") }
        return EventView(r)
    }

    public func retryEvent(id: String) async throws -> EventView {
        let event = try await self.event(id: id)
        guard event.status != "delivered" else { throw AdminError.conflict("event '\(id)' was delivered already") }
        _ = try await storage.retryEvent(id: id, at: now)
        try await record("event.retried", target: "event:" + id, ["event": event.event])
        return try await self.event(id: id)
    }

    public func auditEvents(_ query: AuditQuery, cursor: String?) async throws -> PageView<AuditEventView> {
        guard (1...200).contains(query.limit) else { throw ValidationError("limit must be 1 to 200", field: "limit") }
        for (value, field) in [(query.actor, "actor"), (query.action, "action"), (query.target, "target")] {
            if let value, value.isEmpty || value.count > 300 { throw ValidationError("\(field) must be 1 to 300 characters", field: field) }
        }
        var q = query
        q.before = try AdminCursor.decode(cursor)
        q.limit = query.limit + 1
        let rows = try await storage.listAuditEvents(q)
        let items = Array(rows.prefix(query.limit))
        let next = rows.count > query.limit ? items.last.map { AdminCursor.encode($0.id) } : nil
        return PageView(items: items.map(AuditEventView.init), next_cursor: next)
    }

    public func stats() async throws -> AdminStats { try await storage.stats(at: now) }

    // MARK: checks shared with registration

    static func checkEmail(_ email: String) throws {
        guard email.contains("@"), !email.contains(" "), (3...254).contains(email.count) else {
            throw ValidationError("--email is not an email address: \(email)", field: "email")
        }
    }

    static func checkText(_ value: String?, field: String, limit: Int = 200) throws -> String? {
        guard let value else { return nil }
        guard (1...limit).contains(value.count) else { throw ValidationError("\(field) must be 1 to \(limit) characters", field: field) }
        return value
    }

    static func checkPicture(_ picture: String) throws {
        guard let url = URL(string: picture), ["https", "http"].contains(url.scheme?.lowercased() ?? ""),
            url.host != nil, picture.count <= 2000
        else { throw ValidationError("--picture must be an http(s) URL: \(picture)", field: "picture") }
    }
}
