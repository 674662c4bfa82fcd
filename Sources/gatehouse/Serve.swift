import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer
import Hummingbird
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server (default: 127.0.0.1:8080 on ./gatehouse.sqlite, no configuration needed).")

    @OptionGroup var common: CommonOptions
    @Option(help: "Address to listen on (env GATEHOUSE_HOST, default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on (env GATEHOUSE_PORT, default 8080).") var port: String?
    @Option(help: "Issuer URL (env GATEHOUSE_ISSUER, default http://HOST:PORT).") var issuer: String?
    @Option(help: "Default access-token audience (env GATEHOUSE_DEFAULT_AUDIENCE, default: the issuer).")
    var defaultAudience: String?
    @Option(help: "Access-token lifetime (env GATEHOUSE_ACCESS_TOKEN_TTL, default 10m).") var accessTokenTtl: String?
    @Option(help: "Refresh-token lifetime (env GATEHOUSE_REFRESH_TOKEN_TTL, default 30d).") var refreshTokenTtl: String?
    @Option(help: "Refresh-token reuse grace period (env GATEHOUSE_REFRESH_GRACE_PERIOD, default 0).")
    var refreshGracePeriod: String?
    @Option(help: "Algorithm of the first signing key (env GATEHOUSE_SIGNING_ALGORITHM, default ES256).")
    var signingAlgorithm: String?
    @Option(help: "Signing-key reload interval (env GATEHOUSE_KEY_RELOAD_INTERVAL, default 10s).")
    var keyReloadInterval: String?
    @Option(help: "Client and revocation cache lifetime (env GATEHOUSE_CACHE_TTL, default 1s; 0 = off).")
    var cacheTtl: String?
    @Option(help: "Authorization-code lifetime (env GATEHOUSE_AUTHORIZATION_CODE_TTL, default 60s).")
    var authorizationCodeTtl: String?
    @Option(help: "ID-token lifetime (env GATEHOUSE_ID_TOKEN_TTL, default 10m).") var idTokenTtl: String?
    @Option(help: "Browser session lifetime (env GATEHOUSE_SESSION_TTL, default 12h).") var sessionTtl: String?
    @Option(help: "Failed password attempts per account before a lockout, after a growing delay (env GATEHOUSE_PASSWORD_MAX_FAILURES, default 10).")
    var passwordMaxFailures: String?
    @Option(help: "Lockout window (env GATEHOUSE_PASSWORD_LOCKOUT_WINDOW, default 15m).") var passwordLockoutWindow: String?
    @Option(help: "Webhook URL for lifecycle events (env GATEHOUSE_WEBHOOK_URL).") var webhookURL: String?
    @Option(help: "Webhook signing secret (env GATEHOUSE_WEBHOOK_SECRET; prefer the environment).") var webhookSecret: String?
    @Option(help: "First webhook retry delay (env GATEHOUSE_WEBHOOK_RETRY_BASE, default 5s).") var webhookRetryBase: String?
    @Option(help: "Compatibility profiles, comma-separated: lego, dgp, doorkeeper, dot (env GATEHOUSE_COMPAT).")
    var compat: String?
    @Option(help: "Client the profiles' first-party endpoints issue tokens to (env GATEHOUSE_COMPAT_CLIENT_ID).")
    var compatClientId: String?
    @Option(help: "Origins that get CORS headers on the profiles' APIs (env GATEHOUSE_CORS_ORIGINS).") var corsOrigins: String?
    @Option(help: "Hosts dgp's next may redirect to (env GATEHOUSE_COMPAT_NEXT_HOSTS).") var compatNextHosts: String?
    @Option(help: "Path prefixes dgp's next must start with (env GATEHOUSE_COMPAT_NEXT_PATHS).") var compatNextPaths: String?
    @Option(help: "Lifetime of dgp's user token (env GATEHOUSE_COMPAT_DGP_TOKEN_TTL, default 1h).") var compatDgpTokenTtl: String?
    @Option(help: "Providers dot's register-by-token accepts (env GATEHOUSE_COMPAT_EXCHANGE_PROVIDERS).")
    var compatExchangeProviders: String?
    @Option(help: "Reverse proxies (IPs/CIDRs) whose forwarding headers name the client (env GATEHOUSE_TRUSTED_PROXIES).")
    var trustedProxies: String?
    @Option(help: "Header the trusted proxies set: x-forwarded-for (default) or forwarded (env GATEHOUSE_FORWARDED_HEADER).")
    var forwardedHeader: String?
    @Option(help: "Key-encryption key(s) for secrets at rest, base64 (prefer env GATEHOUSE_SECRETS_KEY or --secrets-key-file).")
    var secretsKey: String?
    @Option(help: "File with secrets_key keys, one per line (env GATEHOUSE_SECRETS_KEY_FILE).") var secretsKeyFile: String?
    @Option(help: "Log level (env GATEHOUSE_LOG_LEVEL, default info).") var logLevel: String?

    func run() async throws {
        var flags: [String: String] = [:]
        flags["host"] = host
        flags["port"] = port
        flags["issuer"] = issuer
        flags["default_audience"] = defaultAudience
        flags["access_token_ttl"] = accessTokenTtl
        flags["refresh_token_ttl"] = refreshTokenTtl
        flags["refresh_grace_period"] = refreshGracePeriod
        flags["signing_algorithm"] = signingAlgorithm
        flags["key_reload_interval"] = keyReloadInterval
        flags["cache_ttl"] = cacheTtl
        flags["authorization_code_ttl"] = authorizationCodeTtl
        flags["id_token_ttl"] = idTokenTtl
        flags["session_ttl"] = sessionTtl
        flags["password_max_failures"] = passwordMaxFailures
        flags["password_lockout_window"] = passwordLockoutWindow
        flags["webhook_url"] = webhookURL
        flags["webhook_secret"] = webhookSecret
        flags["webhook_retry_base"] = webhookRetryBase
        flags["compat"] = compat
        flags["compat_client_id"] = compatClientId
        flags["cors_origins"] = corsOrigins
        flags["compat_next_hosts"] = compatNextHosts
        flags["compat_next_paths"] = compatNextPaths
        flags["compat_dgp_token_ttl"] = compatDgpTokenTtl
        flags["compat_exchange_providers"] = compatExchangeProviders
        flags["trusted_proxies"] = trustedProxies
        flags["forwarded_header"] = forwardedHeader
        flags["secrets_key"] = secretsKey
        flags["secrets_key_file"] = secretsKeyFile
        flags["log_level"] = logLevel
        let config = try common.configuration(extra: flags)
        var logger = Logger(label: "gatehouse")
        logger.logLevel = config.logLevel
        let store: SQLStore
        do {
            store = try await SQLStore.open(config.database, logger: logger, secrets: config.secrets)
        } catch {
            throw CLIError("cannot open database \(config.database): \(error)")
        }
        do {
            try await store.migrate()
            try await CommonOptions.checkSecrets(store)
            if config.secrets == nil {
                logger.warning("secrets_key is not set: private signing keys and provider client secrets are stored unencrypted in the database")
            }
            try await checkCompat(config, store: store)
            // What token exchange will refuse for each provider, once at start (providers add says it too).
            for provider in config.providers + (try await store.listProviders()) {
                if let note = provider.exchangeNote { logger.notice("\(note)") }
            }
        } catch {
            await store.close()
            throw error
        }
        do {
            let app = try await buildApplication(config, store: store, logger: logger)
            try await app.runService()
        } catch {
            await store.close()
            throw CLIError("cannot serve on \(config.host):\(config.port): \(error)")
        }
        await store.close()
    }
}

