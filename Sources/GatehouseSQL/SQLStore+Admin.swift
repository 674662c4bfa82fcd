import Foundation
import GatehouseCore
import SQLKit

// MARK: AdminStore

/// `AdminStore` over SQL.
extension SQLStore {
    /// The smallest string greater than every string starting with `prefix` in byte order (UTF-8 of
    /// U+10FFFF is above every other character's).
    static func prefixUpperBound(_ prefix: String) -> String { prefix + "\u{10FFFF}" }

    public func listUsers(_ q: UserQuery) async throws -> [UserRecord] {
        let isPostgres = backend.isPostgres
        // Byte order on both backends ("C" on PostgreSQL), so a prefix is one index range.
        let c = isPostgres ? #" COLLATE "C""# : ""
        let limit = max(1, q.limit)
        /// The conditions every branch shares (alias `b`): group, status, the page's keyset position.
        @Sendable func filters(_ sql: inout SQLQueryString) {
            if let group = q.group {
                sql.appendInterpolation(unsafeRaw: " JOIN memberships mm ON mm.user_id = b.id AND mm.group_name = ")
                sql.appendInterpolation(bind: group)
            }
            sql.appendInterpolation(unsafeRaw: " WHERE 1 = 1")
            if let disabled = q.disabled {
                sql.appendInterpolation(unsafeRaw: disabled ? " AND b.disabled_at IS NOT NULL" : " AND b.disabled_at IS NULL")
            }
            if let after = q.after {
                sql.appendInterpolation(unsafeRaw: " AND b.username_key\(c) > ")
                sql.appendInterpolation(bind: after)
            }
        }
        return try await backend.read { db in
            guard let prefix = q.prefix?.lowercased(), !prefix.isEmpty else {
                var sql = SQLQueryString("SELECT b.* FROM users b")
                filters(&sql)
                sql.appendInterpolation(unsafeRaw: " ORDER BY b.username_key\(c) LIMIT ")
                sql.appendInterpolation(bind: limit)
                return try await db.raw(sql).all().map(Self.decodeUser)
            }
            // A prefix of the username, email or name: one branch per column, each an index range that yields
            // at most `limit` keys in username order (covering indexes: no row is read), merged and cut to
            // `limit`; only those rows are then read. Far cheaper than sorting every match when thousands match.
            let key = isPostgres ? "id" : "rowid"
            let upper = Self.prefixUpperBound(prefix)
            var sql = SQLQueryString("SELECT u.* FROM users u WHERE u.\(unsafeRaw: key) IN (SELECT r FROM (")
            for (i, column) in ["username_key", "email_key", "name_key"].enumerated() {
                if i > 0 { sql.appendInterpolation(unsafeRaw: " UNION ") }
                sql.appendInterpolation(unsafeRaw: "SELECT * FROM (SELECT b.\(key) AS r, b.username_key AS k FROM users b")
                filters(&sql)
                sql.appendInterpolation(unsafeRaw: " AND b.\(column)\(c) >= ")
                sql.appendInterpolation(bind: prefix)
                sql.appendInterpolation(unsafeRaw: " AND b.\(column)\(c) < ")
                sql.appendInterpolation(bind: upper)
                sql.appendInterpolation(unsafeRaw: " ORDER BY b.username_key\(c) LIMIT ")
                sql.appendInterpolation(bind: limit)
                sql.appendInterpolation(unsafeRaw: ") AS s\(i)")
            }
            sql.appendInterpolation(unsafeRaw: ") AS m ORDER BY k\(c) LIMIT ")
            sql.appendInterpolation(bind: limit)
            sql.appendInterpolation(unsafeRaw: ") ORDER BY u.username_key\(c)")
            return try await db.raw(sql).all().map(Self.decodeUser)
        }
    }

    public func updateUser(_ u: UserRecord) async throws -> Bool {
        try await backend.transaction { db in
            let taken = try await db.raw(
                "SELECT id FROM users WHERE username_key = \(bind: u.username.lowercased()) AND id <> \(bind: u.id)"
            ).all()
            guard taken.isEmpty else { throw StorageError.duplicate("username \(u.username)") }
            return try await !db.raw(
                """
                UPDATE users SET username = \(bind: u.username), username_key = \(bind: u.username.lowercased()),
                    email = \(bind: u.email), email_key = \(bind: u.email?.lowercased()), name = \(bind: u.name),
                    name_key = \(bind: u.name?.lowercased()), profile = \(bind: JSONObject.encode(u.profile)),
                    updated_at = \(bind: u.updatedAt)
                WHERE id = \(bind: u.id) RETURNING id
                """
            ).all().isEmpty
        }
    }

