import Foundation
import GatehouseCore
import Logging
import SQLKit

/// Gatehouse storage over SQLKit, on SQLite (default) or PostgreSQL.
public final class SQLStore: GatehouseStorage {
    let backend: any SQLBackend
    public let url: DatabaseURL
    let clock: Clock
    /// Seals private signing keys and provider client secrets at rest (`secrets_key`); `nil`: stored as
    /// they are, and a sealed value read back is an error naming the setting.
    let secrets: SecretBox?

    private init(backend: any SQLBackend, url: DatabaseURL, clock: Clock, secrets: SecretBox?) {
        self.backend = backend
        self.url = url
        self.clock = clock
        self.secrets = secrets
    }

    func sealSecret(_ value: String, context: String) throws -> String {
        try secrets?.seal(value, context: context) ?? value
    }

    func openSecret(_ stored: String, context: String) throws -> String {
        try SecretBox.open(stored, context: context, keys: secrets?.keys ?? [])
    }

    static func privateKeyContext(_ kid: String) -> String { "signing_keys.private_pem:" + kid }
    static func providerSecretContext(_ id: String) -> String { "providers.client_secret:" + id }

    /// Runs one statement outside a transaction (PostgreSQL's CREATE/DROP DATABASE cannot run in one). For
    /// tooling and test support in this package only; never with request input.
    package func executeOutsideTransaction(_ sql: String) async throws {
        try await backend.read { db in try await db.raw(SQLQueryString(sql)).run() }
    }

    /// Opens the database (creating an SQLite file if needed). Call `migrate()` before use and
    /// `close()` when done.
    public static func open(
        _ url: DatabaseURL, logger: Logger = Logger(label: "gatehouse.sql"), clock: Clock = .system, secrets: SecretBox? = nil
    ) async throws -> SQLStore
    {
        // The drivers log queries with their bind values at debug: those include private keys and
        // token hashes, so the database layer never logs below info.
        var logger = logger
        if logger.logLevel < .info { logger.logLevel = .info }
        let backend: any SQLBackend
        switch url {
        case .sqliteFile, .sqliteMemory:
            backend = try await SQLiteBackend.open(url, readers: 3, logger: logger)
        case .postgres(let host, let port, _, _, let database, _):
            let pg = try PostgresBackend(url, maxConnections: 16, logger: logger)
            do {
                try await pg.checkConnection()
            } catch {
                await pg.shutdown()
                throw SQLStoreError(
                    description: "cannot connect to PostgreSQL database \(database) at \(host):\(port): \(PostgresBackend.explain(error))")
            }
            backend = pg
        }
        return SQLStore(backend: backend, url: url, clock: clock, secrets: secrets)
    }

    /// Applies pending migrations; returns the versions applied.
    @discardableResult
    public func migrate() async throws -> [Int] { try await Migrations.migrate(backend, clock: clock) }

    public func close() async { await backend.shutdown() }

    // MARK: Clients

