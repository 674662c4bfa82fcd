import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import GatehouseServer

/// Drives the real router (no socket) over a fresh database, with a settable clock.
struct Harness {
    static let issuer = "https://auth.example.test"
    let store: SQLStore
    let services: GatehouseServices
    let testClock: TestClock
    let client: any TestClientProtocol
    var admin: Administration { Administration(storage: store, clock: testClock.clock, passwords: PasswordHasher(cost: 4)) }

    static func run(
        _ db: TestDatabase, configure: (inout ServerSettings) -> Void = { _ in },
        _ body: @escaping @Sendable (Harness) async throws -> Void
    ) async throws {
        let testClock = TestClock()
        var settings = ServerSettings(issuer: issuer)
        // The harness's admin writes to the database directly, as the CLI does; with the cache on, those
        // changes would only show after the TTL. CachingTests covers the cache itself.
        settings.cacheTTL = 0
        configure(&settings)
        let frozen = settings
        try await db.withStore(clock: testClock.clock) { store in
            let services = try await GatehouseServices.make(
                storage: store, settings: frozen, clock: testClock.clock, passwords: PasswordHasher(cost: 4))
            let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            let app = Application(router: try buildRouter(services, logger: logger), logger: logger)
            try await app.test(.router) { client in
                try await body(Harness(store: store, services: services, testClock: testClock, client: client))
            }
        }
    }

    struct Reply: @unchecked Sendable {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
        var error: String? { json["error"] as? String }
        subscript(_ key: String) -> Any? { json[key] }
        func string(_ key: String) -> String? { json[key] as? String }
    }

    static func basic(_ id: String, _ secret: String) -> String {
        func enc(_ s: String) -> String {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            return s.addingPercentEncoding(withAllowedCharacters: allowed)!
        }
        return "Basic " + Data("\(enc(id)):\(enc(secret))".utf8).base64EncodedString()
    }

    static func form(_ pairs: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return pairs.map { "\($0.0.addingPercentEncoding(withAllowedCharacters: allowed)!)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }
            .joined(separator: "&")
    }

    /// POSTs a form (or raw body) to `path`.
    func post(
        _ path: String, _ pairs: [(String, String)] = [], auth: (String, String)? = nil, authorization: String? = nil,
        contentType: String = "application/x-www-form-urlencoded", rawBody: String? = nil
    ) async throws -> Reply {
        var headers: HTTPFields = [.contentType: contentType]
        if let auth { headers[.authorization] = Self.basic(auth.0, auth.1) }
        if let authorization { headers[.authorization] = authorization }
        let body = rawBody ?? Self.form(pairs)
        return try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body)) { r in
            Reply(status: r.status, headers: r.headers, body: String(buffer: r.body))
        }
    }

    func get(_ path: String) async throws -> Reply {
        try await client.execute(uri: path, method: .get) { r in
            Reply(status: r.status, headers: r.headers, body: String(buffer: r.body))
        }
    }

    /// A confidential client and its secret.
    func makeClient(
        grantTypes: [String] = ["client_credentials"], scope: String = "read write", defaultScope: String? = nil,
        resources: [String] = [], allowPassword: Bool = false, isPublic: Bool = false
    ) async throws -> (id: String, secret: String) {
        for s in Scope(parsing: scope)!.tokens where !(try await store.listScopes().contains { $0.name == s }) {
            _ = try? await admin.createScope(name: s, description: s, isDefault: false)
        }
        var new = Administration.NewClient(name: "test app")
        new.grantTypes = grantTypes
        new.scope = scope
        new.defaultScope = defaultScope
        new.resources = resources
        new.allowPasswordGrant = allowPassword
        new.isPublic = isPublic
        let (record, secret) = try await admin.createClient(new)
        return (record.id, secret ?? "")
    }

    func token(_ c: (id: String, secret: String), _ extra: [(String, String)] = [("grant_type", "client_credentials")]) async throws
        -> Reply
    {
        try await post("/oauth2/token", extra, auth: c)
    }

    /// Decodes a JWT's header and payload (no verification).
    static func decodeJWT(_ token: String) -> (header: [String: Any], claims: [String: Any]) {
        let parts = token.split(separator: ".").map(String.init)
        func obj(_ s: String) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Base64URL.decode(s) ?? Data())) as? [String: Any] ?? [:]
        }
        return (obj(parts[0]), obj(parts[1]))
    }
}
