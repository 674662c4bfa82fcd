import Foundation
import GatehouseCore
import SQLKit

// MARK: BrowserStore

/// `BrowserStore` over SQL: sessions, authorization codes, consents.
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
                    1 /* redirect_uri_sent: always (OAuth 2.1 §4.1.1) */, \(bind: c.scope.description), \(bind: JSONList.encode(c.resources)),
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
