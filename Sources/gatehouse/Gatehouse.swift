import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer
import Logging

@main
struct Gatehouse: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gatehouse",
        abstract: "Gatehouse: an OAuth 2.1 / OpenID Connect authorization server.",
        subcommands: [Serve.self, Migrate.self, Config.self, Users.self, Clients.self, Scopes.self, Keys.self, Providers.self, Groups.self, Services.self, Audit.self, Backup.self, Export.self, Import.self],
        defaultSubcommand: Serve.self)
}

/// Options every command takes.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Database URL (env GATEHOUSE_DATABASE_URL; default sqlite://gatehouse.sqlite).")
    var database: String?
    @Option(name: .long, help: "JSON config file (env GATEHOUSE_CONFIG).")
    var config: String?
    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false

    func configuration(extra: [String: String] = [:]) throws -> GatehouseConfiguration {
        var flags = extra
        if let database { flags["database_url"] = database }
        if let config { flags["config"] = config }
        do {
            return try GatehouseConfiguration.load(flags: flags, environment: ProcessInfo.processInfo.environment)
        } catch let e as GatehouseConfiguration.Error {
            throw CLIError(e.description)
        }
    }

    /// Opens and migrates the database, runs `body`, and closes the database whatever happens.
    func withStore<T>(migrating: Bool = true, _ body: (SQLStore, GatehouseConfiguration) async throws -> T) async throws -> T {
        let config = try configuration()
        var logger = Logger(label: "gatehouse")
        logger.logLevel = .warning
        let store: SQLStore
        do {
            store = try await SQLStore.open(config.database, logger: logger, secrets: config.secrets)
        } catch {
            throw CLIError("cannot open database \(config.database): \(error)")
        }
        do {
            if migrating {
                try await store.migrate()
                try await Self.checkSecrets(store)
            }
            let result = try await body(store, config)
            await store.close()
            return result
        } catch let e as Administration.ValidationError {
            await store.close()
            throw CLIError(e.description)
        } catch let e as AdminError {
            await store.close()
            throw CLIError(e.description)
        } catch {
            await store.close()
            throw error
        }
    }

    /// Every stored secret must open with the configured keys: one `invalid secrets_key` line otherwise (the
    /// message names rows and key ids, never key material).
    static func checkSecrets(_ store: SQLStore) async throws {
        do {
            _ = try await store.listKeys()
            _ = try await store.listProviders()
        } catch let failure as SecretBox.Failure {
            throw CLIError("invalid secrets_key: \(failure)")
        }
    }

    func print<T: Encodable>(json value: T, text: @autoclosure () -> String) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            Swift.print(String(decoding: try encoder.encode(value), as: UTF8.self))
        } else {
            Swift.print(text())
        }
    }
}

/// An error printed as one line, exiting with status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
