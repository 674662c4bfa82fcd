import Foundation

/// Administrative operations shared by the CLI and tests: registering clients, users and scopes with
/// validation, so bad input is refused with one clear message before anything is stored.
public struct Administration: Sendable {
    /// Only what administration uses: clients, users, scopes, groups and grants.
    public typealias Storage = ClientStore & UserStore & ScopeStore & AccountStore & TokenStore
    let storage: any Storage
    let clock: Clock
    let passwords: PasswordHasher

    public init(storage: any Storage, clock: Clock = .system, passwords: PasswordHasher = PasswordHasher()) {
        self.storage = storage
        self.clock = clock
        self.passwords = passwords
    }

    /// An operator's input that cannot be applied, with a message naming the option.
    public struct ValidationError: Error, CustomStringConvertible, Equatable {
        public let description: String
        public init(_ description: String) { self.description = description }
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
        let name = new.name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 200 else { throw ValidationError("--name must be 1 to 200 characters") }
        var grantTypes = new.grantTypes.isEmpty
            ? [GrantType.authorizationCode, GrantType.refreshToken] : new.grantTypes
        if new.allowPasswordGrant { grantTypes.append(GrantType.password) }
        grantTypes = grantTypes.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        for g in grantTypes where !GrantType.registrable.contains(g) {
            throw ValidationError(
                "unknown grant type '\(g)' (allowed: \(GrantType.registrable.joined(separator: ", ")))")
        }
        if grantTypes.contains(GrantType.password), !new.allowPasswordGrant {
            throw ValidationError("the password grant needs --allow-password-grant")
        }
        for g in [GrantType.clientCredentials, GrantType.tokenExchange] where new.isPublic && grantTypes.contains(g) {
            throw ValidationError("public clients cannot use the \(g) grant")
        }
        // RFC 6749 §10.2: a public client's identity cannot be proved, so consent cannot be skipped for it (an
        // app impersonating it would get tokens without the person ever being asked).
        if new.isPublic, new.skipConsent {
            throw ValidationError("--skip-consent cannot be used with --public: a public client cannot prove who it is (RFC 6749 §10.2)")
        }
        for id in new.mayExchangeFrom where try await storage.client(id: id) == nil {
            throw ValidationError("--may-exchange-from: no client '\(id)'")
        }
        if !new.mayExchangeFrom.isEmpty, !grantTypes.contains(GrantType.tokenExchange) {
            throw ValidationError("--may-exchange-from needs --grant-type \(GrantType.tokenExchange)")
        }
        for uri in new.redirectURIs { try RedirectURI.validateForRegistration(uri) }
        for uri in new.postLogoutRedirectURIs {
            guard uri != RedirectURI.outOfBand else {
                throw ValidationError("--post-logout-redirect-uri cannot be the out-of-band URI")
            }
            try RedirectURI.validateForRegistration(uri)
        }
        let known = Set(try await storage.listScopes().map(\.name))
        let defaults = Set(try await storage.listScopes().filter(\.isDefault).map(\.name))
        let scope = try parseScope(new.scope, option: "--scope") ?? Scope(known.filter { defaults.contains($0) }.sorted())
        for token in scope.tokens where !known.contains(token) {
            throw ValidationError("unknown scope '\(token)' (create it with `gatehouse scopes create \(token)`)")
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
        let secret = new.isPublic ? nil : Secrets.generate()
        let now = clock.nowSeconds
        let record = ClientRecord(
            id: Secrets.identifier(), name: name, secretHash: secret.map(Secrets.hash), redirectURIs: new.redirectURIs,
            grantTypes: grantTypes, scope: scope, defaultScope: defaultScope, resources: new.resources,
            skipConsent: new.skipConsent, postLogoutRedirectURIs: new.postLogoutRedirectURIs,
            singleGrantPerUser: new.singleGrantPerUser, createdAt: now, updatedAt: now,
            legacyRedirectState: new.legacyRedirectState, mayExchangeFrom: new.mayExchangeFrom)
        try await storage.insertClient(record)
        return (record, secret)
    }

    /// Replaces a confidential client's secret. The old one stops working at once in the database; a
    /// running server sees the change within its `cache_ttl`.
    public func rotateSecret(clientID: String) async throws -> String {
        guard let client = try await storage.client(id: clientID) else { throw ValidationError("no client '\(clientID)'") }
        guard !client.isPublic else { throw ValidationError("client '\(clientID)' is public and has no secret") }
        let secret = Secrets.generate()
        _ = try await storage.updateClientSecret(id: clientID, secretHash: Secrets.hash(secret), at: clock.nowSeconds)
        return secret
    }

    public func deleteClient(id: String) async throws {
        guard try await storage.deleteClient(id: id, at: clock.nowSeconds) else {
            throw ValidationError("no client '\(id)'")
        }
    }

    /// Creates a user; the password (if any) is bcrypt-hashed off the event loop.
    public func createUser(
        username: String, email: String?, name: String?, password: String?, profile: UserProfile = UserProfile()
    ) async throws -> UserRecord {
        let username = username.trimmingCharacters(in: .whitespacesAndNewlines)
        guard Self.isValidUsername(username) else {
            throw ValidationError("--username must be 1 to 150 letters, digits or . _ - @ +")
        }
        if let email, !(email.contains("@") && !email.contains(" ") && email.count <= 254) {
            throw ValidationError("--email is not an email address: \(email)")
        }
        if let password, password.utf8.count < 8 || password.utf8.count > 72 {
            throw ValidationError("the password must be 8 to 72 bytes long")
        }
        if let name, name.count > 200 { throw ValidationError("--name must be at most 200 characters") }
        for (value, option) in [(profile.givenName, "--given-name"), (profile.familyName, "--family-name")] {
            if let value, value.isEmpty || value.count > 200 { throw ValidationError("\(option) must be 1 to 200 characters") }
        }
        if let picture = profile.picture {
            guard let url = URL(string: picture), ["https", "http"].contains(url.scheme?.lowercased() ?? ""),
                url.host != nil, picture.count <= 2000
            else { throw ValidationError("--picture must be an http(s) URL: \(picture)") }
        }
        if profile.emailVerified, email == nil { throw ValidationError("--email-verified needs --email") }
        let now = clock.nowSeconds
        let user = UserRecord(
            id: UUID().uuidString.lowercased(), username: username, email: email, name: name,
            passwordHash: try await password.asyncMap(passwords.hash), createdAt: now, updatedAt: now,
            profile: profile)
        do {
            try await storage.insertUser(user)
        } catch StorageError.duplicate {
            throw ValidationError("the username '\(username)' is already taken")
        }
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
            throw ValidationError("'\(name)' is not a valid scope name (RFC 6749 §3.3: no spaces, quotes or backslashes)")
        }
        let record = ScopeRecord(name: name, description: description ?? name, isDefault: isDefault, requiredRole: requiredRole)
        do {
            try await storage.insertScope(record)
        } catch StorageError.duplicate {
            throw ValidationError("the scope '\(name)' already exists")
        }
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