    public func insertClient(_ c: ClientRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO clients (id, name, secret_hash, redirect_uris, grant_types, scope, default_scope,
                    resources, skip_consent, post_logout_redirect_uris, single_grant_per_user, created_at, updated_at,
                    legacy_redirect_state, may_exchange_from)
                VALUES (\(bind: c.id), \(bind: c.name), \(bind: c.secretHash), \(bind: JSONList.encode(c.redirectURIs)),
                    \(bind: JSONList.encode(c.grantTypes)), \(bind: c.scope.description), \(bind: c.defaultScope.description),
                    \(bind: JSONList.encode(c.resources)), \(bind: c.skipConsent ? 1 : 0),
                    \(bind: JSONList.encode(c.postLogoutRedirectURIs)), \(bind: c.singleGrantPerUser ? 1 : 0),
                    \(bind: c.createdAt), \(bind: c.updatedAt), \(bind: c.legacyRedirectState ? 1 : 0),
                    \(bind: JSONList.encode(c.mayExchangeFrom)))
                """
            ).run()
        }
    }

    public func client(id: String) async throws -> ClientRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM clients WHERE id = \(bind: id)").first().map(Self.decodeClient)
        }
    }

    public func listClients() async throws -> [ClientRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM clients ORDER BY created_at, id").all().map(Self.decodeClient)
        }
    }

    public func deleteClient(id: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            let deleted = try await db.raw("DELETE FROM clients WHERE id = \(bind: id) RETURNING id").all()
            guard !deleted.isEmpty else { return false }
            try await db.raw(
                "UPDATE grants SET revoked_at = \(bind: time) WHERE client_id = \(bind: id) AND revoked_at IS NULL"
            ).run()
            return true
        }
    }

    public func updateClientSecret(id: String, secretHash: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                """
                UPDATE clients SET secret_hash = \(bind: secretHash), updated_at = \(bind: time)
                WHERE id = \(bind: id) AND secret_hash IS NOT NULL RETURNING id
                """
            ).all().isEmpty
        }
    }

    static func decodeClient(_ row: any SQLRow) throws -> ClientRecord {
        ClientRecord(
            id: try row.decode(column: "id", as: String.self),
            name: try row.decode(column: "name", as: String.self),
            secretHash: try row.decode(column: "secret_hash", as: String?.self),
            redirectURIs: JSONList.decode(try row.decode(column: "redirect_uris", as: String.self)),
            grantTypes: JSONList.decode(try row.decode(column: "grant_types", as: String.self)),
            scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
            defaultScope: Scope(parsing: try row.decode(column: "default_scope", as: String.self)) ?? .empty,
            resources: JSONList.decode(try row.decode(column: "resources", as: String.self)),
            skipConsent: try row.decode(column: "skip_consent", as: Int.self) != 0,
            postLogoutRedirectURIs: JSONList.decode(try row.decode(column: "post_logout_redirect_uris", as: String.self)),
            singleGrantPerUser: try row.decode(column: "single_grant_per_user", as: Int.self) != 0,
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            updatedAt: try row.decode(column: "updated_at", as: Int64.self),
            legacyRedirectState: try row.decode(column: "legacy_redirect_state", as: Int.self) != 0,
            mayExchangeFrom: JSONList.decode(try row.decode(column: "may_exchange_from", as: String.self)))
    }

    // MARK: Users

    public func insertUser(_ u: UserRecord) async throws {
        try await backend.transaction { db in try await Self.insertUser(u, db) }
    }

    public func insertUser(_ u: UserRecord, linking identity: IdentityRecord) async throws {
        try await backend.transaction { db in
            try await Self.insertUser(u, db)
            try await Self.insertIdentity(identity, db)
        }
    }

    private static func insertUser(_ u: UserRecord, _ db: any SQLDatabase) async throws {
        let inserted = try await db.raw(
                """
                INSERT INTO users (id, username, username_key, email, email_key, name, password_hash, created_at,
                    updated_at, profile)
                VALUES (\(bind: u.id), \(bind: u.username), \(bind: u.username.lowercased()), \(bind: u.email),
                    \(bind: u.email?.lowercased()), \(bind: u.name), \(bind: u.passwordHash), \(bind: u.createdAt),
                    \(bind: u.updatedAt), \(bind: JSONObject.encode(u.profile)))
                ON CONFLICT DO NOTHING RETURNING id
                """
            ).all().count
        guard inserted == 1 else { throw StorageError.duplicate("user \(u.username)") }
    }

    public func user(id: String) async throws -> UserRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM users WHERE id = \(bind: id)").first().map(Self.decodeUser)
        }
    }

    public func user(username: String) async throws -> UserRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM users WHERE username_key = \(bind: username.lowercased())").first()
                .map(Self.decodeUser)
        }
    }

    static func decodeUser(_ row: any SQLRow) throws -> UserRecord {
        UserRecord(
            id: try row.decode(column: "id", as: String.self),
            username: try row.decode(column: "username", as: String.self),
            email: try row.decode(column: "email", as: String?.self),
            name: try row.decode(column: "name", as: String?.self),
            passwordHash: try row.decode(column: "password_hash", as: String?.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            updatedAt: try row.decode(column: "updated_at", as: Int64.self),
            profile: JSONObject.decode(UserProfile.self, try row.decode(column: "profile", as: String.self))
                ?? UserProfile())
    }

    // MARK: Scopes

    public func insertScope(_ s: ScopeRecord) async throws {
        let inserted = try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO scopes (name, description, is_default, required_role)
                VALUES (\(bind: s.name), \(bind: s.description), \(bind: s.isDefault ? 1 : 0), \(bind: s.requiredRole))
                ON CONFLICT DO NOTHING RETURNING name
                """
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("scope \(s.name)") }
    }

    public func listScopes() async throws -> [ScopeRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM scopes ORDER BY name").all().map { row in
                ScopeRecord(
                    name: try row.decode(column: "name", as: String.self),
                    description: try row.decode(column: "description", as: String.self),
                    isDefault: try row.decode(column: "is_default", as: Int.self) != 0,
                    requiredRole: try row.decode(column: "required_role", as: String?.self))
            }
        }
    }

    // MARK: Keys

    public func listKeys() async throws -> [SigningKeyRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM signing_keys ORDER BY created_at, kid").all().map { row in
                let alg = try row.decode(column: "algorithm", as: String.self)
                guard let algorithm = SigningAlgorithm(rawValue: alg) else {
                    throw StorageError.notFound("signing algorithm \(alg)")
                }
                let kid = try row.decode(column: "kid", as: String.self)
                return SigningKeyRecord(
                    kid: kid, algorithm: algorithm,
                    privatePEM: try row.decode(column: "private_pem", as: String?.self).map {
                        try openSecret($0, context: Self.privateKeyContext(kid))
                    },
                    createdAt: try row.decode(column: "created_at", as: Int64.self),
                    deactivatedAt: try row.decode(column: "deactivated_at", as: Int64?.self),
                    retiredAt: try row.decode(column: "retired_at", as: Int64?.self),
                    activatesAt: try row.decode(column: "activates_at", as: Int64?.self),
                    revokedAt: try row.decode(column: "revoked_at", as: Int64?.self))
            }
        }
    }

    private func insertKey(_ k: SigningKeyRecord, _ db: any SQLDatabase) async throws {
        let sealed = try k.privatePEM.map { try sealSecret($0, context: Self.privateKeyContext(k.kid)) }
        try await db.raw(
            """
            INSERT INTO signing_keys (kid, algorithm, private_pem, created_at, deactivated_at, retired_at, activates_at)
            VALUES (\(bind: k.kid), \(bind: k.algorithm.rawValue), \(bind: sealed), \(bind: k.createdAt),
                \(bind: k.deactivatedAt), \(bind: k.retiredAt), \(bind: k.activatesAt))
            """
        ).run()
    }

    public func activateKey(_ key: SigningKeyRecord) async throws {
        try await backend.transaction { db in
            // The keys signing now stop when the new one starts (at once, or at its `activatesAt`).
            try await db.raw(
                """
                UPDATE signing_keys SET deactivated_at = \(bind: key.activeFrom)
                WHERE (deactivated_at IS NULL OR deactivated_at > \(bind: key.activeFrom)) AND retired_at IS NULL
                """
            ).run()
            try await self.insertKey(key, db)
        }
    }

    public func revokeKey(kid: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            // A key that had not started signing yet: the keys it was to replace keep signing.
            // (Until this key's own successor starts, if one is scheduled.)
            if let row = try await db.raw(
                """
                SELECT activates_at, deactivated_at FROM signing_keys
                WHERE kid = \(bind: kid) AND revoked_at IS NULL AND activates_at > \(bind: time)
                """
            ).first(), let start = try row.decode(column: "activates_at", as: Int64?.self) {
                let successor = try row.decode(column: "deactivated_at", as: Int64?.self)
                try await db.raw(
                    """
                    UPDATE signing_keys SET deactivated_at = \(bind: successor)
                    WHERE deactivated_at = \(bind: start) AND kid <> \(bind: kid) AND revoked_at IS NULL AND retired_at IS NULL
                    """
                ).run()
            }
            return try await !db.raw(
                """
                UPDATE signing_keys SET revoked_at = \(bind: time), retired_at = \(bind: time), private_pem = NULL,
                    deactivated_at = COALESCE(deactivated_at, \(bind: time))
                WHERE kid = \(bind: kid) AND revoked_at IS NULL RETURNING kid
                """
            ).all().isEmpty
        }
    }

    public func revokedKeyIDs() async throws -> Set<String> {
        try await backend.read { db in
            Set(try await db.raw("SELECT kid FROM signing_keys WHERE revoked_at IS NOT NULL").all().map {
                try $0.decode(column: "kid", as: String.self)
            })
        }
    }

    /// Seals every stored secret with the first configured key (and plaintext ones too); returns how many
    /// values were rewritten. Values already sealed with the first key stay as they are.
    /// The columns that hold sealed secrets: table, row id column, secret column, and the row's context.
    static let sealedColumns: [(table: String, id: String, column: String, context: @Sendable (String) -> String)] = [
        ("signing_keys", "kid", "private_pem", privateKeyContext),
        ("providers", "id", "client_secret", providerSecretContext),
    ]

    public func reencryptSecrets() async throws -> Int {
        guard let box = secrets else { throw SecretBox.Failure.noKey(what: "keys reencrypt") }
        return try await backend.transaction { db in
            var changed = 0
            // Identifiers are the constants above, never input.
            for c in Self.sealedColumns {
                let rows = try await db.raw(
                    "SELECT \(unsafeRaw: c.id) AS id, \(unsafeRaw: c.column) AS secret FROM \(unsafeRaw: c.table) WHERE \(unsafeRaw: c.column) IS NOT NULL"
                ).all()
                for row in rows {
                    let id = try row.decode(column: "id", as: String.self)
                    let stored = try row.decode(column: "secret", as: String.self)
                    guard !box.isCurrent(stored) else { continue }
                    let context = c.context(id)
                    let resealed = try box.seal(try box.open(stored, context: context), context: context)
                    try await db.raw(
                        "UPDATE \(unsafeRaw: c.table) SET \(unsafeRaw: c.column) = \(bind: resealed) WHERE \(unsafeRaw: c.id) = \(bind: id)"
                    ).run()
                    changed += 1
                }
            }
            return changed
        }
    }

    public func insertFirstKey(_ key: SigningKeyRecord) async throws -> SigningKeyRecord {
        let isPostgres = backend.isPostgres
        try await backend.transaction { db in
            if isPostgres { try await db.raw("LOCK TABLE signing_keys IN EXCLUSIVE MODE").run() }
            let active = try await db.raw(
                "SELECT kid FROM signing_keys WHERE deactivated_at IS NULL AND retired_at IS NULL"
            ).all()
            if active.isEmpty { try await self.insertKey(key, db) }
        }
        return try await listKeys().last { $0.deactivatedAt == nil && $0.retiredAt == nil } ?? key
    }

    public func retireKeys(kids: [String], at time: Int64) async throws {
        guard !kids.isEmpty else { return }
        try await backend.transaction { db in
            for kid in kids {
                try await db.raw(
                    "UPDATE signing_keys SET retired_at = \(bind: time), private_pem = NULL WHERE kid = \(bind: kid) AND retired_at IS NULL"
                ).run()
            }
        }
    }

    public func raiseKeyRetention(atLeast seconds: Int64) async throws -> Int64 {
        try await backend.transaction { db in
            let row = try await db.raw(
                """
                INSERT INTO gatehouse_settings (name, value) VALUES ('key_retention', \(bind: seconds))
                ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > gatehouse_settings.value
                    THEN excluded.value ELSE gatehouse_settings.value END
                RETURNING value
                """
            ).first()
            return try row?.decode(column: "value", as: Int64.self) ?? seconds
        }
    }

    public func keyRetention() async throws -> Int64? {
        try await backend.read { db in
            try await db.raw("SELECT value FROM gatehouse_settings WHERE name = 'key_retention'").first()?
                .decode(column: "value", as: Int64.self)
        }
    }

    // MARK: Grants and tokens

    private static func insertRefreshToken(_ t: RefreshTokenRecord, _ db: any SQLDatabase) async throws {
        try await db.raw(
            """
            INSERT INTO refresh_tokens (hash, grant_id, client_id, user_id, scope, resources, issued_at,
                expires_at, used_at, sealed_successor)
            VALUES (\(bind: t.hash), \(bind: t.grantID), \(bind: t.clientID), \(bind: t.userID),
                \(bind: t.scope.description), \(bind: JSONList.encode(t.resources)), \(bind: t.issuedAt),
                \(bind: t.expiresAt), \(bind: t.usedAt), \(bind: t.sealedSuccessor))
            """
        ).run()
    }

    public func insertGrant(_ g: GrantRecord, refreshToken: RefreshTokenRecord?) async throws {
        try await backend.transaction { db in
            try await Self.insertGrant(g, db)
            if let refreshToken { try await Self.insertRefreshToken(refreshToken, db) }
        }
    }

    private static func insertGrant(_ g: GrantRecord, _ db: any SQLDatabase) async throws {
        try await db.raw(
            """
            INSERT INTO grants (id, client_id, user_id, scope, created_at, revoked_at, auth_time, session_id, live_until)
            VALUES (\(bind: g.id), \(bind: g.clientID), \(bind: g.userID), \(bind: g.scope.description),
                \(bind: g.createdAt), \(bind: g.revokedAt), \(bind: g.authTime), \(bind: g.sessionID), \(bind: g.liveUntil))
            """
        ).run()
    }

    static func decodeGrant(_ row: any SQLRow) throws -> GrantRecord {
        GrantRecord(
            id: try row.decode(column: "id", as: String.self),
            clientID: try row.decode(column: "client_id", as: String.self),
            userID: try row.decode(column: "user_id", as: String?.self),
            scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            revokedAt: try row.decode(column: "revoked_at", as: Int64?.self),
            authTime: try row.decode(column: "auth_time", as: Int64?.self),
            sessionID: try row.decode(column: "session_id", as: String?.self),
            liveUntil: try row.decode(column: "live_until", as: Int64?.self))
    }

    public func grant(id: String) async throws -> GrantRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM grants WHERE id = \(bind: id)").first().map(Self.decodeGrant)
        }
    }

    public func refreshToken(hash: String) async throws -> RefreshTokenRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM refresh_tokens WHERE hash = \(bind: hash)").first().map(Self.decodeRefresh)
        }
    }

    static func decodeRefresh(_ row: any SQLRow) throws -> RefreshTokenRecord {
        RefreshTokenRecord(
            hash: try row.decode(column: "hash", as: String.self),
            grantID: try row.decode(column: "grant_id", as: String.self),
            clientID: try row.decode(column: "client_id", as: String.self),
            userID: try row.decode(column: "user_id", as: String?.self),
            scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
            resources: JSONList.decode(try row.decode(column: "resources", as: String.self)),
            issuedAt: try row.decode(column: "issued_at", as: Int64.self),
            expiresAt: try row.decode(column: "expires_at", as: Int64.self),
            usedAt: try row.decode(column: "used_at", as: Int64?.self),
            sealedSuccessor: try row.decode(column: "sealed_successor", as: String?.self))
    }

    public func rotateRefreshToken(hash: String, usedAt: Int64, sealedSuccessor: String?, next: RefreshTokenRecord)
        async throws -> RotationOutcome
    {
        try await backend.transaction { db in
            // The conditional UPDATE is the single point of truth: of N concurrent uses exactly one
            // matches `used_at IS NULL` (SQLite: one writer; PostgreSQL: the row lock, then re-check).
            let won = try await db.raw(
                """
                UPDATE refresh_tokens SET used_at = \(bind: usedAt), sealed_successor = \(bind: sealedSuccessor)
                WHERE hash = \(bind: hash) AND used_at IS NULL RETURNING hash
                """
            ).all()
            if won.isEmpty {
                guard let current = try await db.raw("SELECT * FROM refresh_tokens WHERE hash = \(bind: hash)").first()
                else { throw StorageError.notFound("refresh token") }
                return .alreadyUsed(try Self.decodeRefresh(current))
            }
            try await Self.insertRefreshToken(next, db)
            return .rotated
        }
    }

    public func revokeGrant(id: String, at time: Int64) async throws {
        try await backend.transaction { db in
            try await db.raw("UPDATE grants SET revoked_at = \(bind: time) WHERE id = \(bind: id) AND revoked_at IS NULL").run()
        }
    }

    public func revokeAccessToken(jti: String, expiresAt: Int64) async throws {
        try await backend.transaction { db in
            try await db.raw(
                "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (\(bind: jti), \(bind: expiresAt)) ON CONFLICT DO NOTHING"
            ).run()
        }
    }

    public func isAccessTokenRevoked(jti: String, grantID: String?, clientID: String) async throws -> Bool {
        try await backend.read { db in
            // One round trip: revoked jti, revoked grant, or deleted client.
            let row = try await db.raw(
                """
                SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = \(bind: jti))
                     + (SELECT COUNT(*) FROM grants WHERE id = \(bind: grantID ?? "") AND revoked_at IS NOT NULL)
                     + (SELECT COUNT(*) FROM clients WHERE id = \(bind: clientID)) * -1 + 1 AS n
                """
            ).first()
            return try (row?.decode(column: "n", as: Int64.self) ?? 1) != 0
        }
    }

    public func purgeExpired(before time: Int64) async throws -> Int {
        try await backend.transaction { db in
            let a = try await db.raw("DELETE FROM refresh_tokens WHERE expires_at < \(bind: time) RETURNING hash").all().count
            let b = try await db.raw("DELETE FROM revoked_access_tokens WHERE expires_at < \(bind: time) RETURNING jti").all().count
            let c = try await db.raw("DELETE FROM sessions WHERE expires_at < \(bind: time) RETURNING hash").all().count
                + db.raw("DELETE FROM upstream_flows WHERE expires_at < \(bind: time) RETURNING state_hash").all().count
                // Delivered or abandoned webhook events are kept a week for inspection.
                + db.raw(
                    "DELETE FROM webhook_outbox WHERE COALESCE(delivered_at, failed_at) < \(bind: time - 7 * 86_400) RETURNING id"
                ).all().count
            // Unused codes go at expiry; used ones are kept 10 minutes (the longest code lifetime) more, so a
            // late replay still finds its code and revokes its grant.
            let d = try await db.raw(
                """
                DELETE FROM authorization_codes WHERE (used_at IS NULL AND expires_at < \(bind: time))
                    OR expires_at < \(bind: time - 600) RETURNING hash
                """
            ).all().count
            let e = try await db.raw("DELETE FROM failure_counters WHERE expires_at <= \(bind: time) RETURNING key").all().count
            try await db.raw(
                "UPDATE refresh_tokens SET sealed_successor = NULL WHERE sealed_successor IS NOT NULL AND used_at < \(bind: time - 300)"
            ).run()
            return a + b + c + d + e
        }
    }
}

