import Foundation
import GatehouseCore
import Logging

/// The server's settings, one row each (the compatibility profiles add theirs: `CompatProfile.settings`).
/// Adding a setting is one row here plus the code that reads the value.
extension GatehouseConfiguration {
    static let serverSettings: [Setting] = [
        Setting(
            "config", default: "none", accepts: "path of a readable JSON file",
            help: "Path of a JSON config file (keys as in the first column)",
            apply: { _, _ in }, effective: { $0.configFile }),
        Setting(
            "host", default: "127.0.0.1", accepts: "host name or IP address (no spaces or `/`); a non-loopback host needs an explicit `issuer`",
            help: "Address to listen on. A non-loopback host (e.g. `0.0.0.0`) needs an explicit `issuer`",
            apply: { v, c in
                guard !v.isEmpty, !v.contains(" "), !v.contains("/") else { throw Setting.Invalid("'\(v)' is not a host name or address") }
                c.host = v
            }, effective: { $0.host }),
        .integer("port", \.port, range: 1...65535, help: "TCP port to listen on (1–65535)", refusal: "a port number (1-65535)"),
        Setting(
            "issuer", default: "`http://HOST:PORT` (loopback hosts only)", accepts: "absolute URL, see [Issuer](#issuer)",
            help: "Issuer identifier (RFC 8414): `https`, or `http` on a loopback host only; no query or fragment",
            apply: { v, c in
                try GatehouseConfiguration.checkIssuer(v)
                c.configuredIssuer = v
            }, effective: { $0.issuer }),
        Setting(
            "database_url", flag: "--database", default: "`sqlite://gatehouse.sqlite`", accepts: "see [Database](#database)",
            help: "Where data lives (forms below)", secret: false,
            apply: { v, c in
                do { c.database = try DatabaseURL(parsing: v) } catch { throw Setting.Invalid("\(error)") }
            }, effective: { $0.database.description }),
        Setting(
            "default_audience", default: "the issuer", accepts: "absolute URI without a fragment",
            help: "`aud` of access tokens requested without `resource` (absolute URI)",
            apply: { v, c in
                guard let u = URL(string: v), u.scheme != nil, !v.contains("#") else { throw Setting.Invalid("'\(v)' is not an absolute URI") }
                c.settings.defaultAudience = v
            }, effective: { $0.settings.audience }),
        .duration("access_token_ttl", \.settings.accessTokenLifetime, range: 1...86_400, help: "Access-token lifetime, 1s–24h"),
        .duration(
            "refresh_token_ttl", \.settings.refreshTokenLifetime, range: nil, atLeast: 60,
            help: "Refresh-token lifetime, at least 60s; each rotation starts a new period"),
        .duration(
            "refresh_grace_period", \.settings.refreshGracePeriod, range: 0...300,
            help: "0–5m. A used refresh token sent again within this window, while its successor is unused, gets the same new token pair instead of revoking its family"),
        Setting(
            "signing_algorithm", default: "`ES256`", accepts: "`ES256`, `ES384`, `RS256`, `PS256`, `EdDSA` (case-insensitive)",
            help: "Algorithm of the key made on first start and by `keys rotate`: `ES256`, `ES384`, `RS256`, `PS256`, `EdDSA`",
            apply: { v, c in
                guard let a = SigningAlgorithm(name: v) else { throw Setting.Invalid("'\(v)' is not one of ES256, ES384, RS256, PS256, EdDSA") }
                c.settings.signingAlgorithm = a
            }, effective: { $0.settings.signingAlgorithm.rawValue }),
        .duration(
            "key_reload_interval", \.settings.keyReloadInterval, range: 1...300,
            help: "How often a running server re-reads the signing keys (this is how it picks up `keys rotate`), 1s–5m. The new key of `keys rotate` signs this + 60 s after the rotation"),
        .duration(
            "cache_ttl", \.settings.cacheTTL, range: 0...10,
            help: "0–10s. How long a running server keeps client records and \"not revoked\" answers in memory. Changes made through the server itself (revocation, refresh reuse) apply at once; changes by the CLI or another instance (`clients rotate-secret`, `clients delete`) reach it within this time. `0` turns the caches off"),
        .duration(
            "authorization_code_ttl", \.settings.authorizationCodeLifetime, range: 1...600,
            help: "Authorization-code lifetime, 1s–10m"),
        .duration("id_token_ttl", \.settings.idTokenLifetime, range: 60...86_400, help: "ID-token lifetime, 60s–24h"),
        .duration("session_ttl", \.settings.sessionLifetime, range: 60...(90 * 86_400), help: "Browser session lifetime from sign-in, 60s–90d"),
        .duration(
            "upstream_sign_in_ttl", \.settings.upstreamFlowLifetime, range: 60...3600,
            help: "How long a \"Sign in with …\" round trip to an upstream provider may take, 60s–1h (its state and browser-binding cookie expire then)"),
        .integer(
            "password_max_failures", \.settings.passwordMaxFailures, range: 1...1000,
            help: "Failed password attempts on one account within the window before it is locked (existing accounts only). After half of them, each failure makes the next attempt wait 1, 2, 4 … s (at most 30 s). One client address may fail 5× this, with the same delays, before it is refused until the window ends. The login page, the password grant and lego's token-auth share the counts, which are kept in the database for every instance"),
        .duration(
            "password_lockout_window", \.settings.passwordLockoutWindow, range: 1...86_400,
            help: "How long failures are counted and a lockout lasts"),
        .text(
            "webhook_url", \.webhookURL, accepts: "https URL (http on loopback); needs `webhook_secret`",
            help: "A URL that receives lifecycle events as signed JSON ([docs/federation.md](docs/federation.md#lifecycle-webhooks)); more hooks: `webhooks` in the config file. Masked in `config show` (such URLs often carry a token)",
            secret: true),
        .text(
            "webhook_secret", \.webhookSecret, accepts: "at least 16 characters",
            help: "HMAC-SHA256 key for `webhook_url`'s `Gatehouse-Signature` (at least 16 characters; prefer the environment)",
            secret: true),
        .duration(
            "webhook_retry_base", \.webhookRetryBase, range: 1...3600,
            help: "First retry delay of a failed delivery; doubles per attempt up to 1h; 12 attempts"),
        .duration(
            "outbox_retention", \.outboxRetention, range: 3600...(90 * 86_400),
            help: "How long a delivered or abandoned webhook event stays in the outbox table, 1h–90d"),
        .duration(
            "audit_retention", \.auditRetention, range: 86_400...(10 * 366 * 86_400),
            help: "How long audit events (admin changes, sign-ins, security events) are kept, 1d–10y ([docs/admin.md](docs/admin.md#audit-log))"),
        .duration(
            "purge_interval", \.purgeInterval, range: 1...3600,
            help: "How often expired rows (codes, sign-in flows, refresh tokens, counters, old outbox events) are deleted, 1s–1h"),
        Setting(
            "trusted_proxies", default: "none", accepts: "comma-separated IP addresses or CIDRs (`10.0.0.0/8`, `2001:db8::/32`)",
            help: "Comma-separated IPs or CIDRs of reverse proxies whose forwarding header (`forwarded_header`) names the client ([docs/configuration.md](docs/configuration.md#behind-a-reverse-proxy))",
            apply: { v, c in
                var networks: [IPNetwork] = []
                for item in Setting.commaList(v) {
                    guard let n = IPNetwork(item) else { throw Setting.Invalid("'\(item)' is not an IP address or CIDR (e.g. 10.0.0.0/8)") }
                    networks.append(n)
                }
                c.settings.trustedProxies = networks
            }, effective: { $0.settings.trustedProxies.isEmpty ? nil : $0.settings.trustedProxies.map(\.description).joined(separator: ",") }),
        Setting(
            "forwarded_header", default: "`x-forwarded-for`", accepts: "`x-forwarded-for` or `forwarded`",
            help: "The header the trusted proxies write the client address into: `x-forwarded-for` or `forwarded` (RFC 7239). Only that header is read",
            apply: { v, c in
                guard let h = ForwardedHeader(rawValue: v.lowercased()) else { throw Setting.Invalid("'\(v)' is not x-forwarded-for or forwarded") }
                c.settings.forwardedHeader = h
            }, effective: { $0.settings.forwardedHeader.rawValue }),
        Setting(
            "secrets_key", default: "none",
            accepts: "one or more keys of 32 bytes in standard base64, comma- or newline-separated; the first encrypts",
            help: "Key-encryption keys: 32 random bytes in standard base64 each, comma- or newline-separated; the first encrypts. Private signing keys and provider client secrets are then stored AES-256-GCM encrypted ([docs/configuration.md](docs/configuration.md#secrets-at-rest))",
            secret: true,
            apply: { v, c in
                let keys = SecretBox.parseKeyList(v)
                guard !keys.isEmpty else { throw Setting.Invalid("no key given") }
                do { _ = try SecretBox(base64Keys: keys) } catch { throw Setting.Invalid("\(error)") }
                c.secretsKeys = keys
            }, effective: { $0.secretsKeys.isEmpty ? nil : "\($0.secretsKeys.count) key(s)" }),
        .text(
            "secrets_key_file", \.secretsKeyFile,
            accepts: "path of a readable file with such keys, one per line (`#` comments and blank lines skipped)",
            help: "A file with such keys, one per line (after any `secrets_key` keys)"),
        Setting(
            "log_level", default: "`info`", accepts: "`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`",
            help: "`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`",
            apply: { v, c in
                guard let l = Logger.Level(rawValue: v.lowercased()) else { throw Setting.Invalid("'\(v)' is not a log level") }
                c.logLevel = l
            }, effective: { $0.logLevel.rawValue }),
        Setting(
            "log_format", default: "`text`", accepts: "`text` or `json`",
            help: "`text` (swift-log's lines) or `json`: one object per line with time, level, message and the request's fields ([docs/operations.md](docs/operations.md#logs))",
            apply: { v, c in
                guard let f = LogFormat(rawValue: v.lowercased()) else { throw Setting.Invalid("'\(v)' is not text or json") }
                c.logFormat = f
            }, effective: { $0.logFormat.rawValue }),
        .boolean(
            "access_log", \.accessLog,
            help: "One `info` line per request: request id, method, route template, status, duration, client id (never a query string, token or cookie)"),
        .integer(
            "metrics_port", \.metricsPort, range: 0...65535,
            help: "0 serves `GET /metrics` (Prometheus) on the main port; another port serves it there only, on `host` (recommended in production: keep it off the public port) ([docs/operations.md](docs/operations.md#metrics))"),
        .text(
            "metrics_token", \.metricsToken, accepts: "at least 16 characters",
            help: "When set, `GET /metrics` answers only `Authorization: Bearer <token>` (401 otherwise). Masked in `config show`",
            secret: true,
            check: { v in
                guard v.count >= 16, !v.contains(" ") else { throw Setting.Invalid("a metrics token needs at least 16 characters and no spaces") }
            }),
        .duration(
            "shutdown_grace", \.shutdownGrace, range: 0...300,
            help: "0–5m. After SIGTERM, `/readyz` answers 503 at once and requests are still served this long (so a load balancer can stop sending); then new connections stop, in-flight requests finish and the process exits 0"),
        .boolean(
            "metrics", \.metricsEnabled,
            help: "`false`: nothing is recorded and `/metrics` answers 404 ([docs/operations.md](docs/operations.md#metrics))"),
        .text(
            "otel_endpoint", \.otelEndpoint, accepts: "`http` or `https` URL of an OTLP/HTTP receiver (collector), e.g. `http://127.0.0.1:4318`",
            help: "Send OpenTelemetry traces (OTLP/HTTP, protobuf) to this collector; spans go to its `/v1/traces`. Unset: no tracing ([docs/operations.md](docs/operations.md#tracing))",
            check: { v in
                guard let url = URL(string: v), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                    let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil, url.user == nil
                else { throw Setting.Invalid("not an http(s) URL without credentials, query or fragment") }
            }),
        Setting(
            "otel_sampling_ratio", default: "1", accepts: "a number from 0 to 1",
            help: "Share of new requests traced (a random draw per request; one not drawn gets no span at all); a request whose `traceparent` says sampled is always traced, one that says not sampled never",
            apply: { v, c in
                guard let ratio = Double(v), ratio >= 0, ratio <= 1 else { throw Setting.Invalid("'\(v)' is not a number from 0 to 1") }
                c.otelSamplingRatio = ratio
            }, effective: { "\($0.otelSamplingRatio)" }),
    ]

