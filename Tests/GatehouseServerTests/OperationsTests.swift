import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Logging
import Synchronization
import Testing

@testable import GatehouseServer

/// Readiness, request ids and the JSON log format (docs/operations.md).
@Suite("Operations")
struct OperationsTests {
    @Test(arguments: TestDatabase.available)
    func readinessNamesTheFailingCheck(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let ok = try await h.get("/readyz")
            #expect(ok.status == .ok)
            #expect(ok.headers[.cacheControl] == "no-store")
            #expect(ok.string("status") == "ready")
            #expect(ok["checks"] as? [String: String]
                == ["database": "ok", "migrations": "ok", "signing_keys": "ok", "shutdown": "ok"])
            #expect(ok["failing"] == nil)

            // A migration the binary knows but the database lacks.
            #expect(try await h.store.pendingMigrations().isEmpty)
            try await h.store.executeOutsideTransaction(
                "DELETE FROM gatehouse_migrations WHERE version = (SELECT MAX(version) FROM gatehouse_migrations)")
            let pending = try await h.store.pendingMigrations()
            #expect(pending.count == 1)
            let stale = try await h.get("/readyz")
            #expect(stale.status == .serviceUnavailable)
            #expect(stale.string("status") == "not_ready")
            #expect(stale["failing"] as? [String] == ["migrations"])
            #expect((stale["checks"] as? [String: String])?["migrations"] == "pending: \(pending[0])")
            // Recorded again (re-running its statements would fail: the schema has them).
            try await h.store.executeOutsideTransaction(
                "INSERT INTO gatehouse_migrations (version, name, applied_at) VALUES (\(pending[0]), 'restored', 0)")
            #expect(try await h.get("/readyz").status == .ok)