// MARK: Browser sign-in

extension SQLStore {
    public func insertSession(_ s: SessionRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO sessions (hash, id, user_id, auth_time, created_at, expires_at)
                VALUES (\(bind: s.hash), \(bind: s.id), \(bind: s.userID), \(bind: s.authTime), \(bind: s.createdAt),
                    \(bind: s.expiresAt))
                """
            ).run()
        }
    }

    public func session(hash: String) async throws -> SessionRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM sessions WHERE hash = \(bind: hash)").first().map(Self.decodeSession)
        }
    }

    public func session(id: String, at time: Int64) async throws -> SessionRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM sessions WHERE id = \(bind: id) AND expires_at > \(bind: time)").first()
                .map(Self.decodeSession)
        }
    }

    static func decodeSession(_ row: any SQLRow) throws -> SessionRecord {
        SessionRecord(
            hash: try row.decode(column: "hash", as: String.self),
            id: try row.decode(column: "id", as: String.self),
            userID: try row.decode(column: "user_id", as: String.self),
            authTime: try row.decode(column: "auth_time", as: Int64.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            expiresAt: try row.decode(column: "expires_at", as: Int64.self))
    }

    public func deleteSession(hash: String) async throws {
        try await backend.transaction { db in
            try await db.raw("DELETE FROM sessions WHERE hash = \(bind: hash)").run()
        }
    }

    public func insertAuthorizationCode(_ c: AuthorizationCodeRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO authorization_codes (hash, client_id, user_id, redirect_uri, redirect_uri_sent, scope,
                    resources, code_challenge, nonce, auth_time, session_id, grant_id, issue_refresh, created_at,
                    expires_at, used_at)
                VALUES (\(bind: c.hash), \(bind: c.clientID), \(bind: c.userID), \(bind: c.redirectURI),
                    \(bind: c.redirectURIWasSent ? 1 : 0), \(bind: c.scope.description), \(bind: JSONList.encode(c.resources)),
                    \(bind: c.codeChallenge), \(bind: c.nonce), \(bind: c.authTime), \(bind: c.sessionID), \(bind: c.grantID),
                    \(bind: c.issueRefreshToken ? 1 : 0), \(bind: c.createdAt), \(bind: c.expiresAt), \(bind: c.usedAt))
                """
            ).run()
        }
    }

    public func authorizationCode(hash: String) async throws -> AuthorizationCodeRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM authorization_codes WHERE hash = \(bind: hash)").first().map { row in
                AuthorizationCodeRecord(
                    hash: try row.decode(column: "hash", as: String.self),
                    clientID: try row.decode(column: "client_id", as: String.self),
                    userID: try row.decode(column: "user_id", as: String.self),
                    redirectURI: try row.decode(column: "redirect_uri", as: String.self),
                    redirectURIWasSent: try row.decode(column: "redirect_uri_sent", as: Int.self) != 0,
                    scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
                    resources: JSONList.decode(try row.decode(column: "resources", as: String.self)),
                    codeChallenge: try row.decode(column: "code_challenge", as: String?.self),
                    nonce: try row.decode(column: "nonce", as: String?.self),
                    authTime: try row.decode(column: "auth_time", as: Int64.self),
                    sessionID: try row.decode(column: "session_id", as: String?.self),
                    grantID: try row.decode(column: "grant_id", as: String.self),
                    issueRefreshToken: try row.decode(column: "issue_refresh", as: Int.self) != 0,
                    createdAt: try row.decode(column: "created_at", as: Int64.self),
                    expiresAt: try row.decode(column: "expires_at", as: Int64.self),
                    usedAt: try row.decode(column: "used_at", as: Int64?.self))
            }
        }
    }

    public func redeemAuthorizationCode(
        hash: String, at time: Int64, grant: GrantRecord, refreshToken: RefreshTokenRecord?
    ) async throws -> Bool {
        try await backend.transaction { db in
            // As with refresh rotation, the conditional UPDATE decides: of N concurrent redemptions one
            // matches `used_at IS NULL`; its grant commits together with the mark.
            let won = try await db.raw(
                "UPDATE authorization_codes SET used_at = \(bind: time) WHERE hash = \(bind: hash) AND used_at IS NULL RETURNING hash"
            ).all()
            guard !won.isEmpty else { return false }
            try await Self.insertGrant(grant, db)
            if let refreshToken { try await Self.insertRefreshToken(refreshToken, db) }
            return true
        }
    }

    public func consent(userID: String, clientID: String) async throws -> ConsentRecord? {
        try await backend.read { db in
            try await db.raw(
                "SELECT * FROM consents WHERE user_id = \(bind: userID) AND client_id = \(bind: clientID)"
            ).first().map { row in
                ConsentRecord(
                    userID: try row.decode(column: "user_id", as: String.self),
                    clientID: try row.decode(column: "client_id", as: String.self),
                    scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
                    createdAt: try row.decode(column: "created_at", as: Int64.self))
            }
        }
    }

    public func saveConsent(_ c: ConsentRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO consents (user_id, client_id, scope, created_at)
                VALUES (\(bind: c.userID), \(bind: c.clientID), \(bind: c.scope.description), \(bind: c.createdAt))
                ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, created_at = excluded.created_at
                """
            ).run()
        }
    }

    public func activeGrants(userID: String, createdAfter: Int64, at time: Int64) async throws -> [GrantRecord] {
        try await backend.read { db in
            try await db.raw(
                """
                SELECT * FROM grants g WHERE g.user_id = \(bind: userID) AND g.revoked_at IS NULL
                  AND (g.created_at > \(bind: createdAfter) OR g.live_until > \(bind: time) OR EXISTS (SELECT 1 FROM refresh_tokens r
                       WHERE r.grant_id = g.id AND r.used_at IS NULL AND r.expires_at > \(bind: time)))
                ORDER BY g.created_at DESC, g.id
                """
            ).all().map(Self.decodeGrant)
        }
    }

    public func revokeGrants(userID: String, clientID: String, at time: Int64) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                UPDATE grants SET revoked_at = \(bind: time)
                WHERE user_id = \(bind: userID) AND client_id = \(bind: clientID) AND revoked_at IS NULL
                """
            ).run()
            try await db.raw(
                "DELETE FROM consents WHERE user_id = \(bind: userID) AND client_id = \(bind: clientID)"
            ).run()
        }
    }
}

