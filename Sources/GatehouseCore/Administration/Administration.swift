import Foundation

/// Administrative operations: the one layer under the admin API, the console and the CLI, so the three can
/// never disagree. Input is validated (refused with one clear message naming the field before anything is
/// stored), and every change is recorded in the audit log as done by `actor`.
public struct Administration: Sendable {
    /// Only what administration uses.
    public typealias Storage = ClientStore & UserStore & ScopeStore & AccountStore & TokenStore & AdminStore & AuditStore
        & BrowserStore & FederationStore & KeyStore & EventOutbox
    let storage: any Storage
    let clock: Clock
    let passwords: PasswordHasher
    let audit: AuditLog
    /// Who the changes are recorded as made by.
    public let actor: AuditActor
    /// Token lifetimes and key settings (grants listing, key rotation).
    let settings: ServerSettings

    public init(
        storage: any Storage, clock: Clock = .system, passwords: PasswordHasher = PasswordHasher(),
        audit: AuditLog = .none, actor: AuditActor = .cli, settings: ServerSettings = ServerSettings(issuer: "http://localhost")
    ) {
        self.storage = storage
        self.clock = clock
        self.passwords = passwords
        self.audit = audit
        self.actor = actor
        self.settings = settings
    }

    /// An operator's input that cannot be applied, with a message naming the option, and the field (the JSON
    /// name of the admin API) it is about.
    public struct ValidationError: Error, CustomStringConvertible, Equatable {
        public let description: String
        public let field: String?
        public init(_ description: String, field: String? = nil) {
            self.description = description
            self.field = field ?? Self.field(of: description)
        }

        /// The admin API field a message's leading `--option` names.
        static func field(of message: String) -> String? {
            guard message.hasPrefix("--") else { return nil }
            let option = String(message.dropFirst(2).prefix { $0.isLetter || $0 == "-" })
            let renamed = [
                "redirect-uri": "redirect_uris", "post-logout-redirect-uri": "post_logout_redirect_uris",
                "grant-type": "grant_types", "resource": "resources", "may-exchange-from": "may_exchange_from",
                "phone": "phone_number", "email-verified": "email_verified",
            ]
            return renamed[option] ?? option.replacingOccurrences(of: "-", with: "_")
        }
    }

    /// The fields of a client to register (`gatehouse clients create`, self-service apps).
    public struct NewClient: Sendable {
        public var name: String
        public var redirectURIs: [String] = []
        /// Where RP-initiated logout may send the browser (OIDC RP-Initiated Logout §3).
        public var postLogoutRedirectURIs: [String] = []
        /// Empty means the default, `authorization_code refresh_token`.
        public var grantTypes: [String] = []
        public var scope: String?
        public var defaultScope: String?
        public var resources: [String] = []
        public var isPublic = false
        public var skipConsent = false
        public var singleGrantPerUser = false
        public var allowPasswordGrant = false
        /// Accept the registered redirect URI plus one `redirect_state` parameter (python-social-auth).
        public var legacyRedirectState = false
        /// Clients whose access tokens this one may exchange (RFC 8693).
        public var mayExchangeFrom: [String] = []
        public init(name: String) { self.name = name }
    }

    /// Registers a client. Returns the record and, for confidential clients, the secret (shown once).
    public func createClient(_ new: NewClient) async throws -> (ClientRecord, secret: String?) {
        let secret = new.isPublic ? nil : Secrets.generate()
        let record = try await validatedClient(new, id: Secrets.identifier(), secretHash: secret.map(Secrets.hash), createdAt: now)
        try await storage.insertClient(record)
        try await audit.record(
            "client.created", actor: actor, target: "client:" + record.id,
            detail: ["name": record.name, "grant_types": record.grantTypes.joined(separator: " "), "scope": record.scope.description])
        return (record, secret)
    }

