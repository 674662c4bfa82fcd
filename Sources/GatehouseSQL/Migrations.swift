import Foundation
import GatehouseCore
import SQLKit

/// Versioned schema migrations: one list of portable SQL (SQLite and PostgreSQL), applied in order, each
/// in a transaction, and recorded in `gatehouse_migrations`. Never edit a released migration; add one.
///
/// Portability rules: identifiers as TEXT, times as BIGINT unix seconds, booleans as INTEGER 0/1, lists
/// as JSON text.
enum Migrations {
    struct Migration: Sendable {
        let version: Int
        let name: String
        let statements: [String]
        /// Statements for one dialect only (indexes whose form differs), run after `statements`.
        var sqlite: [String] = []
        var postgres: [String] = []
    }

    static let all: [Migration] = [
        Migration(
            version: 1, name: "core schema",
            statements: [
                """
                CREATE TABLE clients (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT,
                    redirect_uris TEXT NOT NULL, grant_types TEXT NOT NULL, scope TEXT NOT NULL,
                    default_scope TEXT NOT NULL, resources TEXT NOT NULL, skip_consent INTEGER NOT NULL,
                    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
                """,
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY, username TEXT NOT NULL, username_key TEXT NOT NULL UNIQUE,
                    email TEXT, name TEXT, password_hash TEXT,
                    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
                """,
                "CREATE TABLE scopes (name TEXT PRIMARY KEY, description TEXT NOT NULL, is_default INTEGER NOT NULL)",
                """
                CREATE TABLE signing_keys (
                    kid TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_pem TEXT,
                    created_at BIGINT NOT NULL, deactivated_at BIGINT, retired_at BIGINT)
                """,
                """
                CREATE TABLE grants (
                    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT, scope TEXT NOT NULL,
                    created_at BIGINT NOT NULL, revoked_at BIGINT)
                """,
                "CREATE INDEX grants_client_id ON grants (client_id)",
                """
                CREATE TABLE refresh_tokens (
                    hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL, user_id TEXT,
                    scope TEXT NOT NULL, resources TEXT NOT NULL, issued_at BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL, used_at BIGINT, sealed_successor TEXT)
                """,
                "CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id)",
                "CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at)",
                "CREATE TABLE revoked_access_tokens (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
            ] + ScopeRecord.builtIn.map { s in
                "INSERT INTO scopes (name, description, is_default) VALUES ('\(s.name)', '\(s.description.replacingOccurrences(of: "'", with: "''"))', \(s.isDefault ? 1 : 0))"
            }
        ),
        Migration(
            version: 2, name: "shared settings",
            statements: ["CREATE TABLE gatehouse_settings (name TEXT PRIMARY KEY, value BIGINT NOT NULL)"]
        ),
        Migration(
            version: 3, name: "browser sign-in",
            statements: [
                "ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]'",
                // OIDC standard claims as a JSON object (UserProfile).
                "ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}'",
                "ALTER TABLE grants ADD COLUMN auth_time BIGINT",
                "ALTER TABLE grants ADD COLUMN session_id TEXT",
                "CREATE INDEX grants_user_id ON grants (user_id)",
                """
                CREATE TABLE sessions (
                    hash TEXT PRIMARY KEY, id TEXT NOT NULL, user_id TEXT NOT NULL, auth_time BIGINT NOT NULL,
                    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)
                """,
                "CREATE INDEX sessions_expires_at ON sessions (expires_at)",
                """
                CREATE TABLE authorization_codes (
                    hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
                    redirect_uri TEXT NOT NULL, redirect_uri_sent INTEGER NOT NULL, scope TEXT NOT NULL,
                    resources TEXT NOT NULL, code_challenge TEXT, nonce TEXT, auth_time BIGINT NOT NULL,
                    session_id TEXT, grant_id TEXT NOT NULL, issue_refresh INTEGER NOT NULL,
                    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT)
                """,
                "CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at)",
                """
                CREATE TABLE consents (
                    user_id TEXT NOT NULL, client_id TEXT NOT NULL, scope TEXT NOT NULL, created_at BIGINT NOT NULL,
                    PRIMARY KEY (user_id, client_id))
                """,
            ]
        ),
        Migration(
            version: 4, name: "federation and webhooks",
            statements: [
                """
                CREATE TABLE providers (
                    id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, client_id TEXT NOT NULL,
                    client_secret TEXT NOT NULL, issuer TEXT, authorize_url TEXT, token_url TEXT, userinfo_url TEXT,
                    scope TEXT NOT NULL, claims TEXT NOT NULL, link_by_email INTEGER NOT NULL, created_at BIGINT NOT NULL)
                """,
                """
                CREATE TABLE identities (
                    provider_id TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL, username TEXT, email TEXT,
                    created_at BIGINT NOT NULL, PRIMARY KEY (provider_id, subject))
                """,
                "CREATE INDEX identities_user_id ON identities (user_id)",
                "ALTER TABLE users ADD COLUMN email_key TEXT",
                "UPDATE users SET email_key = LOWER(email)",
                "CREATE INDEX users_email_key ON users (email_key)",
                """
                CREATE TABLE upstream_flows (
                    state_hash TEXT PRIMARY KEY, provider_id TEXT NOT NULL, browser_hash TEXT NOT NULL,
                    code_verifier TEXT NOT NULL, nonce TEXT NOT NULL, return_to TEXT NOT NULL, link_user_id TEXT,
                    expires_at BIGINT NOT NULL)
                """,
                """
                CREATE TABLE webhook_outbox (
                    id TEXT PRIMARY KEY, event TEXT NOT NULL, url TEXT NOT NULL, payload TEXT NOT NULL,
                    attempts INTEGER NOT NULL, next_attempt_at BIGINT NOT NULL, created_at BIGINT NOT NULL,
                    delivered_at BIGINT, failed_at BIGINT, last_error TEXT)
                """,
                "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)",
            ]
        ),
        Migration(
            version: 5, name: "groups, services and permissions",
            statements: [
                "CREATE TABLE user_groups (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL)",
                """
                CREATE TABLE memberships (
                    group_name TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
                    PRIMARY KEY (group_name, user_id))
                """,
                "CREATE INDEX memberships_user_id ON memberships (user_id)",
                "CREATE TABLE services (name TEXT PRIMARY KEY, permissions_url TEXT, created_at BIGINT NOT NULL)",
                """
                CREATE TABLE service_permissions (
                    service TEXT NOT NULL, user_id TEXT NOT NULL, permission TEXT NOT NULL,
                    PRIMARY KEY (service, user_id, permission))
                """,
                "ALTER TABLE users ADD COLUMN username_changed_at BIGINT",
                "ALTER TABLE scopes ADD COLUMN required_role TEXT",
                "ALTER TABLE clients ADD COLUMN single_grant_per_user INTEGER NOT NULL DEFAULT 0",
            ]
        ),
        Migration(
            version: 6, name: "security hardening",
            statements: [
                // Token exchange: how a provider proves whose a token is; per-client legacy and exchange policy.
                "ALTER TABLE providers ADD COLUMN whoami_url TEXT",
                "ALTER TABLE providers ADD COLUMN introspection_url TEXT",
                "ALTER TABLE providers ADD COLUMN allow_foreign_tokens INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE clients ADD COLUMN legacy_redirect_state INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE clients ADD COLUMN may_exchange_from TEXT NOT NULL DEFAULT '[]'",
                // Password-guess counters shared by every instance (LoginThrottle).
                """
                CREATE TABLE failure_counters (
                    key TEXT PRIMARY KEY, failures INTEGER NOT NULL, window_start BIGINT NOT NULL,
                    last_failure_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)
                """,
                "CREATE INDEX failure_counters_expires_at ON failure_counters (expires_at)",
                // Publish before sign; emergency revocation.
                "ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT",
                "ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT",
                // A grant that can still produce tokens without a refresh token (lego token-auth refresh).
                "ALTER TABLE grants ADD COLUMN live_until BIGINT",
                // Pending upstream sign-ins per client address (bounded).
                "ALTER TABLE upstream_flows ADD COLUMN address_key TEXT",
                "CREATE INDEX upstream_flows_address_key ON upstream_flows (address_key)",
                "CREATE INDEX upstream_flows_expires_at ON upstream_flows (expires_at)",
                "CREATE INDEX sessions_id ON sessions (id)",
            ]
        ),
        Migration(
            version: 7, name: "operations",
            statements: [
                // The trace an event was raised in (W3C trace context as JSON), for the delivery's span.
                "ALTER TABLE webhook_outbox ADD COLUMN trace_context TEXT",
            ]
        ),
        Migration(
            version: 8, name: "administration",
            statements: [
                "ALTER TABLE users ADD COLUMN disabled_at BIGINT",
                "ALTER TABLE users ADD COLUMN password_reset_required INTEGER NOT NULL DEFAULT 0",
                // Lowercased name, for the admin API's prefix search (username_key and email_key exist).
                "ALTER TABLE users ADD COLUMN name_key TEXT",
                "UPDATE users SET name_key = LOWER(name)",
                // The ids of deleted users: a `sub` is never given to anyone else.
                "CREATE TABLE deleted_users (id TEXT PRIMARY KEY, deleted_at BIGINT NOT NULL)",
                // Secret rotation with a grace period.
                "ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT",
                "ALTER TABLE clients ADD COLUMN previous_secret_expires_at BIGINT",
                """
                CREATE TABLE audit_events (
                    id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                    target TEXT, client_address TEXT, request_id TEXT, detail TEXT NOT NULL)
                """,
                // Newest first within each filter (ids are time-ordered).
                "CREATE INDEX audit_events_actor ON audit_events (actor, id)",
                "CREATE INDEX audit_events_action ON audit_events (action, id)",
                "CREATE INDEX audit_events_target ON audit_events (target, id)",
                "CREATE INDEX audit_events_created_at ON audit_events (created_at)",
                // Tokens issued and sign-ins per 5-minute bucket, summed over every instance (the dashboard).
                "CREATE TABLE activity_counts (kind TEXT NOT NULL, bucket BIGINT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (kind, bucket))",
                "CREATE INDEX webhook_outbox_created_at ON webhook_outbox (created_at, id)",
                "CREATE INDEX sessions_user_id ON sessions (user_id)",
                "CREATE INDEX service_permissions_user_id ON service_permissions (user_id)",
                "CREATE INDEX consents_client_id ON consents (client_id)",
                // The reserved scopes of the admin API and the service whose permissions grant them to users.
                "INSERT INTO scopes (name, description, is_default) VALUES ('gatehouse:admin', 'Administer Gatehouse', 0)",
                "INSERT INTO scopes (name, description, is_default) VALUES ('gatehouse:admin:read', 'Read Gatehouse''s administration data', 0)",
                "INSERT INTO services (name, permissions_url, created_at) SELECT 'gatehouse', NULL, 0 WHERE NOT EXISTS (SELECT 1 FROM services WHERE name = 'gatehouse')",
            ],
            // The admin API's user search (`SQLStore.listUsers`): a prefix is one range per column in byte order
            // (SQLite compares TEXT bytewise; PostgreSQL needs the "C" collation), and each index also holds the
            // username key, so the matches of a column come out in username order without reading their rows.
            sqlite: [
                "CREATE INDEX users_email_search ON users (email_key, username_key)",
                "CREATE INDEX users_name_search ON users (name_key, username_key)",
            ],
            postgres: [
                #"CREATE INDEX users_username_key_c ON users (username_key COLLATE "C") INCLUDE (id)"#,
                #"CREATE INDEX users_email_search ON users (email_key COLLATE "C", username_key COLLATE "C") INCLUDE (id)"#,
                #"CREATE INDEX users_name_search ON users (name_key COLLATE "C", username_key COLLATE "C") INCLUDE (id)"#,
            ]
        ),
    ]

    /// The versions of `all` the database has not applied (it throws when there is no migrations table).
    static func pending(_ backend: any SQLBackend) async throws -> [Int] {
        let done: Set<Int> = try await backend.read { db in
            let rows = try await db.raw("SELECT version FROM gatehouse_migrations").all()
            return Set(try rows.map { try $0.decode(column: "version", as: Int.self) })
        }
        return all.map(\.version).filter { !done.contains($0) }
    }

    /// Applies pending migrations (up to and including `upTo`, when given: `gatehouse import` fills a new
    /// database at the export's schema version, then migrates the rest). Returns the versions applied.
    static func migrate(_ backend: any SQLBackend, clock: Clock, upTo: Int? = nil) async throws -> [Int] {
        let isPostgres = backend.isPostgres
        return try await backend.transaction { db in
            // Instances starting together on PostgreSQL: the second waits here, then finds nothing to do.
            // (SQLite: BEGIN IMMEDIATE already holds the database's write lock.)
            if isPostgres { try await db.raw("SELECT pg_advisory_xact_lock(7245735)").run() }
            try await db.raw(
                "CREATE TABLE IF NOT EXISTS gatehouse_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            ).run()
            let rows = try await db.raw("SELECT version FROM gatehouse_migrations").all()
            let done = Set(try rows.map { try $0.decode(column: "version", as: Int.self) })
            var applied: [Int] = []
            for m in all where !done.contains(m.version) && m.version <= (upTo ?? Int.max) {
                for statement in m.statements + (isPostgres ? m.postgres : m.sqlite) {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                try await db.raw(
                    "INSERT INTO gatehouse_migrations (version, name, applied_at) VALUES (\(bind: m.version), \(bind: m.name), \(bind: clock.nowSeconds))"
                ).run()
                applied.append(m.version)
            }
            return applied
        }
    }

    static var latestVersion: Int { all.map(\.version).max() ?? 0 }
}
