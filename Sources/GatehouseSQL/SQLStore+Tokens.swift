import Foundation
import GatehouseCore
import SQLKit

// MARK: TokenStore

/// `TokenStore` over SQL: grants, refresh tokens by hash, revocations.
extension SQLStore {
    static func insertRefreshToken(_ t: RefreshTokenRecord, _ db: any SQLDatabase) async throws {
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

    static func insertGrant(_ g: GrantRecord, _ db: any SQLDatabase) async throws {
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

    public func isAccessTokenRevoked(jti: String, grantID: String?, clientID: String, userID: String?) async throws -> Bool {
        try await backend.read { db in
            // One round trip: revoked jti, revoked grant, deleted client, or (for a user's token) a user who
            // is disabled or gone.
            let row: (any SQLRow)?
            if let userID {
                row = try await db.raw(
                    """
                    SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = \(bind: jti))
                         + (SELECT COUNT(*) FROM grants WHERE id = \(bind: grantID ?? "") AND revoked_at IS NOT NULL)
                         + (SELECT COUNT(*) FROM clients WHERE id = \(bind: clientID)) * -1 + 1
                         + (SELECT COUNT(*) FROM users WHERE id = \(bind: userID) AND disabled_at IS NULL) * -1 + 1 AS n
                    """
                ).first()
            } else {
                row = try await db.raw(
                    """
                    SELECT (SELECT COUNT(*) FROM revoked_access_tokens WHERE jti = \(bind: jti))
                         + (SELECT COUNT(*) FROM grants WHERE id = \(bind: grantID ?? "") AND revoked_at IS NOT NULL)
                         + (SELECT COUNT(*) FROM clients WHERE id = \(bind: clientID)) * -1 + 1 AS n
                    """
                ).first()
            }
            return try (row?.decode(column: "n", as: Int64.self) ?? 1) != 0
        }
    }

    public func purgeExpired(before time: Int64) async throws -> Int {
        try await backend.transaction { db in
            let a = try await db.raw("DELETE FROM refresh_tokens WHERE expires_at < \(bind: time) RETURNING hash").all().count
            let b = try await db.raw("DELETE FROM revoked_access_tokens WHERE expires_at < \(bind: time) RETURNING jti").all().count
            let c = try await db.raw("DELETE FROM sessions WHERE expires_at < \(bind: time) RETURNING hash").all().count
                + db.raw("DELETE FROM upstream_flows WHERE expires_at < \(bind: time) RETURNING state_hash").all().count
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
