import ArgumentParser
import Foundation
import GatehouseServer

/// `gatehouse config show` and `gatehouse config docs`: the settings table, from the shell.
struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect the settings.", subcommands: [Show.self, Docs.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the effective settings (from the environment, the config file, the defaults, and any serve flags given here) and where each came from; secrets are masked.")
        @OptionGroup var common: CommonOptions
        @Argument(parsing: .allUnrecognized, help: .hidden) var settingFlags: [String] = []

        func run() async throws {
            let config = try common.configuration(extra: try Serve.parseSettingFlags(settingFlags))
            struct Row: Encodable { let key: String; let value: String; let source: String }
            let rows = config.report().map { Row(key: $0.key, value: $0.value, source: $0.source) }
            let width = rows.map(\.key.count).max() ?? 0
            let valueWidth = min(48, rows.map(\.value.count).max() ?? 0)
            try common.print(
                json: rows,
                text: rows.map { r in
                    r.key.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                        + (r.value.count < valueWidth ? r.value.padding(toLength: valueWidth, withPad: " ", startingAt: 0) : r.value)
                        + "  " + r.source
                }.joined(separator: "\n"))
        }
    }

    struct Docs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the settings table as Markdown, or with --write update README.md and docs/configuration.md in the current directory.")
        @Flag(help: "Rewrite the generated tables in README.md and docs/configuration.md (between their marker comments).")
        var write = false
        @Flag(help: "Print the docs/configuration.md variant (accepted values) instead of README.md's.")
        var accepts = false

        func run() async throws {
            guard write else {
                print(GatehouseConfiguration.markdownTable(accepts: accepts))
                return
            }
            for (path, accepts) in SettingsDocs.files {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError("cannot read \(path) (run this in the repository root)") }
                guard let updated = SettingsDocs.updated(text, accepts: accepts) else { throw CLIError("\(path) has no settings-table markers") }
                if updated != text { try updated.write(toFile: path, atomically: true, encoding: .utf8) }
                print(updated == text ? "\(path): up to date" : "\(path): updated")
            }
        }
    }
}