    /// The record of a registration (new, or an update's merged fields), validated as a whole.
    func validatedClient(_ new: NewClient, id: String, secretHash: String?, createdAt: Int64) async throws -> ClientRecord {
        let name = new.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 200 else { throw ValidationError("--name must be 1 to 200 characters") }
        var grantTypes = new.grantTypes.isEmpty
            ? [GrantType.authorizationCode, GrantType.refreshToken] : new.grantTypes
        if new.allowPasswordGrant { grantTypes.append(GrantType.password) }
        grantTypes = grantTypes.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        for g in grantTypes where !GrantType.registrable.contains(g) {
            throw ValidationError(
                "unknown grant type '\(g)' (allowed: \(GrantType.registrable.joined(separator: ", ")))", field: "grant_types")
        }
        if grantTypes.contains(GrantType.password), !new.allowPasswordGrant {
            throw ValidationError("the password grant needs --allow-password-grant", field: "grant_types")
        }
        for g in [GrantType.clientCredentials, GrantType.tokenExchange] where new.isPublic && grantTypes.contains(g) {
            throw ValidationError("public clients cannot use the \(g) grant", field: "grant_types")
        }
        // RFC 6749 §10.2: a public client's identity cannot be proved, so consent cannot be skipped for it (an
        // app impersonating it would get tokens without the person ever being asked).
        if new.isPublic, new.skipConsent {
            throw ValidationError("--skip-consent cannot be used with --public: a public client cannot prove who it is (RFC 6749 §10.2)")
        }
        for other in new.mayExchangeFrom where try await storage.client(id: other) == nil {
            throw ValidationError("--may-exchange-from: no client '\(other)'")
        }
        if !new.mayExchangeFrom.isEmpty, !grantTypes.contains(GrantType.tokenExchange) {
            throw ValidationError("--may-exchange-from needs --grant-type \(GrantType.tokenExchange)")
        }
        do {
            for uri in new.redirectURIs { try RedirectURI.validateForRegistration(uri) }
        } catch let e as ValidationError { throw ValidationError(e.description, field: "redirect_uris") }
        for uri in new.postLogoutRedirectURIs {
            guard uri != RedirectURI.outOfBand else {
                throw ValidationError("--post-logout-redirect-uri cannot be the out-of-band URI")
            }
            do { try RedirectURI.validateForRegistration(uri) } catch let e as ValidationError {
                throw ValidationError(e.description, field: "post_logout_redirect_uris")
            }
        }
        let known = Set(try await storage.listScopes().map(\.name))
        let defaults = Set(try await storage.listScopes().filter(\.isDefault).map(\.name))
        let scope = try parseScope(new.scope, option: "--scope") ?? Scope(known.filter { defaults.contains($0) }.sorted())
        for token in scope.tokens where !known.contains(token) {
            throw ValidationError("unknown scope '\(token)' (create it with `gatehouse scopes create \(token)`)", field: "scope")
        }
        var defaultScope = try parseScope(new.defaultScope, option: "--default-scope")
            ?? scope.intersection(Scope(defaults.sorted()))
        if new.defaultScope == nil, defaultScope.isEmpty { defaultScope = scope }
        guard defaultScope.isSubset(of: scope) else {
            throw ValidationError("--default-scope must be part of --scope")
        }
        for r in new.resources {
            guard let url = URL(string: r), url.scheme != nil, !r.contains("#"), !r.contains(" ") else { throw ValidationError("--resource must be an absolute URI without a fragment: \(r)") }
        }
        return ClientRecord(
            id: id, name: name, secretHash: secretHash, redirectURIs: new.redirectURIs,
            grantTypes: grantTypes, scope: scope, defaultScope: defaultScope, resources: new.resources,
            skipConsent: new.skipConsent, postLogoutRedirectURIs: new.postLogoutRedirectURIs,
            singleGrantPerUser: new.singleGrantPerUser, createdAt: createdAt, updatedAt: now,
            legacyRedirectState: new.legacyRedirectState, mayExchangeFrom: new.mayExchangeFrom)
    }

    /// Replaces a confidential client's secret. The old one stops working at once in the database; a
    /// running server sees the change within its `cache_ttl`.
    public func rotateSecret(clientID: String) async throws -> String {
        try await rotateSecret(clientID: clientID, grace: nil).1
    }

