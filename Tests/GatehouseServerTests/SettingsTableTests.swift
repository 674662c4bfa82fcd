import Foundation
import GatehouseCore
import Testing

@testable import GatehouseServer

/// The settings table is the one description of every setting: flags, environment, config file, `config show`
/// and the tables in README.md and docs/configuration.md come from it.
@Suite("Settings table")
struct SettingsTableTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test(arguments: SettingsDocs.files.map(\.path))
    func documentedTablesMatchTheTable(path: String) throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent(path), encoding: .utf8)
        let accepts = SettingsDocs.files.first { $0.path == path }!.accepts
        let updated = try #require(SettingsDocs.updated(text, accepts: accepts), "\(path) has no settings-table markers")
        #expect(updated == text, "\(path) disagrees with the settings table: run `swift run gatehouse config docs --write`")
    }

    @Test func namesFollowTheConvention() {
        let keys = GatehouseConfiguration.settingsTable.map(\.key)
        #expect(Set(keys).count == keys.count, "duplicate keys")
        for s in GatehouseConfiguration.settingsTable {
            #expect(s.key.allSatisfy { $0.isLowercase || $0 == "_" }, "\(s.key) is not snake_case")
            #expect(s.environment == "GATEHOUSE_" + s.key.uppercased())
            // One documented exception: database_url's flag is --database (every command takes it).
            if s.key != "database_url" { #expect(s.flag == "--" + s.key.replacingOccurrences(of: "_", with: "-")) }
            #expect(!s.help.isEmpty && !s.accepts.isEmpty)
        }
    }

    /// Each documented default is what a fresh configuration holds, and it parses back through its own row.
    @Test func defaultsRoundTrip() throws {
        let fresh = try GatehouseConfiguration.load(flags: [:], environment: [:])
        for s in GatehouseConfiguration.settingsTable {
            guard let shown = s.effective(fresh), !s.isSecret, s.key != "config" else { continue }
            var again = GatehouseConfiguration()
            try s.apply(shown, &again)
            #expect(s.effective(again) == shown, "\(s.key)")
        }
        #expect(fresh.settings.accessTokenLifetime == ServerSettings(issuer: "x").accessTokenLifetime)
        #expect(fresh.sources.isEmpty)
    }

    @Test func everyRowReadsFromEachSource() throws {
        let flag = try GatehouseConfiguration.load(flags: ["access_token_ttl": "5m"], environment: ["GATEHOUSE_ACCESS_TOKEN_TTL": "7m"])
        #expect(flag.settings.accessTokenLifetime == 300)
        #expect(flag.sources["access_token_ttl"] == "--access-token-ttl")
        let env = try GatehouseConfiguration.load(flags: [:], environment: ["GATEHOUSE_PURGE_INTERVAL": "2m"])
        #expect(env.purgeInterval == 120)
        #expect(env.sources["purge_interval"] == "GATEHOUSE_PURGE_INTERVAL")
        #expect { try GatehouseConfiguration.load(flags: ["outbox_retention": "1m"], environment: [:]) } throws: {
            "\($0)" == "invalid --outbox-retention: '1m' is not a duration between 1h and 90d"
        }
    }

    @Test func reportMasksSecretsAndNamesSources() throws {
        let c = try GatehouseConfiguration.load(
            flags: ["webhook_url": "http://127.0.0.1:9/hook"],
            environment: ["GATEHOUSE_WEBHOOK_SECRET": "0123456789abcdef-secret", "GATEHOUSE_SECRETS_KEY": Data(repeating: 7, count: 32).base64EncodedString()])
        let report = Dictionary(uniqueKeysWithValues: c.report().map { ($0.key, ($0.value, $0.source)) })
        #expect(report["webhook_secret"]! == ("********", "GATEHOUSE_WEBHOOK_SECRET"))
        #expect(report["secrets_key"]! == ("********", "GATEHOUSE_SECRETS_KEY"))
        // Webhook URLs often carry a token in the path (Slack, Discord): masked like the secrets.
        #expect(report["webhook_url"]! == ("********", "--webhook-url"))
        #expect(report["access_token_ttl"]! == ("10m", "default"))
        #expect(!c.report().contains { $0.value.contains("0123456789abcdef") })
    }

    @Test(arguments: [(0, "0"), (1, "1s"), (60, "60s"), (300, "5m"), (3600, "1h"), (86_400, "24h"), (30 * 86_400, "30d")] as [(Int64, String)])
    func durationsFormatAsDocumented(seconds: Int64, text: String) {
        #expect(Setting.formatDuration(seconds) == text)
        #expect(Setting.parseDuration(text, allowZero: true) == seconds)
    }
}
