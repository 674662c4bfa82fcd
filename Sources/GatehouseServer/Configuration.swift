import Foundation
import GatehouseCore
import GatehouseSQL
import Logging

/// Gatehouse's configuration. Each setting is read from, in order of precedence: a command-line flag,
/// an environment variable, the optional JSON config file, then its default. `settingsTable` lists every
/// setting; README.md's configuration table mirrors it (keep them in step).
public struct GatehouseConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var issuer: String
    public var database: DatabaseURL = .default
    public var settings: ServerSettings
    public var logLevel: Logger.Level = .info
    /// Upstream identity providers from the config file (`providers`), in addition to those in the database.
    public var providers: [ProviderRecord] = []
    /// Webhooks for lifecycle events (`webhooks` in the config file, or `webhook_url` + `webhook_secret`).
    public var webhooks: [WebhookConfig] = []
    /// First retry delay of a failed webhook delivery, doubled per attempt (at most 1 h).
    public var webhookRetryBase: Int64 = 5
    /// Compatibility profiles to mount (none by default).
    public var compat: Set<CompatProfile> = []
    /// The client that legacy first-party endpoints (lego token-auth, dot register-by-token, dgp) issue
    /// tokens to.
    public var compatClientID: String?
    /// Origins that get CORS headers on the compatibility profiles' APIs.
    public var corsOrigins: Set<String> = []
    /// Hosts that dgp's `next` may redirect to.
    public var compatNextHosts: Set<String> = []
    /// Path prefixes dgp's `next` must start with (empty: any path on an allowed host).
    public var compatNextPaths: [String] = []
    /// Lifetime of dgp's user token (`jwt`), seconds.
    public var compatDGPTokenTTL: Int64 = 3600
    /// Providers whose tokens dot's register-by-token accepts (empty: it answers 404).
    public var compatExchangeProviders: Set<String> = []
    /// Encrypts private signing keys and provider client secrets at rest (`secrets_key`, `secrets_key_file`).
    public var secrets: SecretBox?
    /// dgp: `PRIVATE_KEY` / `PUBLIC_KEY` (RSA PEM) for the profile's tokens.
    public var dgpPrivateKey: String?
    public var dgpPublicKey: String?

    public init(issuer: String? = nil, host: String = "127.0.0.1", port: Int = 8080) {
        self.host = host
        self.port = port
        let issuer = issuer ?? "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        self.issuer = issuer
        self.settings = ServerSettings(issuer: issuer)
    }

    /// A malformed setting: the message names the setting and where it came from.
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    /// One configurable value.
    public struct Setting: Sendable {
        public let key: String  // config-file key
        public let flag: String
        public let environment: String
        public let defaultDescription: String
        public let help: String
    }

    public static let settingsTable: [Setting] = [
        .init(key: "config", flag: "--config", environment: "GATEHOUSE_CONFIG", defaultDescription: "(none)",
              help: "Path of a JSON config file whose keys are the names in this column's first cell"),
        .init(key: "host", flag: "--host", environment: "GATEHOUSE_HOST", defaultDescription: "127.0.0.1",
              help: "Address to listen on"),
        .init(key: "port", flag: "--port", environment: "GATEHOUSE_PORT", defaultDescription: "8080",
              help: "TCP port to listen on"),
        .init(key: "issuer", flag: "--issuer", environment: "GATEHOUSE_ISSUER", defaultDescription: "http://HOST:PORT",
              help: "Issuer identifier (RFC 8414): https, or http on a loopback host only"),
        .init(key: "database_url", flag: "--database", environment: "GATEHOUSE_DATABASE_URL",
              defaultDescription: "sqlite://gatehouse.sqlite",
              help: "sqlite://PATH, sqlite::memory: or postgres://user:pass@host:port/db[?sslmode=disable|prefer|require]"),
        .init(key: "default_audience", flag: "--default-audience", environment: "GATEHOUSE_DEFAULT_AUDIENCE",
              defaultDescription: "the issuer", help: "`aud` of access tokens requested without `resource`"),
        .init(key: "access_token_ttl", flag: "--access-token-ttl", environment: "GATEHOUSE_ACCESS_TOKEN_TTL",
              defaultDescription: "10m", help: "Access-token lifetime (seconds, or 90s / 10m / 1h / 30d)"),
        .init(key: "refresh_token_ttl", flag: "--refresh-token-ttl", environment: "GATEHOUSE_REFRESH_TOKEN_TTL",
              defaultDescription: "30d", help: "Refresh-token lifetime, renewed at each rotation"),
        .init(key: "refresh_grace_period", flag: "--refresh-grace-period", environment: "GATEHOUSE_REFRESH_GRACE_PERIOD",
              defaultDescription: "0", help: "Window in which a reused refresh token returns the same new pair instead of revoking its family"),
        .init(key: "signing_algorithm", flag: "--signing-algorithm", environment: "GATEHOUSE_SIGNING_ALGORITHM",
              defaultDescription: "ES256", help: "Algorithm of the key generated on first start: ES256, ES384, RS256, PS256, EdDSA"),
        .init(key: "key_reload_interval", flag: "--key-reload-interval", environment: "GATEHOUSE_KEY_RELOAD_INTERVAL",
              defaultDescription: "10s", help: "How often a running server re-reads signing keys (picks up `keys rotate`)"),
        .init(key: "cache_ttl", flag: "--cache-ttl", environment: "GATEHOUSE_CACHE_TTL", defaultDescription: "1s",
              help: "How long client records and not-revoked answers are cached; CLI changes take effect within it (0 = off)"),
        .init(key: "authorization_code_ttl", flag: "--authorization-code-ttl", environment: "GATEHOUSE_AUTHORIZATION_CODE_TTL",
              defaultDescription: "60s", help: "Authorization-code lifetime (at most 10m)"),
        .init(key: "id_token_ttl", flag: "--id-token-ttl", environment: "GATEHOUSE_ID_TOKEN_TTL", defaultDescription: "10m",
              help: "ID-token lifetime"),
        .init(key: "session_ttl", flag: "--session-ttl", environment: "GATEHOUSE_SESSION_TTL", defaultDescription: "12h",
              help: "Browser session lifetime from sign-in"),
        .init(key: "password_max_failures", flag: "--password-max-failures", environment: "GATEHOUSE_PASSWORD_MAX_FAILURES",
              defaultDescription: "10", help: "Failures per existing account before a lockout (half free, then a growing delay); 5x per client address; shared by all instances"),
        .init(key: "password_lockout_window", flag: "--password-lockout-window", environment: "GATEHOUSE_PASSWORD_LOCKOUT_WINDOW",
              defaultDescription: "15m", help: "How long failures are counted and a lockout lasts"),
        .init(key: "webhook_url", flag: "--webhook-url", environment: "GATEHOUSE_WEBHOOK_URL", defaultDescription: "(none)",
              help: "A URL that receives lifecycle events (user.created, user.login, user.logout, grant.revoked) as signed JSON; more hooks: `webhooks` in the config file"),
        .init(key: "webhook_secret", flag: "--webhook-secret", environment: "GATEHOUSE_WEBHOOK_SECRET", defaultDescription: "(none)",
              help: "HMAC-SHA256 key of webhook_url's Gatehouse-Signature header (at least 16 characters)"),
        .init(key: "webhook_retry_base", flag: "--webhook-retry-base", environment: "GATEHOUSE_WEBHOOK_RETRY_BASE",
              defaultDescription: "5s", help: "First retry delay of a failed delivery; doubles per attempt, at most 1h, 12 attempts"),
        .init(key: "compat", flag: "--compat", environment: "GATEHOUSE_COMPAT", defaultDescription: "(none)",
              help: "Compatibility profiles to mount, comma-separated: lego, dgp, doorkeeper, dot"),
        .init(key: "compat_client_id", flag: "--compat-client-id", environment: "GATEHOUSE_COMPAT_CLIENT_ID",
              defaultDescription: "(none)",
              help: "Client that the profiles' first-party endpoints (lego token-auth, dot register-by-token, dgp) issue tokens to"),
        .init(key: "cors_origins", flag: "--cors-origins", environment: "GATEHOUSE_CORS_ORIGINS", defaultDescription: "(none)",
              help: "Comma-separated origins (https://app.example.com) that get CORS headers on the profiles' APIs (lego)"),
        .init(key: "compat_next_hosts", flag: "--compat-next-hosts", environment: "GATEHOUSE_COMPAT_NEXT_HOSTS",
              defaultDescription: "(none)", help: "Comma-separated host names that dgp's `next` may redirect to (with ?jwt=)"),
        .init(key: "compat_next_paths", flag: "--compat-next-paths", environment: "GATEHOUSE_COMPAT_NEXT_PATHS",
              defaultDescription: "(any path)", help: "Comma-separated path prefixes dgp's `next` must start with"),
        .init(key: "compat_dgp_token_ttl", flag: "--compat-dgp-token-ttl", environment: "GATEHOUSE_COMPAT_DGP_TOKEN_TTL",
              defaultDescription: "1h", help: "Lifetime of dgp's user token (`jwt`), 60s to 24h; signing out ends it sooner"),
        .init(key: "compat_exchange_providers", flag: "--compat-exchange-providers",
              environment: "GATEHOUSE_COMPAT_EXCHANGE_PROVIDERS", defaultDescription: "(none)",
              help: "Comma-separated provider ids whose tokens dot's register-by-token accepts (none: it answers 404)"),
        .init(key: "trusted_proxies", flag: "--trusted-proxies", environment: "GATEHOUSE_TRUSTED_PROXIES",
              defaultDescription: "(none)",
              help: "Comma-separated IPs or CIDRs of reverse proxies whose Forwarded / X-Forwarded-For name the client"),
        .init(key: "forwarded_header", flag: "--forwarded-header", environment: "GATEHOUSE_FORWARDED_HEADER",
              defaultDescription: "x-forwarded-for",
              help: "The header trusted_proxies write the client address into: x-forwarded-for or forwarded (RFC 7239); only it is read"),
        .init(key: "secrets_key", flag: "--secrets-key", environment: "GATEHOUSE_SECRETS_KEY", defaultDescription: "(none)",
              help: "Key-encryption key(s): 32 random bytes in standard base64, comma-separated for rotation (the first encrypts)"),
        .init(key: "secrets_key_file", flag: "--secrets-key-file", environment: "GATEHOUSE_SECRETS_KEY_FILE",
              defaultDescription: "(none)", help: "A file with secrets_key keys, one per line (the first encrypts)"),
        .init(key: "log_level", flag: "--log-level", environment: "GATEHOUSE_LOG_LEVEL", defaultDescription: "info",
              help: "trace, debug, info, notice, warning, error, critical"),
    ]

    /// Resolves every setting from flags (keyed by config-file key), environment and config file.
    public static func load(flags: [String: String], environment: [String: String]) throws -> GatehouseConfiguration {
        var file: [String: String] = [:]
        if let path = flags["config"] ?? environment["GATEHOUSE_CONFIG"] {
            file = try readFile(path)
        }
        func value(_ key: String) -> (String, String)? {
            let setting = settingsTable.first { $0.key == key }!
            if let v = flags[key] { return (v, setting.flag) }
            if let v = environment[setting.environment] { return (v, setting.environment) }
            if let v = file[key] { return (v, "\(key) in the config file") }
            return nil
        }
        func fail(_ source: String, _ why: String) -> Error { Error(description: "invalid \(source): \(why)") }

        var host = "127.0.0.1"
        if let (v, src) = value("host") {
            guard !v.isEmpty, !v.contains(" "), !v.contains("/") else { throw fail(src, "'\(v)' is not a host name or address") }
            host = v
        }
        var port = 8080
        if let (v, src) = value("port") {
            guard let p = Int(v), (1...65535).contains(p) else { throw fail(src, "'\(v)' is not a port number (1-65535)") }
            port = p
        }
        // The dgp profile honours dgp-oauth2's own environment variables as fallbacks.
        let dgp = commaList(value("compat")?.0 ?? "").map { $0.lowercased() }.contains("dgp")
        var issuer: String? = nil
        if let (v, src) = value("issuer") {
            try validateIssuer(v, source: src)
            issuer = v
        } else if dgp, let external = environment["EXTERNAL_ADDRESS"], !external.isEmpty {
            let v = external.contains("://") ? external : "https://" + external
            try validateIssuer(v, source: "EXTERNAL_ADDRESS")
            issuer = v
        }
        if issuer == nil, !RedirectURI.isLoopback(host) {
            // The default issuer http://HOST:PORT is only right on loopback; elsewhere say what clients see.
            throw Error(description: "invalid --host/GATEHOUSE_HOST: listening on \(host) needs an explicit --issuer (GATEHOUSE_ISSUER), e.g. https://auth.example.com")
        }
        var config = GatehouseConfiguration(issuer: issuer, host: host, port: port)
        if let (v, src) = value("database_url") {
            do { config.database = try DatabaseURL(parsing: v) } catch { throw fail(src, "\(error)") }
        } else if dgp, let v = environment["DATABASE_URL"], !v.isEmpty {
            // SQLAlchemy URLs: postgresql+psycopg2://… → postgresql://…
            var url = v
            if let plus = url.firstIndex(of: "+"), let colon = url.range(of: "://"), plus < colon.lowerBound {
                url = String(url[..<plus]) + String(url[colon.lowerBound...])
            }
            do { config.database = try DatabaseURL(parsing: url) } catch { throw fail("DATABASE_URL", "\(error)") }
        }
        if let (v, src) = value("default_audience") {
            guard let u = URL(string: v), u.scheme != nil, !v.contains("#") else { throw fail(src, "'\(v)' is not an absolute URI") }
            config.settings.defaultAudience = v
        }
        if let (v, src) = value("access_token_ttl") {
            guard let d = parseDuration(v), d >= 1, d <= 86_400 else { throw fail(src, "'\(v)' is not a duration between 1s and 24h") }
            config.settings.accessTokenLifetime = d
        }
        if let (v, src) = value("refresh_token_ttl") {
            guard let d = parseDuration(v), d >= 60 else { throw fail(src, "'\(v)' is not a duration of at least 60s") }
            config.settings.refreshTokenLifetime = d
        }
        if let (v, src) = value("refresh_grace_period") {
            guard let d = parseDuration(v, allowZero: true), d <= 300 else { throw fail(src, "'\(v)' is not a duration between 0 and 5m") }
            config.settings.refreshGracePeriod = d
        }
        if let (v, src) = value("signing_algorithm") {
            guard let a = SigningAlgorithm(name: v) else { throw fail(src, "'\(v)' is not one of ES256, ES384, RS256, PS256, EdDSA") }
            config.settings.signingAlgorithm = a
        }
        if let (v, src) = value("key_reload_interval") {
            guard let d = parseDuration(v), d <= 300 else { throw fail(src, "'\(v)' is not a duration between 1s and 5m") }
            config.settings.keyReloadInterval = d
        }
        if let (v, src) = value("cache_ttl") {
            guard let d = parseDuration(v, allowZero: true), d <= 10 else { throw fail(src, "'\(v)' is not a duration between 0 and 10s") }
            config.settings.cacheTTL = d
        }
        if let (v, src) = value("authorization_code_ttl") {
            guard let d = parseDuration(v), d <= 600 else { throw fail(src, "'\(v)' is not a duration between 1s and 10m") }
            config.settings.authorizationCodeLifetime = d
        }
        if let (v, src) = value("id_token_ttl") {
            guard let d = parseDuration(v), d >= 60, d <= 86_400 else { throw fail(src, "'\(v)' is not a duration between 60s and 24h") }
            config.settings.idTokenLifetime = d
        }
        if let (v, src) = value("session_ttl") {
            guard let d = parseDuration(v), d >= 60, d <= 90 * 86_400 else { throw fail(src, "'\(v)' is not a duration between 60s and 90d") }
            config.settings.sessionLifetime = d
        }
        if let (v, src) = value("password_max_failures") {
            guard let n = Int(v), (1...1000).contains(n) else { throw fail(src, "'\(v)' is not a number between 1 and 1000") }
            config.settings.passwordMaxFailures = n
        }
        if let (v, src) = value("password_lockout_window") {
            guard let d = parseDuration(v), d <= 86_400 else { throw fail(src, "'\(v)' is not a duration between 1s and 24h") }
            config.settings.passwordLockoutWindow = d
        }
        if let (v, src) = value("webhook_retry_base") {
            guard let d = parseDuration(v), d <= 3600 else { throw fail(src, "'\(v)' is not a duration between 1s and 1h") }
            config.webhookRetryBase = d
        }
        let hookURL = value("webhook_url")
        let hookSecret = value("webhook_secret")
        if let (url, src) = hookURL {
            guard let (secret, _) = hookSecret else { throw fail(src, "webhook_url needs webhook_secret") }
            config.webhooks.append(try webhook(url: url, secret: secret, events: [], source: src))
        } else if let (_, src) = hookSecret {
            throw fail(src, "webhook_secret is set but webhook_url is not")
        }
        if let path = flags["config"] ?? environment["GATEHOUSE_CONFIG"] {
            let extras = try readExtras(path)
            config.providers = extras.providers
            config.webhooks += extras.webhooks
        }
        if let (v, src) = value("compat") {
            for name in commaList(v).map({ $0.lowercased() }) {
                guard let profile = CompatProfile(rawValue: name) else {
                    throw fail(src, "'\(name)' is not a compatibility profile (lego, dgp, doorkeeper, dot)")
                }
                config.compat.insert(profile)
            }
        }
        if let (v, _) = value("compat_client_id") { config.compatClientID = v }
        if let (v, _) = value("compat_exchange_providers") {
            config.compatExchangeProviders = Set(commaList(v).map { $0.lowercased() })
        }
        if let (v, src) = value("compat_next_paths") {
            for path in commaList(v) where !path.hasPrefix("/") || path.contains("?") || path.contains("#") {
                throw fail(src, "'\(path)' is not a path prefix (it must start with /, without query or fragment)")
            }
            config.compatNextPaths = commaList(v)
        }
        if let (v, src) = value("compat_dgp_token_ttl") {
            guard let d = parseDuration(v), d >= 60, d <= 86_400 else { throw fail(src, "'\(v)' is not a duration between 60s and 24h") }
            config.compatDGPTokenTTL = d
        }
        if let (v, src) = value("trusted_proxies") {
            var networks: [IPNetwork] = []
            for item in commaList(v) {
                guard let n = IPNetwork(item) else { throw fail(src, "'\(item)' is not an IP address or CIDR (e.g. 10.0.0.0/8)") }
                networks.append(n)
            }
            config.settings.trustedProxies = networks
        }
        if let (v, src) = value("forwarded_header") {
            guard let h = ForwardedHeader(rawValue: v.lowercased()) else {
                throw fail(src, "'\(v)' is not x-forwarded-for or forwarded")
            }
            config.settings.forwardedHeader = h
        }
        var keys: [String] = []
        if let (v, src) = value("secrets_key") {
            keys = SecretBox.parseKeyList(v)
            guard !keys.isEmpty else { throw fail(src, "no key given") }
            do { config.secrets = try SecretBox(base64Keys: keys) } catch { throw fail(src, "\(error)") }
        }
        if let (path, src) = value("secrets_key_file") {
            guard let data = FileManager.default.contents(atPath: path) else { throw fail(src, "cannot read \(path)") }
            let fromFile = SecretBox.parseKeyList(String(decoding: data, as: UTF8.self))
            guard !fromFile.isEmpty else { throw fail(src, "\(path) holds no key") }
            do { config.secrets = try SecretBox(base64Keys: keys + fromFile) } catch { throw fail(src, "\(error)") }
        }
        if let (v, _) = value("compat_next_hosts") {
            config.compatNextHosts = Set(commaList(v).map { $0.lowercased() })
        }
        if let (v, src) = value("cors_origins") {
            for origin in commaList(v) {
                guard let u = URLComponents(string: origin), u.scheme != nil, u.host != nil, u.path.isEmpty, u.query == nil else {
                    throw fail(src, "'\(origin)' is not an origin (scheme://host[:port])")
                }
                config.corsOrigins.insert(origin)
            }
        }
        if dgp {
            config.dgpPrivateKey = environment["PRIVATE_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            config.dgpPublicKey = environment["PUBLIC_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            if config.dgpPublicKey != nil, config.dgpPrivateKey == nil {
                throw Error(description: "invalid PUBLIC_KEY: set PRIVATE_KEY too (the dgp profile signs with it)")
            }
            for (id, kind, name) in [("google", ProviderKind.google, "Google"), ("github", ProviderKind.github, "GitHub")] {
                let prefix = id.uppercased()
                guard let key = environment["\(prefix)_KEY"], !key.isEmpty else { continue }
                guard let secret = environment["\(prefix)_SECRET"], !secret.isEmpty else {
                    throw Error(description: "invalid \(prefix)_KEY: \(prefix)_SECRET is missing")
                }
                if !config.providers.contains(where: { $0.id == id }) {
                    config.providers.append(ProviderRecord(id: id, kind: kind, name: name, clientID: key, clientSecret: secret))
                }
            }
        }
        if let (v, src) = value("log_level") {
            guard let l = Logger.Level(rawValue: v.lowercased()) else { throw fail(src, "'\(v)' is not a log level") }
            config.logLevel = l
        }
        return config
    }

    static func webhook(url: String, secret: String, events: [String], source: String) throws -> WebhookConfig {
        do { try ProviderRecord.checkURL(url, option: source) } catch {
            throw Error(description: "invalid \(source): \(error)")
        }
        guard secret.utf8.count >= 16 else { throw Error(description: "invalid \(source): the webhook secret must be at least 16 characters") }
        for e in events where !Events.all.contains(e) {
            throw Error(description: "invalid \(source): unknown event '\(e)' (known: \(Events.all.joined(separator: ", ")))")
        }
        return WebhookConfig(url: url, secret: secret, events: events)
    }

    /// The structured parts of the config file: `providers` and `webhooks` arrays.
    static func readExtras(_ path: String) throws -> (providers: [ProviderRecord], webhooks: [WebhookConfig]) {
        guard let data = FileManager.default.contents(atPath: path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return ([], []) }
        var providers: [ProviderRecord] = []
        if let list = object["providers"] {
            guard let list = list as? [[String: Any]] else {
                throw Error(description: "invalid providers in the config file: expected an array of objects")
            }
            for (i, p) in list.enumerated() {
                let at = "providers[\(i)] in the config file"
                func string(_ key: String) throws -> String? {
                    guard let v = p[key] else { return nil }
                    guard let s = v as? String else { throw Error(description: "invalid \(at): \(key) must be a string") }
                    return s
                }
                guard let kindName = try string("kind"), let kind = ProviderKind(rawValue: kindName) else {
                    throw Error(description: "invalid \(at): kind must be one of oidc, oauth2, github, google")
                }
                var claims: [String: String] = [:]
                if let c = p["claims"] {
                    guard let c = c as? [String: String] else { throw Error(description: "invalid \(at): claims must map strings to strings") }
                    claims = c
                }
                let id = try string("id") ?? ""
                let provider = ProviderRecord(
                    id: id, kind: kind, name: try string("name") ?? id, clientID: try string("client_id") ?? "",
                    clientSecret: try string("client_secret") ?? "", issuer: try string("issuer"),
                    authorizeURL: try string("authorize_url"), tokenURL: try string("token_url"),
                    userinfoURL: try string("userinfo_url"), scope: Scope(parsing: try string("scope") ?? "") ?? .empty,
                    claims: claims, linkByEmail: p["link_by_email"] as? Bool ?? false,
                    whoamiURL: try string("whoami_url"), introspectionURL: try string("introspection_url"),
                    allowForeignTokens: p["allow_foreign_tokens"] as? Bool ?? false)
                do { try provider.validate() } catch { throw Error(description: "invalid \(at): \(error)") }
                guard !providers.contains(where: { $0.id == id }) else { throw Error(description: "invalid \(at): duplicate id '\(id)'") }
                providers.append(provider)
            }
        }
        var webhooks: [WebhookConfig] = []
        if let list = object["webhooks"] {
            guard let list = list as? [[String: Any]] else {
                throw Error(description: "invalid webhooks in the config file: expected an array of objects")
            }
            for (i, h) in list.enumerated() {
                let at = "webhooks[\(i)] in the config file"
                guard let url = h["url"] as? String, let secret = h["secret"] as? String else {
                    throw Error(description: "invalid \(at): url and secret are required strings")
                }
                webhooks.append(try webhook(url: url, secret: secret, events: h["events"] as? [String] ?? [], source: at))
            }
        }
        return (providers, webhooks)
    }

    /// RFC 8414 §2: https URL with no query or fragment. Plain http is accepted for loopback hosts only.
    static func validateIssuer(_ v: String, source: String) throws {
        guard let c = URLComponents(string: v), let scheme = c.scheme?.lowercased(), let host = c.host, !host.isEmpty else {
            throw Error(description: "invalid \(source): '\(v)' is not an absolute URL")
        }
        guard c.query == nil, c.fragment == nil, c.user == nil else {
            throw Error(description: "invalid \(source): the issuer must not have a query, fragment or user info")
        }
        guard scheme == "https" || (scheme == "http" && RedirectURI.isLoopback(host)) else {
            throw Error(description: "invalid \(source): the issuer must use https (http only for loopback hosts)")
        }
    }

    /// `a, b,c` → `["a", "b", "c"]` (trimmed, empty items dropped).
    static func commaList(_ value: String) -> [String] {
        value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// `90`, `90s`, `10m`, `1h`, `30d` → seconds.
    public static func parseDuration(_ s: String, allowZero: Bool = false) -> Int64? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var number = t
        var unit: Int64 = 1
        if let last = t.last, let u = units[last] { number = String(t.dropLast()); unit = u }
        guard let n = Int64(number), n >= (allowZero ? 0 : 1), n <= 10 * 365 * 86_400 / unit else { return nil }
        return n * unit
    }

    static func readFile(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error(description: "invalid --config/GATEHOUSE_CONFIG: cannot read \(path)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Error(description: "invalid config file \(path): expected a JSON object")
        }
        var out: [String: String] = [:]
        let known = Set(settingsTable.map(\.key))
        for (k, v) in object where k != "providers" && k != "webhooks" {
            guard known.contains(k), k != "config" else {
                throw Error(description: "invalid config file \(path): unknown setting '\(k)'")
            }
            switch v {
            case let s as String: out[k] = s
            case let n as NSNumber: out[k] = n.stringValue
            default: throw Error(description: "invalid \(k) in the config file: expected a string or a number")
            }
        }
        return out
    }
}