    public func setUserDisabled(id: String, at time: Int64?, now: Int64) async throws -> Bool {
        try await backend.transaction { db in
            let found = try await !db.raw(
                "UPDATE users SET disabled_at = \(bind: time), updated_at = \(bind: now) WHERE id = \(bind: id) RETURNING id"
            ).all().isEmpty
            guard found, time != nil else { return found }
            try await db.raw("DELETE FROM sessions WHERE user_id = \(bind: id)").run()
            // Unused codes go too (the code grant refuses a disabled user's code as well).
            try await db.raw("DELETE FROM authorization_codes WHERE user_id = \(bind: id) AND used_at IS NULL").run()
            try await db.raw(
                "UPDATE grants SET revoked_at = \(bind: now) WHERE user_id = \(bind: id) AND revoked_at IS NULL"
            ).run()
            return true
        }
    }

    public func setPassword(userID: String, hash: String?, resetRequired: Bool, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                """
                UPDATE users SET password_hash = \(bind: hash), password_reset_required = \(bind: resetRequired ? 1 : 0),
                    updated_at = \(bind: time)
                WHERE id = \(bind: userID) RETURNING id
                """
            ).all().isEmpty
        }
    }

    public func deleteUser(id: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            let deleted = try await !db.raw("DELETE FROM users WHERE id = \(bind: id) RETURNING id").all().isEmpty
            guard deleted else { return false }
            try await db.raw("INSERT INTO deleted_users (id, deleted_at) VALUES (\(bind: id), \(bind: time))").run()
            for statement: SQLQueryString in [
                "DELETE FROM sessions WHERE user_id = \(bind: id)",
                "DELETE FROM authorization_codes WHERE user_id = \(bind: id)",
                "DELETE FROM refresh_tokens WHERE user_id = \(bind: id)",
                "DELETE FROM grants WHERE user_id = \(bind: id)",
                "DELETE FROM consents WHERE user_id = \(bind: id)",
                "DELETE FROM identities WHERE user_id = \(bind: id)",
                "DELETE FROM memberships WHERE user_id = \(bind: id)",
                "DELETE FROM service_permissions WHERE user_id = \(bind: id)",
            ] {
                try await db.raw(statement).run()
            }
            return true
        }
    }

    public func isDeletedUser(id: String) async throws -> Bool {
        try await backend.read { db in
            try await !db.raw("SELECT id FROM deleted_users WHERE id = \(bind: id)").all().isEmpty
        }
    }

    public func sessions(userID: String, at time: Int64) async throws -> [SessionRecord] {
        try await backend.read { db in
            try await db.raw(
                """
                SELECT * FROM sessions WHERE user_id = \(bind: userID) AND expires_at > \(bind: time)
                ORDER BY created_at DESC, id
                """
            ).all().map(Self.decodeSession)
        }
    }

    public func deleteSessions(userID: String) async throws -> Int {
        try await backend.transaction { db in
            try await db.raw("DELETE FROM sessions WHERE user_id = \(bind: userID) RETURNING hash").all().count
        }
    }

    // MARK: clients

    public func updateClient(_ c: ClientRecord) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                """
                UPDATE clients SET name = \(bind: c.name), redirect_uris = \(bind: JSONList.encode(c.redirectURIs)),
                    grant_types = \(bind: JSONList.encode(c.grantTypes)), scope = \(bind: c.scope.description),
                    default_scope = \(bind: c.defaultScope.description), resources = \(bind: JSONList.encode(c.resources)),
                    skip_consent = \(bind: c.skipConsent ? 1 : 0),
                    post_logout_redirect_uris = \(bind: JSONList.encode(c.postLogoutRedirectURIs)),
                    single_grant_per_user = \(bind: c.singleGrantPerUser ? 1 : 0),
                    legacy_redirect_state = \(bind: c.legacyRedirectState ? 1 : 0),
                    may_exchange_from = \(bind: JSONList.encode(c.mayExchangeFrom)), updated_at = \(bind: c.updatedAt)
                WHERE id = \(bind: c.id) RETURNING id
                """
            ).all().isEmpty
        }
    }

    public func rotateClientSecret(id: String, secretHash: String, previousUntil: Int64?, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            // With a grace period the current secret becomes the previous one; without, none stays valid.
            try await !db.raw(
                """
                UPDATE clients SET
                    previous_secret_hash = CASE WHEN \(bind: previousUntil == nil ? 0 : 1) = 1 THEN secret_hash ELSE NULL END,
                    previous_secret_expires_at = \(bind: previousUntil),
                    secret_hash = \(bind: secretHash), updated_at = \(bind: time)
                WHERE id = \(bind: id) AND secret_hash IS NOT NULL RETURNING id
                """
            ).all().isEmpty
        }
    }

    // MARK: scopes

    public func scope(name: String) async throws -> ScopeRecord? {
        try await backend.read { db in
            try await db.raw("SELECT * FROM scopes WHERE name = \(bind: name)").first().map(Self.decodeScope)
        }
    }

    public func updateScope(_ s: ScopeRecord) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                """
                UPDATE scopes SET description = \(bind: s.description), is_default = \(bind: s.isDefault ? 1 : 0),
                    required_role = \(bind: s.requiredRole)
                WHERE name = \(bind: s.name) RETURNING name
                """
            ).all().isEmpty
        }
    }

    public func deleteScope(name: String, force: Bool, at time: Int64) async throws -> ScopeDeletion {
        try await backend.transaction { db in
            guard try await !db.raw("SELECT name FROM scopes WHERE name = \(bind: name)").all().isEmpty else {
                return .notFound
            }
            let clients = try await db.raw("SELECT * FROM clients ORDER BY id").all().map(Self.decodeClient)
                .filter { $0.scope.contains(name) || $0.defaultScope.contains(name) }
            if !clients.isEmpty, !force { return .inUse(clients: clients.map(\.id)) }
            for c in clients {
                let scope = Scope(c.scope.tokens.filter { $0 != name })
                let defaultScope = Scope(c.defaultScope.tokens.filter { $0 != name })
                try await db.raw(
                    """
                    UPDATE clients SET scope = \(bind: scope.description), default_scope = \(bind: defaultScope.description),
                        updated_at = \(bind: time) WHERE id = \(bind: c.id)
                    """
                ).run()
            }
            try await db.raw("DELETE FROM scopes WHERE name = \(bind: name)").run()
            return .deleted
        }
    }

    // MARK: groups and services

    public func listGroups() async throws -> [(group: GroupRecord, members: Int)] {
        try await backend.read { db in
            try await db.raw(
                """
                SELECT g.name, g.created_at, (SELECT COUNT(*) FROM memberships m WHERE m.group_name = g.name) AS members
                FROM user_groups g ORDER BY g.name
                """
            ).all().map {
                (GroupRecord(name: try $0.decode(column: "name", as: String.self),
                             createdAt: try $0.decode(column: "created_at", as: Int64.self)),
                 try $0.decode(column: "members", as: Int.self))
            }
        }
    }

    public func deleteGroup(name: String) async throws -> Bool {
        try await backend.transaction { db in
            let deleted = try await !db.raw("DELETE FROM user_groups WHERE name = \(bind: name) RETURNING name").all().isEmpty
            if deleted { try await db.raw("DELETE FROM memberships WHERE group_name = \(bind: name)").run() }
            return deleted
        }
    }

    public func members(group: String) async throws -> [MembershipRecord] {
        try await backend.read { db in
            try await db.raw(
                """
                SELECT m.group_name, m.user_id, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                WHERE m.group_name = \(bind: group) ORDER BY u.username_key
                """
            ).all().map {
                MembershipRecord(
                    group: try $0.decode(column: "group_name", as: String.self),
                    userID: try $0.decode(column: "user_id", as: String.self), role: try $0.decode(column: "role", as: String.self))
            }
        }
    }

    public func removeMember(group: String, userID: String) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                "DELETE FROM memberships WHERE group_name = \(bind: group) AND user_id = \(bind: userID) RETURNING user_id"
            ).all().isEmpty
        }
    }

    public func listServices() async throws -> [ServiceRecord] {
        try await backend.read { db in
            try await db.raw("SELECT * FROM services ORDER BY name").all().map {
                ServiceRecord(
                    name: try $0.decode(column: "name", as: String.self),
                    permissionsURL: try $0.decode(column: "permissions_url", as: String?.self),
                    createdAt: try $0.decode(column: "created_at", as: Int64.self))
            }
        }
    }

    public func deleteService(name: String) async throws -> Bool {
        try await backend.transaction { db in
            let deleted = try await !db.raw("DELETE FROM services WHERE name = \(bind: name) RETURNING name").all().isEmpty
            if deleted { try await db.raw("DELETE FROM service_permissions WHERE service = \(bind: name)").run() }
            return deleted
        }
    }

    public func serviceGrants(service: String) async throws -> [(userID: String, permissions: [String])] {
        try await backend.read { db in
            let rows = try await db.raw(
                "SELECT user_id, permission FROM service_permissions WHERE service = \(bind: service) ORDER BY user_id, permission"
            ).all()
            var out: [(userID: String, permissions: [String])] = []
            for row in rows {
                let user = try row.decode(column: "user_id", as: String.self)
                let permission = try row.decode(column: "permission", as: String.self)
                if out.last?.userID == user { out[out.count - 1].permissions.append(permission) } else { out.append((user, [permission])) }
            }
            return out
        }
    }

    public func revokePermissions(service: String, userID: String, permissions: [String]?) async throws -> Int {
        try await backend.transaction { db in
            guard let permissions else {
                return try await db.raw(
                    "DELETE FROM service_permissions WHERE service = \(bind: service) AND user_id = \(bind: userID) RETURNING permission"
                ).all().count
            }
            var n = 0
            for p in permissions {
                n += try await db.raw(
                    """
                    DELETE FROM service_permissions WHERE service = \(bind: service) AND user_id = \(bind: userID)
                        AND permission = \(bind: p) RETURNING permission
                    """
                ).all().count
            }
            return n
        }
    }

    // MARK: webhook deliveries

    public func listEvents(status: OutboxStatus?, before: (createdAt: Int64, id: String)?, limit: Int) async throws
        -> [OutboxRecord]
    {
        try await backend.read { db in
            var sql = SQLQueryString("SELECT * FROM webhook_outbox WHERE 1 = 1")
            switch status {
            case .pending: sql.appendInterpolation(unsafeRaw: " AND delivered_at IS NULL AND failed_at IS NULL")
            case .delivered: sql.appendInterpolation(unsafeRaw: " AND delivered_at IS NOT NULL")
            case .failed: sql.appendInterpolation(unsafeRaw: " AND failed_at IS NOT NULL")
            case nil: break
            }
            if let before {
                sql.appendInterpolation(unsafeRaw: " AND (created_at < ")
                sql.appendInterpolation(bind: before.createdAt)
                sql.appendInterpolation(unsafeRaw: " OR (created_at = ")
                sql.appendInterpolation(bind: before.createdAt)
                sql.appendInterpolation(unsafeRaw: " AND id < ")
                sql.appendInterpolation(bind: before.id)
                sql.appendInterpolation(unsafeRaw: "))")
            }
            sql.appendInterpolation(unsafeRaw: " ORDER BY created_at DESC, id DESC LIMIT ")
            sql.appendInterpolation(bind: max(1, limit))
            return try await db.raw(sql).all().map(Self.decodeOutbox)
        }
    }

    public func retryEvent(id: String, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            try await !db.raw(
                """
                UPDATE webhook_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = \(bind: time)
                WHERE id = \(bind: id) AND delivered_at IS NULL RETURNING id
                """
            ).all().isEmpty
        }
    }

    // MARK: dashboard

    public func stats(at time: Int64) async throws -> AdminStats {
        try await backend.read { db in
            let row = try await db.raw(
                """
                SELECT (SELECT COUNT(*) FROM users) AS users,
                    (SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL) AS disabled_users,
                    (SELECT COUNT(*) FROM clients) AS clients,
                    (SELECT COUNT(*) FROM sessions WHERE expires_at > \(bind: time)) AS sessions,
                    (SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL) AS pending,
                    (SELECT COUNT(*) FROM webhook_outbox WHERE failed_at IS NOT NULL) AS failed
                """
            ).first()
            func n(_ column: String) throws -> Int64 { try row?.decode(column: column, as: Int64.self) ?? 0 }
            func window(_ seconds: Int64) async throws -> AdminStats.Window {
                let since = time - seconds
                let counts = try await db.raw(
                    """
                    SELECT kind, CAST(SUM(n) AS BIGINT) AS n FROM activity_counts WHERE bucket > \(bind: since - ActivityCounter.bucketSeconds)
                    GROUP BY kind
                    """
                ).all()
                var byKind: [String: Int64] = [:]
                for r in counts { byKind[try r.decode(column: "kind", as: String.self)] = try r.decode(column: "n", as: Int64.self) }
                return AdminStats.Window(
                    tokens_issued: byKind[ActivityCounter.tokensIssued] ?? 0,
                    signin_failures: byKind[ActivityCounter.signInFailures] ?? 0, signins: byKind[ActivityCounter.signIns] ?? 0)
            }
            return AdminStats(
                users: try n("users"), disabled_users: try n("disabled_users"), clients: try n("clients"),
                active_sessions: try n("sessions"), pending_events: try n("pending"), failed_events: try n("failed"),
                last_hour: try await window(3600), last_day: try await window(86400))
        }
    }
}