// MARK: Federation and webhooks

extension SQLStore {
    public func insertProvider(_ p: ProviderRecord) async throws {
        let secret = try sealSecret(p.clientSecret, context: Self.providerSecretContext(p.id))
        let inserted = try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO providers (id, kind, name, client_id, client_secret, issuer, authorize_url, token_url,
                    userinfo_url, scope, claims, link_by_email, created_at, whoami_url, introspection_url, allow_foreign_tokens)
                VALUES (\(bind: p.id), \(bind: p.kind.rawValue), \(bind: p.name), \(bind: p.clientID),
                    \(bind: secret),
                    \(bind: p.issuer), \(bind: p.authorizeURL), \(bind: p.tokenURL), \(bind: p.userinfoURL),
                    \(bind: p.scope.description), \(bind: JSONObject.encode(p.claims)), \(bind: p.linkByEmail ? 1 : 0),
                    \(bind: p.createdAt), \(bind: p.whoamiURL), \(bind: p.introspectionURL), \(bind: p.allowForeignTokens ? 1 : 0))
                ON CONFLICT DO NOTHING RETURNING id
                """
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("provider \(p.id)") }
    }

    public func listProviders() async throws -> [ProviderRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM providers ORDER BY created_at, id").all().map { row in
                let kind = try row.decode(column: "kind", as: String.self)
                let id = try row.decode(column: "id", as: String.self)
                return ProviderRecord(
                    id: id, kind: ProviderKind(rawValue: kind) ?? .oauth2,
                    name: try row.decode(column: "name", as: String.self),
                    clientID: try row.decode(column: "client_id", as: String.self),
                    clientSecret: try openSecret(
                        try row.decode(column: "client_secret", as: String.self), context: Self.providerSecretContext(id)),
                    issuer: try row.decode(column: "issuer", as: String?.self),
                    authorizeURL: try row.decode(column: "authorize_url", as: String?.self),
                    tokenURL: try row.decode(column: "token_url", as: String?.self),
                    userinfoURL: try row.decode(column: "userinfo_url", as: String?.self),
                    scope: Scope(parsing: try row.decode(column: "scope", as: String.self)) ?? .empty,
                    claims: JSONObject.decode([String: String].self, try row.decode(column: "claims", as: String.self)) ?? [:],
                    linkByEmail: try row.decode(column: "link_by_email", as: Int.self) != 0,
                    createdAt: try row.decode(column: "created_at", as: Int64.self),
                    whoamiURL: try row.decode(column: "whoami_url", as: String?.self),
                    introspectionURL: try row.decode(column: "introspection_url", as: String?.self),
                    allowForeignTokens: try row.decode(column: "allow_foreign_tokens", as: Int.self) != 0)
            }
        }
    }

    public func deleteProvider(id: String) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw("DELETE FROM providers WHERE id = \(bind: id) RETURNING id").all().isEmpty
        }
    }

    static func decodeIdentity(_ row: any SQLRow) throws -> IdentityRecord {
        IdentityRecord(
            providerID: try row.decode(column: "provider_id", as: String.self),
            subject: try row.decode(column: "subject", as: String.self),
            userID: try row.decode(column: "user_id", as: String.self),
            username: try row.decode(column: "username", as: String?.self),
            email: try row.decode(column: "email", as: String?.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self))
    }

    public func identity(providerID: String, subject: String) async throws -> IdentityRecord? {
        try await backend.read { db in
            try await db.raw(
                "SELECT * FROM identities WHERE provider_id = \(bind: providerID) AND subject = \(bind: subject)"
            ).first().map(Self.decodeIdentity)
        }
    }

    public func identities(userID: String) async throws -> [IdentityRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM identities WHERE user_id = \(bind: userID) ORDER BY created_at, provider_id").all()
                .map(Self.decodeIdentity)
        }
    }

    public func insertIdentity(_ i: IdentityRecord) async throws {
        try await backend.transaction { db in try await Self.insertIdentity(i, db) }
    }

    static func insertIdentity(_ i: IdentityRecord, _ db: any SQLDatabase) async throws {
        let inserted = try await db.raw(
                """
                INSERT INTO identities (provider_id, subject, user_id, username, email, created_at)
                VALUES (\(bind: i.providerID), \(bind: i.subject), \(bind: i.userID), \(bind: i.username), \(bind: i.email),
                    \(bind: i.createdAt))
                ON CONFLICT DO NOTHING RETURNING subject
                """
            ).all().count
        guard inserted == 1 else { throw StorageError.duplicate("identity \(i.providerID)/\(i.subject)") }
    }

    public func deleteIdentity(providerID: String, subject: String, userID: String) async throws -> Bool {
        let isPostgres = backend.isPostgres
        return try await backend.transaction { db in
            // Concurrent unlinks of one user's identities are serialised on the user row (SQLite: one writer),
            // so "never the last way to sign in" holds.
            if isPostgres { _ = try await db.raw("SELECT id FROM users WHERE id = \(bind: userID) FOR UPDATE").all() }
            return try await !db.raw(
                """
                DELETE FROM identities WHERE provider_id = \(bind: providerID) AND subject = \(bind: subject)
                    AND user_id = \(bind: userID)
                    AND ((SELECT password_hash FROM users WHERE id = \(bind: userID)) IS NOT NULL
                         OR (SELECT COUNT(*) FROM identities WHERE user_id = \(bind: userID)) > 1)
                RETURNING subject
                """
            ).all().isEmpty
        }
    }

    public func user(email: String) async throws -> UserRecord? {
        try await backend.read { db in
            let rows = try await db.raw("SELECT * FROM users WHERE email_key = \(bind: email.lowercased()) LIMIT 2").all()
            return rows.count == 1 ? try Self.decodeUser(rows[0]) : nil
        }
    }

    public func insertUpstreamFlow(_ f: UpstreamFlowRecord, limitPerAddress: Int, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            if let address = f.addressKey {
                try await db.raw(
                    "DELETE FROM upstream_flows WHERE address_key = \(bind: address) AND expires_at <= \(bind: time)"
                ).run()
                let pending = try await db.raw(
                    "SELECT COUNT(*) AS n FROM upstream_flows WHERE address_key = \(bind: address)"
                ).first()?.decode(column: "n", as: Int.self) ?? 0
                guard pending < limitPerAddress else { return false }
            }
            try await db.raw(
                """
                INSERT INTO upstream_flows (state_hash, provider_id, browser_hash, code_verifier, nonce, return_to,
                    link_user_id, expires_at, address_key)
                VALUES (\(bind: f.stateHash), \(bind: f.providerID), \(bind: f.browserHash), \(bind: f.codeVerifier),
                    \(bind: f.nonce), \(bind: f.returnTo), \(bind: f.linkUserID), \(bind: f.expiresAt), \(bind: f.addressKey))
                """
            ).run()
            return true
        }
    }

    public func takeUpstreamFlow(stateHash: String) async throws -> UpstreamFlowRecord? {
        try await backend.transaction { db in
            try await db.raw("DELETE FROM upstream_flows WHERE state_hash = \(bind: stateHash) RETURNING *").first().map { row in
                UpstreamFlowRecord(
                    stateHash: try row.decode(column: "state_hash", as: String.self),
                    providerID: try row.decode(column: "provider_id", as: String.self),
                    browserHash: try row.decode(column: "browser_hash", as: String.self),
                    codeVerifier: try row.decode(column: "code_verifier", as: String.self),
                    nonce: try row.decode(column: "nonce", as: String.self),
                    returnTo: try row.decode(column: "return_to", as: String.self),
                    linkUserID: try row.decode(column: "link_user_id", as: String?.self),
                    expiresAt: try row.decode(column: "expires_at", as: Int64.self),
                    addressKey: try row.decode(column: "address_key", as: String?.self))
            }
        }
    }

    public func enqueueEvents(_ records: [OutboxRecord]) async throws {
        guard !records.isEmpty else { return }
        try await backend.transaction { db in
            for r in records {
                try await db.raw(
                    """
                    INSERT INTO webhook_outbox (id, event, url, payload, attempts, next_attempt_at, created_at,
                        delivered_at, failed_at, last_error)
                    VALUES (\(bind: r.id), \(bind: r.event), \(bind: r.url), \(bind: r.payload), \(bind: r.attempts),
                        \(bind: r.nextAttemptAt), \(bind: r.createdAt), \(bind: r.deliveredAt), \(bind: r.failedAt),
                        \(bind: r.lastError))
                    """
                ).run()
            }
        }
    }

    static func decodeOutbox(_ row: any SQLRow) throws -> OutboxRecord {
        OutboxRecord(
            id: try row.decode(column: "id", as: String.self), event: try row.decode(column: "event", as: String.self),
            url: try row.decode(column: "url", as: String.self), payload: try row.decode(column: "payload", as: String.self),
            attempts: try row.decode(column: "attempts", as: Int.self),
            nextAttemptAt: try row.decode(column: "next_attempt_at", as: Int64.self),
            createdAt: try row.decode(column: "created_at", as: Int64.self),
            deliveredAt: try row.decode(column: "delivered_at", as: Int64?.self),
            failedAt: try row.decode(column: "failed_at", as: Int64?.self),
            lastError: try row.decode(column: "last_error", as: String?.self))
    }

    public func claimDueEvents(at time: Int64, limit: Int, lease: Int64) async throws -> [OutboxRecord] {
        try await backend.transaction { db in
            let due = try await db.raw(
                """
                SELECT * FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL
                    AND next_attempt_at <= \(bind: time) ORDER BY next_attempt_at, created_at LIMIT \(bind: limit)
                """
            ).all().map(Self.decodeOutbox)
            var claimed: [OutboxRecord] = []
            for r in due {
                // Conditional: another instance may have claimed the row since the SELECT.
                let won = try await db.raw(
                    """
                    UPDATE webhook_outbox SET next_attempt_at = \(bind: time + lease)
                    WHERE id = \(bind: r.id) AND next_attempt_at = \(bind: r.nextAttemptAt) AND delivered_at IS NULL RETURNING id
                    """
                ).all()
                if !won.isEmpty { claimed.append(r) }
            }
            return claimed
        }
    }

    public func recordDelivery(_ r: OutboxRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                UPDATE webhook_outbox SET attempts = \(bind: r.attempts), next_attempt_at = \(bind: r.nextAttemptAt),
                    delivered_at = \(bind: r.deliveredAt), failed_at = \(bind: r.failedAt), last_error = \(bind: r.lastError)
                WHERE id = \(bind: r.id)
                """
            ).run()
        }
    }

    public func outbox(id: String) async throws -> OutboxRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM webhook_outbox WHERE id = \(bind: id)").first().map(Self.decodeOutbox)
        }
    }
}