    public func deleteClient(id: String) async throws {
        let client = try await self.client(id: id)
        guard try await storage.deleteClient(id: id, at: clock.nowSeconds) else {
            throw AdminError.notFound("no client '\(id)'")
        }
        try await audit.record("client.deleted", actor: actor, target: "client:" + id, detail: ["name": client.name])
    }

    /// Validates and stores a user, with its audit event in the same transaction; the password (if any) is
    /// bcrypt-hashed off the event loop.
    func insertUser(
        username: String, email: String?, name: String?, password: String?, passwordHash: String?, profile: UserProfile
    ) async throws -> UserRecord {
        let username = username.trimmingCharacters(in: .whitespacesAndNewlines)
        guard Self.isValidUsername(username) else {
            throw ValidationError("--username must be 1 to 150 letters, digits or . _ - @ +")
        }
        if let email { try Self.checkEmail(email) }
        if let password, password.utf8.count < 8 || password.utf8.count > 72 {
            throw ValidationError("the password must be 8 to 72 bytes long", field: "password")
        }
        for (value, field) in [(profile.phoneNumber, "phone_number"), (profile.address, "address")] {
            _ = try Self.checkText(value, field: field, limit: field == "address" ? 500 : 40)
        }
        if let name, name.count > 200 { throw ValidationError("--name must be at most 200 characters") }
        for (value, option) in [(profile.givenName, "--given-name"), (profile.familyName, "--family-name")] {
            if let value, value.isEmpty || value.count > 200 { throw ValidationError("\(option) must be 1 to 200 characters") }
        }
        if let picture = profile.picture { try Self.checkPicture(picture) }
        if profile.emailVerified, email == nil { throw ValidationError("--email-verified needs --email") }
        if profile.phoneNumberVerified, profile.phoneNumber == nil {
            throw ValidationError("phone_number_verified needs a phone number", field: "phone_number_verified")
        }
        let now = clock.nowSeconds
        // A random id; the store never gives out a deleted user's (a `sub` names one person forever).
        let user = UserRecord(
            id: UUID().uuidString.lowercased(), username: username, email: email, name: name,
            passwordHash: try await password.asyncMap(passwords.hash) ?? passwordHash, createdAt: now, updatedAt: now,
            profile: profile)
        let event = audit.event("user.created", actor: actor, target: "user:" + user.id, detail: ["username": user.username])
        do {
            try await storage.insertUser(user, audit: event)
        } catch StorageError.duplicate {
            throw AdminError.conflict("the username '\(username)' is already taken")
        }
        if let event { await audit.publish(event) }
        return user
    }

    /// 1 to 150 letters, digits or `. _ - @ +`.
    public static func isValidUsername(_ username: String) -> Bool {
        (1...150).contains(username.count)
            && username.unicodeScalars.allSatisfy {
                CharacterSet.alphanumerics.contains($0) || "._-@+".unicodeScalars.contains($0)
            }
    }

    public func createScope(name: String, description: String?, isDefault: Bool, requiredRole: String? = nil) async throws
        -> ScopeRecord
    {
        if let requiredRole, !Self.isValidName(requiredRole) {
            throw ValidationError("--required-role must be 1 to 100 letters, digits or . _ - :")
        }
        guard Scope.isValidToken(name), name.count <= 100 else {
            throw ValidationError("'\(name)' is not a valid scope name (RFC 6749 §3.3: no spaces, quotes or backslashes)", field: "name")
        }
        if let description, !(1...500).contains(description.count) {
            throw ValidationError("description must be 1 to 500 characters", field: "description")
        }
        let record = ScopeRecord(name: name, description: description ?? name, isDefault: isDefault, requiredRole: requiredRole)
        do {
            try await storage.insertScope(record)
        } catch StorageError.duplicate {
            throw AdminError.conflict("the scope '\(name)' already exists")
        }
        try await audit.record("scope.created", actor: actor, target: "scope:" + name)
        return record
    }

    private func parseScope(_ value: String?, option: String) throws -> Scope? {
        guard let value else { return nil }
        guard let scope = Scope(parsing: value) else { throw ValidationError("\(option) is not a valid scope list: \(value)") }
        return scope
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
