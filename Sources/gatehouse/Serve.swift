import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer
import Hummingbird
import Logging
import OTel
import ServiceLifecycle
import Tracing

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server (default: 127.0.0.1:8080 on ./gatehouse.sqlite, no configuration needed).",
        discussion: settingsHelp)

    /// `serve --help`: every setting of the table, with its environment variable and default.
    static let settingsHelp: String = {
        var lines = ["SETTINGS (flag > environment > config file > default):"]
        for s in GatehouseConfiguration.settingsTable where s.key != "config" && s.key != "database_url" {
            lines.append("  \(s.flag) <value>  (env \(s.environment); default \(s.defaultDescription.replacingOccurrences(of: "`", with: "")))")
            lines.append("      \(s.help.replacingOccurrences(of: "`", with: ""))")
        }
        return lines.joined(separator: "\n")
    }()

    /// `--access-token-ttl 5m` / `--access-token-ttl=5m` → `["access_token_ttl": "5m"]`, by the settings table.
    static func parseSettingFlags(_ arguments: [String]) throws -> [String: String] {
        var flags: [String: String] = [:]
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            let (name, inline) = argument.firstIndex(of: "=").map { (String(argument[..<$0]), String(argument[argument.index(after: $0)...])) }
                ?? (argument, nil)
            guard let setting = GatehouseConfiguration.settingsTable.first(where: { $0.flag == name }), setting.key != "config" else {
                throw ValidationError("Unknown option '\(name)' (see `gatehouse serve --help` for the settings)")
            }
            if let inline {
                flags[setting.key] = inline
            } else {
                guard i + 1 < arguments.count else { throw ValidationError("Missing value for '\(name)'") }
                i += 1
                flags[setting.key] = arguments[i]
            }
            i += 1
        }
        return flags
    }

    @OptionGroup var common: CommonOptions
    /// Every setting of the table as `--flag VALUE` or `--flag=VALUE` (listed in `--help`).
    @Argument(parsing: .allUnrecognized, help: .hidden) var settingFlags: [String] = []

    func run() async throws {
        let flags = try Self.parseSettingFlags(settingFlags)
        let config = try common.configuration(extra: flags)
        // With tracing, every line logged inside a traced request names its trace_id and span_id.
        config.logFormat.bootstrap(also: config.otelEndpoint == nil ? [] : [OTel.makeLoggingMetadataProvider()])
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
            let observability = try Self.tracing(config, logger: logger)
            let app = try await buildApplication(config, storage: store, logger: logger)
            try await app.run(observability: observability)
        } catch {
            await store.close()
            throw CLIError("cannot serve on \(config.host):\(config.port): \(error)")
        }
        await store.close()
    }
}

extension Serve {
    /// With `otel_endpoint`: swift-otel's tracer (OTLP/HTTP protobuf to `<endpoint>/v1/traces`, W3C trace
    /// context, parent-based always-on sampling: the ratio is drawn at the edge) as the process's tracer, and the exporter service to
    /// run beside the server. Logs and metrics stay Gatehouse's own (no OTel logging or metrics).
    static func tracing(_ config: GatehouseConfiguration, logger: Logger) throws -> [any Service] {
        guard let endpoint = config.otelEndpoint else { return [] }
        var otel = OTel.Configuration.default
        otel.serviceName = "gatehouse"
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.enabled = true
        otel.propagators = [.traceContext]
        // The ratio is applied to new requests by the server (`TraceSampler`, no span for those not drawn);
        // what reaches the tracer is recorded, or follows the caller's sampled flag.
        otel.traces.sampler = .parentBasedAlwaysOn
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.protocol = .httpProtobuf
        let base = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        otel.traces.otlpExporter.endpoint = base.hasSuffix("/v1/traces") ? base : base + "/v1/traces"
        otel.diagnosticLogger = .custom(logger)
        // swift-otel's warnings include the carrier of a trace context it could not parse (all request
        // headers): only its errors are logged. Requests reach it with valid trace headers only anyway.
        otel.diagnosticLogLevel = .error
        // A collector that is down or slow costs a shutdown at most a few seconds.
        otel.traces.otlpExporter.timeout = .seconds(2)
        otel.traces.batchSpanProcessor.exportTimeout = .seconds(2)
        let backend = try OTel.makeTracingBackend(configuration: otel)
        InstrumentationSystem.bootstrap(backend.factory)
        logger.info("tracing to \(Redaction.url(otel.traces.otlpExporter.endpoint)) (sampling \(config.otelSamplingRatio))")
        return [backend.service]
    }
}

/// Settings the profiles need that only the database can confirm: one clear line at start, not a failure
/// at request time.
func checkCompat(_ config: GatehouseConfiguration, store: SQLStore) async throws {
    if config.compat.profiles.contains(.dot), !config.compat.exchangeProviders.isEmpty {
        guard let id = config.compat.clientID, let client = try await store.client(id: id) else {
            throw CLIError("invalid compat_client_id: dot's register-by-token (compat_exchange_providers) needs it, naming an existing client")
        }
        guard client.allows(grantType: GrantType.tokenExchange) else {
            throw CLIError(
                "invalid compat_client_id: client '\(id)' is not registered for the token-exchange grant that register-by-token uses (--grant-type \(GrantType.tokenExchange))")
        }
        let known = Set(try await store.listProviders().map(\.id) + config.providers.map(\.id))
        for id in config.compat.exchangeProviders.sorted() where !known.contains(id) {
            throw CLIError("invalid compat_exchange_providers: no provider '\(id)' (add it with `gatehouse providers add`)")
        }
    }
    guard config.compat.profiles.contains(.lego) else { return }
    guard let id = config.compat.clientID else {
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