// MARK: Accounts

extension SQLStore {
    public func insertGroup(_ g: GroupRecord) async throws {
        let inserted = try await backend.transaction { db in
            try await db.raw(
                "INSERT INTO user_groups (name, created_at) VALUES (\(bind: g.name), \(bind: g.createdAt)) ON CONFLICT DO NOTHING RETURNING name"
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("group \(g.name)") }
    }

    public func group(name: String) async throws -> GroupRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM user_groups WHERE name = \(bind: name)").first().map { row in
                GroupRecord(
                    name: try row.decode(column: "name", as: String.self),
                    createdAt: try row.decode(column: "created_at", as: Int64.self))
            }
        }
    }

    public func saveMembership(_ m: MembershipRecord) async throws {
        try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO memberships (group_name, user_id, role) VALUES (\(bind: m.group), \(bind: m.userID), \(bind: m.role))
                ON CONFLICT (group_name, user_id) DO UPDATE SET role = excluded.role
                """
            ).run()
        }
    }

    public func memberships(userID: String) async throws -> [MembershipRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM memberships WHERE user_id = \(bind: userID) ORDER BY group_name").all().map { row in
                MembershipRecord(
                    group: try row.decode(column: "group_name", as: String.self),
                    userID: try row.decode(column: "user_id", as: String.self),
                    role: try row.decode(column: "role", as: String.self))
            }
        }
    }

    public func insertService(_ s: ServiceRecord) async throws {
        let inserted = try await backend.transaction { db in
            try await db.raw(
                """
                INSERT INTO services (name, permissions_url, created_at) VALUES (\(bind: s.name), \(bind: s.permissionsURL),
                    \(bind: s.createdAt)) ON CONFLICT DO NOTHING RETURNING name
                """
            ).all().count
        }
        guard inserted == 1 else { throw StorageError.duplicate("service \(s.name)") }
    }

    public func service(name: String) async throws -> ServiceRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM services WHERE name = \(bind: name)").first().map { row in
                ServiceRecord(
                    name: try row.decode(column: "name", as: String.self),
                    permissionsURL: try row.decode(column: "permissions_url", as: String?.self),
                    createdAt: try row.decode(column: "created_at", as: Int64.self))
            }
        }
    }

    public func grantPermissions(service: String, userID: String, permissions: [String]) async throws {
        try await backend.transaction { db in
            for p in permissions {
                try await db.raw(
                    """
                    INSERT INTO service_permissions (service, user_id, permission) VALUES (\(bind: service), \(bind: userID), \(bind: p))
                    ON CONFLICT DO NOTHING
                    """
                ).run()
            }
        }
    }

    public func permissions(service: String, userID: String) async throws -> [String] {
        try await backend.read { db in
            try await db.raw(
                "SELECT permission FROM service_permissions WHERE service = \(bind: service) AND user_id = \(bind: userID) ORDER BY permission"
            ).all().map { try $0.decode(column: "permission", as: String.self) }
        }
    }

    public func changeUsername(userID: String, to username: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            let taken = try await db.raw(
                "SELECT id FROM users WHERE username_key = \(bind: username.lowercased()) AND id <> \(bind: userID)"
            ).all()
            guard taken.isEmpty else { throw StorageError.duplicate("username \(username)") }
            // Only once: the condition and the update are one statement.
            return try await !db.raw(
                """
                UPDATE users SET username = \(bind: username), username_key = \(bind: username.lowercased()),
                    username_changed_at = \(bind: time), updated_at = \(bind: time)
                WHERE id = \(bind: userID) AND username_changed_at IS NULL RETURNING id
                """
            ).all().isEmpty
        }
    }

    public func usernameWasChanged(userID: String) async throws -> Bool {
        try await backend.read { db in
            try await db.raw("SELECT username_changed_at FROM users WHERE id = \(bind: userID)").first()?
                .decode(column: "username_changed_at", as: Int64?.self) != nil
        }
    }
}

/// A Codable value stored as JSON text.
enum JSONObject {
    static func encode<T: Encodable>(_ value: T) -> String {
        (try? String(decoding: JSONEncoder.sortedWithoutEscapingSlashes.encode(value), as: UTF8.self)) ?? "{}"
    }
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) -> T? {
        try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

/// The database could not be opened; the message says where and why, without the password.
public struct SQLStoreError: Error, CustomStringConvertible {
    public let description: String
}

/// Lists stored as JSON text (portable across SQLite and PostgreSQL).
enum JSONList {
    static func encode(_ list: [String]) -> String {
        (try? String(decoding: JSONEncoder().encode(list), as: UTF8.self)) ?? "[]"
    }
    static func decode(_ text: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }
}

// MARK: Failure counters

extension SQLStore {
    public func recordFailure(key: String, at time: Int64, window: Int64) async throws -> FailureCount {
        let hashed = Secrets.hash(key)
        return try await backend.transaction { db in
            // One statement: the new window, or one more failure in the running one (SET reads the old row).
            let row = try await db.raw(
                """
                INSERT INTO failure_counters (key, failures, window_start, last_failure_at, expires_at)
                VALUES (\(bind: hashed), 1, \(bind: time), \(bind: time), \(bind: time + window))
                ON CONFLICT (key) DO UPDATE SET
                    failures = CASE WHEN failure_counters.expires_at <= \(bind: time) THEN 1 ELSE failure_counters.failures + 1 END,
                    window_start = CASE WHEN failure_counters.expires_at <= \(bind: time) THEN \(bind: time)
                        ELSE failure_counters.window_start END,
                    expires_at = CASE WHEN failure_counters.expires_at <= \(bind: time) THEN \(bind: time + window)
                        ELSE failure_counters.expires_at END,
                    last_failure_at = \(bind: time)
                RETURNING failures, window_start, last_failure_at
                """
            ).first()
            guard let row else { throw StorageError.notFound("failure counter") }
            return try Self.decodeFailureCount(row)
        }
    }

    static func decodeFailureCount(_ row: any SQLRow) throws -> FailureCount {
        FailureCount(
            failures: try row.decode(column: "failures", as: Int.self),
            windowStart: try row.decode(column: "window_start", as: Int64.self),
            lastFailureAt: try row.decode(column: "last_failure_at", as: Int64.self))
    }

    public func failureCount(key: String, at time: Int64) async throws -> FailureCount? {
        let hashed = Secrets.hash(key)
        return try await backend.read { db in
            try await db.raw(
                "SELECT * FROM failure_counters WHERE key = \(bind: hashed) AND expires_at > \(bind: time)"
            ).first().map(Self.decodeFailureCount)
        }
    }

    public func clearFailures(key: String) async throws {
        let hashed = Secrets.hash(key)
        try await backend.transaction { db in
            try await db.raw("DELETE FROM failure_counters WHERE key = \(bind: hashed)").run()
        }
    }

    public func purgeFailures(before time: Int64) async throws -> Int {
        try await backend.transaction { db in
            try await db.raw("DELETE FROM failure_counters WHERE expires_at <= \(bind: time) RETURNING key").all().count
        }
    }
}