    /// The settings table as Markdown: README.md's (`help` column) or docs/configuration.md's (`accepts`).
    public static func markdownTable(accepts: Bool) -> String {
        var lines = [
            "| Config-file key | Flag | Environment variable | Default | \(accepts ? "Accepted values" : "Meaning") |",
            "|---|---|---|---|---|",
        ]
        for s in settingsTable {
            let key = s.key == "config" ? "—" : "`\(s.key)`"
            let def = s.defaultDescription.hasPrefix("`") || !s.defaultDescription.first!.isNumber
                ? s.defaultDescription : "`\(s.defaultDescription)`"
            lines.append("| \(key) | `\(s.flag)` | `\(s.environment)` | \(def) | \(accepts ? s.accepts : s.help) |")
        }
        return lines.joined(separator: "\n")
    }
}

/// The generated settings tables in README.md and docs/configuration.md, between marker comments.
public enum SettingsDocs {
    public static let begin = "<!-- settings-table:begin (generated by `gatehouse config docs --write`; edit the table in Sources/GatehouseServer/Settings) -->"
    public static let end = "<!-- settings-table:end -->"

    /// The files that carry a table, relative to the repository root, and which column each shows.
    public static let files: [(path: String, accepts: Bool)] = [("README.md", false), ("docs/configuration.md", true)]

    /// `text` with its marked region replaced by the current table; nil when it has no markers.
    public static func updated(_ text: String, accepts: Bool) -> String? {
        guard let b = text.range(of: begin), let e = text.range(of: end, range: b.upperBound..<text.endIndex) else { return nil }
        return String(text[..<b.upperBound]) + "\n" + GatehouseConfiguration.markdownTable(accepts: accepts) + "\n"
            + String(text[e.lowerBound...])
    }
}