/// Settings the profiles need that only the database can confirm: one clear line at start, not a failure
/// at request time.
func checkCompat(_ config: GatehouseConfiguration, store: SQLStore) async throws {
    if config.compat.contains(.dot), !config.compatExchangeProviders.isEmpty {
        guard let id = config.compatClientID, let client = try await store.client(id: id) else {
            throw CLIError("invalid compat_client_id: dot's register-by-token (compat_exchange_providers) needs it, naming an existing client")
        }
        guard client.allows(grantType: GrantType.tokenExchange) else {
            throw CLIError(
                "invalid compat_client_id: client '\(id)' is not registered for the token-exchange grant that register-by-token uses (--grant-type \(GrantType.tokenExchange))")
        }
        let known = Set(try await store.listProviders().map(\.id) + config.providers.map(\.id))
        for id in config.compatExchangeProviders.sorted() where !known.contains(id) {
            throw CLIError("invalid compat_exchange_providers: no provider '\(id)' (add it with `gatehouse providers add`)")
        }
    }
    guard config.compat.contains(.lego) else { return }
    guard let id = config.compatClientID else {
        throw CLIError("invalid compat_client_id: the lego profile needs it (GATEHOUSE_COMPAT_CLIENT_ID), a client allowed the password grant")
    }
    guard let client = try await store.client(id: id) else {
        throw CLIError("invalid compat_client_id: no client '\(id)' (create it with `gatehouse clients create --allow-password-grant`)")
    }
    guard client.allows(grantType: GrantType.password) else {
        throw CLIError("invalid compat_client_id: client '\(id)' is not allowed the password grant, which lego's token-auth uses (--allow-password-grant)")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending database migrations.")
    @OptionGroup var common: CommonOptions

    func run() async throws {
        struct Out: Encodable { let applied: [Int]; let database: String }
        try await common.withStore(migrating: false) { store, config in
            let applied = try await store.migrate()
            try common.print(
                json: Out(applied: applied, database: config.database.description),
                text: applied.isEmpty ? "database \(config.database) was up to date"
                    : "database \(config.database): applied migrations \(applied.map(String.init).joined(separator: ", "))")
        }
    }
}