            // Shutdown has begun: 503 at once; liveness is unaffected.
            h.services.readiness.beginShutdown()
            let draining = try await h.get("/readyz")
            #expect(draining.status == .serviceUnavailable)
            #expect(draining["failing"] as? [String] == ["shutdown"])
            #expect(try await h.get("/healthz").status == .ok)
        }
    }

    /// `otel_sampling_ratio` for new requests: the share drawn is the ratio (within 1 % over 200,000 draws),
    /// 0 draws none and 1 draws all.
    @Test func traceSamplerDrawsTheRatio() {
        for ratio in [0.01, 0.25, 0.5] {
            let sampler = TraceSampler(ratio: ratio)
            let drawn = (0..<200_000).reduce(0) { n, _ in n + (sampler.sample() ? 1 : 0) }
            #expect(abs(Double(drawn) / 200_000 - ratio) < 0.01, "ratio \(ratio): \(drawn)")
        }
        #expect(!(0..<10_000).contains { _ in TraceSampler(ratio: 0).sample() })
        let all = TraceSampler(ratio: 1)
        #expect((0..<10_000).allSatisfy { _ in all.sample() })
    }

    /// Trace headers reach the tracer only within W3C bounds (a huge `tracestate` would ride on every
    /// outgoing call; a malformed one made swift-otel log the request's headers).
    @Test func traceHeadersAreBounded() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        #expect(HTTPFieldsExtractor.isTraceParent(good))
        for bad in [
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            good + "-x", "00-bad", "",
        ] {
            #expect(!HTTPFieldsExtractor.isTraceParent(bad), "\(bad)")
        }
        let extractor = HTTPFieldsExtractor()
        var fields = HTTPFields()
        fields[HTTPField.Name("tracestate")!] = (0..<33).map { "k\($0)=v" }.joined(separator: ",")
        #expect(extractor.extract(key: "tracestate", from: fields) == nil)
        fields[HTTPField.Name("tracestate")!] = "k=" + String(repeating: "v", count: 600)
        #expect(extractor.extract(key: "tracestate", from: fields) == nil)
        fields[HTTPField.Name("tracestate")!] = "vendor=abc,other=def"
        #expect(extractor.extract(key: "tracestate", from: fields) == "vendor=abc,other=def")
    }

    @Test func readinessDeadlineDoesNotWaitForAHungCheck() async {
        let value = await HealthRoutes.within(.milliseconds(100)) { () async -> Int in
            // Ignores cancellation for a while, as a hung connection would.
            let until = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(20)) }
            return 1
        }
        // nil: the deadline answered, not the operation (which returns 1 only after 3 s). Wall time is not
        // asserted: a loaded test machine may delay any task.
        #expect(value == nil)
        #expect(await HealthRoutes.within(.seconds(5)) { 7 } == 7)
    }

    @Test(arguments: TestDatabase.available)
    func everyResponseHasARequestID(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let kept = try await h.get("/healthz", headers: [.xRequestID: "proxy-id_1.2:3"])
            #expect(kept.headers[.xRequestID] == "proxy-id_1.2:3")
            var seen: Set<String> = []
            for given in ["has space", String(repeating: "a", count: 129), "é", "a\"b", ""] {
                let r = try await h.get("/healthz", headers: [.xRequestID: given])
                let id = try #require(r.headers[.xRequestID])
                #expect(id != given && id.utf8.count == 22, "\(given)")
                seen.insert(id)
            }
            #expect(seen.count == 5)
            // Refusals and unknown routes too; the router's own refusals are RFC 9457 problem details.
            let missing = try await h.get("/no-such-route")
            #expect(missing.status == .notFound)
            #expect(missing.headers[.xRequestID] != nil)
            #expect(missing.headers[.contentType] == "application/problem+json")
            #expect(missing.json["status"] as? Int == 404 && missing.json["title"] as? String == "Not Found")
            #expect(try await h.post("/oauth2/token", []).headers[.xRequestID] != nil)
        }
    }

    @Test func jsonLogLinesAreOneObjectEach() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "gatehouse") { label in
            JSONLogHandler(label: label, metadataProvider: RequestID.metadataProvider) { line in
                lines.withLock { $0.append(line) }
            }
        }
        logger.logLevel = .debug
        logger[metadataKey: "static"] = "s"
        RequestID.$current.withValue("rid-1") {
            logger.info(
                "quote \" backslash \\ newline \n tab \t nul \u{0} sep \u{2028} é",
                metadata: [
                    "status": .stringConvertible(200), "duration_ms": .stringConvertible(1.5),
                    "ok": .stringConvertible(true), "level": "shadow", "list": .array(["a", .stringConvertible(2)]),
                    "nested": .dictionary(["k": "v"]),
                ])
        }
        logger.debug("no request")
        let written = lines.withLock { $0 }
        #expect(written.count == 2)
        #expect(written.allSatisfy { $0.hasSuffix("}\n") && $0.filter { $0 == "\n" }.count == 1 })
        let first = try #require(try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: Any])
        #expect(first["message"] as? String == "quote \" backslash \\ newline \n tab \t nul \u{0} sep \u{2028} é")
        #expect(first["level"] as? String == "info")
        #expect(first["logger"] as? String == "gatehouse")
        #expect(first["meta_level"] as? String == "shadow")
        #expect(first["request_id"] as? String == "rid-1")
        #expect(first["static"] as? String == "s")
        #expect(first["status"] as? Int == 200)
        #expect(first["duration_ms"] as? Double == 1.5)
        #expect(first["ok"] as? Bool == true)
        #expect((first["list"] as? [Any])?.count == 2)
        #expect((first["nested"] as? [String: String]) == ["k": "v"])
        let time = try #require(first["time"] as? String)
        #expect(time.hasSuffix("Z") && time.contains("."))
        #expect(try Date(time, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)) <= Date())
        // The raw line escapes the separator (valid JavaScript too).
        #expect(written[0].contains("\\u2028") && written[0].contains("\\u0000"))
        let second = try #require(try JSONSerialization.jsonObject(with: Data(written[1].utf8)) as? [String: Any])
        #expect(second["request_id"] == nil)
        #expect(second["level"] as? String == "debug")
    }

    /// Values from requests cannot forge text log lines; URLs in error details lose their secrets.
    @Test func logValuesAreEscapedAndURLsRedacted() async throws {
        // Control characters escaped; a value with spaces, `=` or quotes quoted, so it cannot pass for fields.
        #expect(TextLogHandler.escaped(.string("bob\n2026\u{1b}[2J")) == .string("bob\\n2026\\u{1b}[2J"))
        #expect(TextLogHandler.escaped(.array([.string("a\rb")])) == .array([.string("a\\rb")]))
        #expect(TextLogHandler.escaped(.string(#"x route=/admin "q""#)) == .string(#""x route=/admin \"q\"""#))
        #expect(TextLogHandler.escaped(.string(#"a\" b"#)) == .string(#""a\\\" b""#))
        #expect(Redaction.logValue(String(repeating: "x", count: 400)).count == 301)
        #expect(Redaction.url("https://u:p@hook.example:8443/in?token=SECRETQ#f") == "https://hook.example:8443/in?…")
        #expect(Redaction.url("not a url") == "<unparseable URL>")
        // The real HTTP client, against a port nobody listens on: the failure names the URL without its token.
        do {
            _ = try await UpstreamHTTPClient().postJSON("http://127.0.0.1:1/hook?token=SECRETQ", body: "{}", headers: [])
            Issue.record("a POST to port 1 succeeded")
        } catch let e as UpstreamError {
            #expect(!e.detail.contains("SECRETQ"))
            #expect(e.detail.hasPrefix("http://127.0.0.1:1/hook?…"))
        }
    }

    /// `/metrics` after a known sequence: counts by route template, grant, error and outcome.
    @Test(arguments: TestDatabase.available)
    func metricsCountWhatHappened(db: TestDatabase) async throws {
        try await Harness.run(db) { h in
            let c = try await h.makeClient()
            for _ in 0..<2 { #expect(try await h.token(c).status == .ok) }
            #expect(try await h.post("/oauth2/token", [("grant_type", "client_credentials")], auth: (c.id, "wrong")).status == .unauthorized)
            _ = try await h.get("/nowhere")
            let page = try await h.get("/metrics")
            #expect(page.status == .ok)
            #expect(page.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            let lines = page.body.split(separator: "\n").map(String.init)
            func sample(_ prefix: String) -> Double? {
                lines.first { $0.hasPrefix(prefix + " ") }.flatMap { Double($0.split(separator: " ").last!) }
            }
            #expect(sample(#"gatehouse_tokens_issued_total{grant_type="client_credentials",client_id="\#(c.id)"}"#) == 2)
            #expect(sample(#"gatehouse_token_errors_total{error="invalid_client",grant_type="unknown"}"#) == 1)
            #expect(sample(#"gatehouse_http_requests_total{route="/oauth2/token",method="POST",status_class="2xx"}"#) == 2)
            #expect(sample(#"gatehouse_http_requests_total{route="unmatched",method="GET",status_class="4xx"}"#) == 1)
            #expect(sample(#"gatehouse_http_request_duration_seconds_count{route="/oauth2/token",method="POST",status_class="2xx"}"#) == 2)
            #expect((sample("process_open_fds") ?? 0) > 0)
            #expect(sample("gatehouse_outbox_pending{kind=\"webhook\"}") == 0)
            #expect(!page.body.contains("nowhere"))
        }
    }

    @Test func booleanSettingsAndTheLogFormat() throws {
        var c = try GatehouseConfiguration.load(
            flags: ["access_log": "off", "log_format": "JSON", "shutdown_grace": "0"], environment: [:])
        #expect(c.accessLog == false && c.logFormat == .json && c.shutdownGrace == 0)
        c = try GatehouseConfiguration.load(flags: [:], environment: ["GATEHOUSE_ACCESS_LOG": "yes"])
        #expect(c.accessLog && c.logFormat == .text && c.shutdownGrace == 5)
        #expect(throws: GatehouseConfiguration.Error.self) {
            try GatehouseConfiguration.load(flags: ["access_log": "maybe"], environment: [:])
        }
        #expect(throws: GatehouseConfiguration.Error.self) {
            try GatehouseConfiguration.load(flags: ["log_format": "xml"], environment: [:])
        }
        #expect(throws: GatehouseConfiguration.Error.self) {
            try GatehouseConfiguration.load(flags: ["shutdown_grace": "10m"], environment: [:])
        }
    }
}