// MARK: AuditStore

extension SQLStore {
    public func insertAuditEvents(_ events: [AuditEventRecord]) async throws {
        guard !events.isEmpty else { return }
        try await backend.transaction { db in
            for e in events { try await Self.insertAuditEvent(e, db) }
        }
    }

    static func insertAuditEvent(_ e: AuditEventRecord, _ db: any SQLDatabase) async throws {
        try await db.raw(
            """
            INSERT INTO audit_events (id, created_at, actor, action, target, client_address, request_id, detail)
            VALUES (\(bind: e.id), \(bind: e.createdAt), \(bind: e.actor), \(bind: e.action), \(bind: e.target),
                \(bind: e.clientAddress), \(bind: e.requestID), \(bind: JSONObject.encode(e.detail)))
            """
        ).run()
    }

    public func listAuditEvents(_ q: AuditQuery) async throws -> [AuditEventRecord] {
        try await backend.read { db in
            var sql = SQLQueryString("SELECT * FROM audit_events WHERE 1 = 1")
            for (column, value) in [("actor", q.actor), ("action", q.action), ("target", q.target)] {
                guard let value else { continue }
                sql.appendInterpolation(unsafeRaw: " AND \(column) = ")
                sql.appendInterpolation(bind: value)
            }
            if let since = q.since {
                sql.appendInterpolation(unsafeRaw: " AND created_at >= ")
                sql.appendInterpolation(bind: since)
            }
            if let until = q.until {
                sql.appendInterpolation(unsafeRaw: " AND created_at <= ")
                sql.appendInterpolation(bind: until)
            }
            if let before = q.before {
                sql.appendInterpolation(unsafeRaw: " AND id < ")
                sql.appendInterpolation(bind: before)
            }
            sql.appendInterpolation(unsafeRaw: " ORDER BY id DESC LIMIT ")
            sql.appendInterpolation(bind: max(1, q.limit))
            return try await db.raw(sql).all().map { row in
                AuditEventRecord(
                    id: try row.decode(column: "id", as: String.self), createdAt: try row.decode(column: "created_at", as: Int64.self),
                    actor: try row.decode(column: "actor", as: String.self), action: try row.decode(column: "action", as: String.self),
                    target: try row.decode(column: "target", as: String?.self),
                    clientAddress: try row.decode(column: "client_address", as: String?.self),
                    requestID: try row.decode(column: "request_id", as: String?.self),
                    detail: JSONObject.decode([String: String].self, try row.decode(column: "detail", as: String.self)) ?? [:])
            }
        }
    }

    public func purgeAuditEvents(before time: Int64) async throws -> Int {
        try await backend.transaction { db in
            let audit = try await db.raw("DELETE FROM audit_events WHERE created_at < \(bind: time) RETURNING id").all().count
            // The activity counters serve the last day only.
            _ = try await db.raw("DELETE FROM activity_counts WHERE bucket < \(bind: clock.nowSeconds - 2 * 86400)").run()
            return audit
        }
    }

    public func addActivity(_ counts: [String: [Int64: Int64]]) async throws {
        guard !counts.isEmpty else { return }
        try await backend.transaction { db in
            for (kind, buckets) in counts.sorted(by: { $0.key < $1.key }) {
                for (bucket, n) in buckets.sorted(by: { $0.key < $1.key }) where n > 0 {
                    try await db.raw(
                        """
                        INSERT INTO activity_counts (kind, bucket, n) VALUES (\(bind: kind), \(bind: bucket), \(bind: n))
                        ON CONFLICT (kind, bucket) DO UPDATE SET n = activity_counts.n + excluded.n
                        """
                    ).run()
                }
            }
        }
    }
}
