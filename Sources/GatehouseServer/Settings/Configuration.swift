import Foundation
import GatehouseCore
import Logging

/// Gatehouse's configuration: every setting's value, with its default declared here (and in `ServerSettings`
/// for the protocol settings). Values come from, in order of precedence, a command-line flag, an environment
/// variable, the optional JSON config file, then the default; `settingsTable` describes each setting and
/// `load(flags:environment:)` resolves them all.
public struct GatehouseConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// The issuer (`issuer`, or `http://HOST:PORT` on a loopback host).
    public var issuer: String
    /// The `issuer` setting as given (nil: derived from host and port).
    public var configuredIssuer: String?
    public var database: DatabaseURL = .default
    /// The protocol settings the core reads.
    public var settings: ServerSettings
    public var logLevel: Logger.Level = .info
    /// How log lines are written (`log_format`).
    public var logFormat: LogFormat = .text
    /// One `info` line per request (`access_log`).
    public var accessLog = true
    /// Seconds between SIGTERM and the end of accepting requests (`shutdown_grace`).
    public var shutdownGrace: Int64 = 5
    /// A port of its own for `GET /metrics` (`metrics_port`; 0: the main port).
    public var metricsPort = 0
    /// The bearer token `GET /metrics` requires (`metrics_token`; nil: none).
    public var metricsToken: String?
    /// Record metrics and serve `/metrics` (`metrics`).
    public var metricsEnabled = true
    /// The OTLP/HTTP collector traces go to (`otel_endpoint`; nil: no tracing).
    public var otelEndpoint: String?
    /// The share of new requests traced, drawn per request (`otel_sampling_ratio`, `TraceSampler`).
    public var otelSamplingRatio = 1.0
    /// The JSON config file (`config`), when one was given.
    public var configFile: String?
    /// Upstream identity providers from the config file (`providers`), in addition to those in the database.
    public var providers: [ProviderRecord] = []
    /// Webhooks for lifecycle events (`webhooks` in the config file, or `webhook_url` + `webhook_secret`).
    public var webhooks: [WebhookConfig] = []
    /// `webhook_url` and `webhook_secret` (they make one hook together).
    public var webhookURL: String?
    public var webhookSecret: String?
    /// First retry delay of a failed webhook delivery, doubled per attempt (at most 1 h).
    public var webhookRetryBase: Int64 = 5
    /// Seconds a delivered or abandoned webhook event stays in the outbox before it is deleted.
    public var outboxRetention: Int64 = 7 * 86_400
    /// Seconds an audit event is kept (`audit_retention`).
    public var auditRetention: Int64 = 90 * 86_400
    /// Seconds between purges of expired rows (codes, upstream flows, failure counters, refresh tokens).
    public var purgeInterval: Int64 = 60
    /// The compatibility profiles and their settings.
    public var compat = CompatOptions()
    /// `secrets_key` as given (the keys of `secrets`).
    public var secretsKeys: [String] = []
    public var secretsKeyFile: String?
    /// Encrypts private signing keys and provider client secrets at rest (`secrets_key`, `secrets_key_file`).
    public var secrets: SecretBox?
    /// Where each setting's value came from (`config show`): config key → `--flag`, `GATEHOUSE_…`, `config file`.
    public var sources: [String: String] = [:]

    public init(issuer: String? = nil, host: String = "127.0.0.1", port: Int = 8080) {
        self.host = host
        self.port = port
        let issuer = issuer ?? Self.defaultIssuer(host: host, port: port)
        self.issuer = issuer
        self.configuredIssuer = nil
        self.settings = ServerSettings(issuer: issuer)
    }

    static func defaultIssuer(host: String, port: Int) -> String {
        "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

    /// A malformed setting: the message names the setting and where it came from.
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    /// Every setting: the server's, then each compatibility profile's.
    public static let settingsTable: [Setting] = serverSettings + CompatProfile.settings

    /// The row of `key`.
    public static func setting(_ key: String) -> Setting? { settingsTable.first { $0.key == key } }

    /// Resolves every setting from flags (keyed by config-file key), environment and config file, then the
    /// rules that join several settings.
    public static func load(flags: [String: String], environment: [String: String]) throws -> GatehouseConfiguration {
        var config = GatehouseConfiguration()
        let path = flags["config"] ?? environment["GATEHOUSE_CONFIG"]
        let file = try path.map(readFile) ?? [:]
        config.configFile = path
        for setting in settingsTable where setting.key != "config" {
            let given: (value: String, source: String)?
            if let v = flags[setting.key] {
                given = (v, setting.flag)
            } else if let v = environment[setting.environment] {
                given = (v, setting.environment)
            } else if let v = file[setting.key] {
                given = (v, "\(setting.key) in the config file")
            } else {
                given = nil
            }
            guard let (value, source) = given else { continue }
            do {
                try setting.apply(value, &config)
            } catch let invalid as Setting.Invalid {
                throw Error(description: "invalid \(source): \(invalid.description)")
            }
            config.sources[setting.key] = source
        }
        if let path {
            let extras = try readExtras(path)
            config.providers = extras.providers
            config.webhooks += extras.webhooks
        }
        try config.finish(environment: environment)
        return config
    }

    /// The rules between settings, after every row is read.
    mutating func finish(environment: [String: String]) throws {
        func source(_ key: String) -> String { sources[key] ?? key }
        // The dgp profile honours dgp-oauth2's own environment variables as fallbacks.
        if compat.profiles.contains(.dgp) { try DGPProfile.readEnvironment(environment, into: &self) }
        if configuredIssuer == nil, !RedirectURI.isLoopback(host) {
            // The default issuer http://HOST:PORT is only right on loopback; elsewhere say what clients see.
            throw Error(description: "invalid --host/GATEHOUSE_HOST: listening on \(host) needs an explicit --issuer (GATEHOUSE_ISSUER), e.g. https://auth.example.com")
        }
        issuer = configuredIssuer ?? Self.defaultIssuer(host: host, port: port)
        settings.issuer = issuer
        if metricsPort != 0, metricsPort == port {
            throw Error(description: "invalid \(source("metrics_port")): metrics_port \(metricsPort) is the main port; use 0 to serve /metrics there")
        }
        if !metricsEnabled, metricsPort != 0 || metricsToken != nil {
            throw Error(description: "invalid \(source(metricsPort != 0 ? "metrics_port" : "metrics_token")): metrics is false, so there is no /metrics to serve")
        }
        if let url = webhookURL {
            guard let secret = webhookSecret else { throw Error(description: "invalid \(source("webhook_url")): webhook_url needs webhook_secret") }
            webhooks.insert(try Self.webhook(url: url, secret: secret, events: [], source: source("webhook_url")), at: 0)
        } else if webhookSecret != nil {
            throw Error(description: "invalid \(source("webhook_secret")): webhook_secret is set but webhook_url is not")
        }
        var keys = secretsKeys
        if let path = secretsKeyFile {
            guard let data = FileManager.default.contents(atPath: path) else { throw Error(description: "invalid \(source("secrets_key_file")): cannot read \(path)") }
            let fromFile = SecretBox.parseKeyList(String(decoding: data, as: UTF8.self))
            guard !fromFile.isEmpty else { throw Error(description: "invalid \(source("secrets_key_file")): \(path) holds no key") }
            keys += fromFile
        }
        if !keys.isEmpty {
            let blame = secretsKeyFile != nil ? source("secrets_key_file") : source("secrets_key")
            do { secrets = try SecretBox(base64Keys: keys) } catch { throw Error(description: "invalid \(blame): \(error)") }
        }
    }

    /// The effective settings, one per row, with where each came from; secrets masked.
    public func report() -> [(key: String, value: String, source: String)] {
        Self.settingsTable.map { setting in
            let value = setting.key == "config" ? configFile : setting.effective(self)
            let shown = value.map { setting.isSecret ? "********" : $0 } ?? "(not set)"
            let source = setting.key == "config" ? (configFile == nil ? "default" : "flag or environment")
                : sources[setting.key].map { $0.hasSuffix("in the config file") ? "config file" : $0 } ?? "default"
            return (setting.key, shown, source)
        }
    }

    static func webhook(url: String, secret: String, events: [String], source: String) throws -> WebhookConfig {
        do { try ProviderRecord.checkURL(url, option: source) } catch {
            throw Error(description: "invalid \(source): \(error)")
        }
        guard secret.utf8.count >= 16 else { throw Error(description: "invalid \(source): the webhook secret must be at least 16 characters") }
        for e in events where !Events.all.contains(e) && e != Events.auditAll && !(e.hasPrefix("audit.") && e.count > 6) {
            throw Error(description: "invalid \(source): unknown event '\(e)' (known: \(Events.all.joined(separator: ", ")), audit.* or audit.<action>)")
        }
        return WebhookConfig(url: url, secret: secret, events: events)
    }

    /// RFC 8414 §2: https URL with no query or fragment. Plain http is accepted for loopback hosts only.
    static func checkIssuer(_ v: String) throws {
        guard let c = URLComponents(string: v), let scheme = c.scheme?.lowercased(), let host = c.host, !host.isEmpty else {
            throw Setting.Invalid("'\(v)' is not an absolute URL")
        }
        guard c.query == nil, c.fragment == nil, c.user == nil else {
            throw Setting.Invalid("the issuer must not have a query, fragment or user info")
        }
        guard scheme == "https" || (scheme == "http" && RedirectURI.isLoopback(host)) else {
            throw Setting.Invalid("the issuer must use https (http only for loopback hosts)")
        }
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
}
