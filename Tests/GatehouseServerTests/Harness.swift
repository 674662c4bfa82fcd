import Crypto
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
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
        _ db: TestDatabase, configure: (inout ServerSettings) -> Void = { _ in }, compat: CompatOptions = CompatOptions(),
        webhooks: [WebhookConfig] = [],
        _ body: @escaping @Sendable (Harness) async throws -> Void
    ) async throws {
        let testClock = TestClock()
        var settings = ServerSettings(issuer: issuer)
        // The harness's admin writes to the database directly, as the CLI does; with the cache on, those
        // changes would only show after the TTL. CachingTests covers the cache itself.
        settings.cacheTTL = 0
        configure(&settings)
        let frozen = settings
        var config = GatehouseConfiguration(issuer: issuer)
        config.settings = frozen
        config.compat = compat
        config.webhooks = webhooks
        let configuration = config
        try await db.withStore(clock: testClock.clock) { store in
            let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            // The same builder as `gatehouse serve` (routes, profiles, services), driven without a socket.
            let built = try await buildApplication(
                configuration, storage: store, logger: logger,
                dependencies: GatehouseDependencies(
                    clock: testClock.clock, passwords: PasswordHasher(cost: 4), backgroundServices: false))
            try await built.application.test(.router) { client in
                try await body(Harness(store: store, services: built.services, testClock: testClock, client: client))
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
        contentType: String = "application/x-www-form-urlencoded", rawBody: String? = nil, headers extra: HTTPFields = [:]
    ) async throws -> Reply {
        var headers: HTTPFields = [.contentType: contentType]
        for field in extra { headers[field.name] = nil }
        headers.append(contentsOf: extra)
        if let auth { headers[.authorization] = Self.basic(auth.0, auth.1) }
        if let authorization { headers[.authorization] = authorization }
        let body = rawBody ?? Self.form(pairs)
        return try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body)) { r in
            Reply(status: r.status, headers: r.headers, body: String(buffer: r.body))
        }
    }

    func get(_ path: String, headers: HTTPFields = [:]) async throws -> Reply {
        try await client.execute(uri: path, method: .get, headers: headers) { r in
            Reply(status: r.status, headers: r.headers, body: String(buffer: r.body))
        }
    }

    func head(_ path: String, headers: HTTPFields = [:]) async throws -> Reply {
        try await client.execute(uri: path, method: .head, headers: headers) { r in
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

// MARK: - Browser flow helpers (authorization endpoint, login, consent, OIDC)


extension Harness.Reply {
    var location: String? { headers[.location] }
    func header(_ name: String) -> String? { headers[HTTPField.Name(name)!] }
    var setCookies: [String] { headers[values: .setCookie] }
    var contentType: String { headers[.contentType] ?? "" }
    var isHTMLPage: Bool { contentType.hasPrefix("text/html") }
    /// The `Set-Cookie` header for `name`, if any.
    func setCookie(_ name: String) -> String? { setCookies.first { $0.hasPrefix(name + "=") } }
    /// The query parameters of the `Location` header.
    var redirectParameters: [String: String] { Harness.query(location ?? "") }
    /// The hidden inputs of the page, in order (HTML-unescaped).
    var hiddenFields: [(String, String)] { Harness.hiddenFields(body) }
    func hidden(_ name: String) -> String? { hiddenFields.first { $0.0 == name }?.1 }
}

extension Harness {
    static let sessionCookie = "__Host-gatehouse_session"
    static let csrfCookie = "__Host-gatehouse_csrf"
    static let redirect = "https://app.example.com/cb"
    static let password = "correct horse 1"

    /// The query parameters of a URL or path (form-decoded, first value of each).
    static func query(_ url: String) -> [String: String] {
        guard let q = url.firstIndex(of: "?") else { return [:] }
        var out: [String: String] = [:]
        for part in url[url.index(after: q)...].split(separator: "&") {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func dec(_ s: Substring) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            let name = dec(kv[0])
            if out[name] == nil { out[name] = kv.count > 1 ? dec(kv[1]) : "" }
        }
        return out
    }

    static func htmlUnescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&#39;", with: "'")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    static func hiddenFields(_ html: String) -> [(String, String)] {
        let regex = try! NSRegularExpression(pattern: #"<input type="hidden" name="([^"]*)" value="([^"]*)">"#)
        let ns = html as NSString
        return regex.matches(in: html, range: NSRange(location: 0, length: ns.length)).map {
            (htmlUnescape(ns.substring(with: $0.range(at: 1))), htmlUnescape(ns.substring(with: $0.range(at: 2))))
        }
    }

    /// The text of the first element with `id` (e.g. `<code id="code">…</code>`), HTML-unescaped.
    static func element(id: String, in html: String) -> String? {
        guard let start = html.range(of: "id=\"\(id)\""), let gt = html[start.upperBound...].firstIndex(of: ">"),
            let end = html[gt...].range(of: "</")
        else { return nil }
        return htmlUnescape(String(html[html.index(after: gt)..<end.lowerBound]))
    }

    /// A user with a password (and optional profile).
    func makeUser(
        _ username: String? = nil, password: String = Harness.password, email: String? = nil, name: String? = nil,
        profile: UserProfile = UserProfile()
    ) async throws -> UserRecord {
        try await admin.createUser(
            username: username ?? "u\(UUID().uuidString.prefix(8).lowercased())", email: email, name: name,
            password: password, profile: profile)
    }

    /// A client registered for the authorization-code flow.
    struct App: Sendable {
        let id: String
        let secret: String
        let record: ClientRecord
        var redirectURI: String { record.redirectURIs.first ?? "" }
        var isPublic: Bool { record.isPublic }
        var credentials: (id: String, secret: String) { (id, secret) }
    }

    func makeApp(
        name: String = "Example App", redirectURIs: [String] = [Harness.redirect], postLogoutRedirectURIs: [String] = [],
        isPublic: Bool = false, skipConsent: Bool = true, scope: String = "openid profile email",
        grantTypes: [String] = [], resources: [String] = []
    ) async throws -> App {
        var new = Administration.NewClient(name: name)
        new.redirectURIs = redirectURIs
        new.postLogoutRedirectURIs = postLogoutRedirectURIs
        new.isPublic = isPublic
        // RFC 6749 §10.2: a public client cannot skip consent (tests remember it instead: `remember`).
        new.skipConsent = skipConsent && !isPublic
        new.scope = scope
        new.grantTypes = grantTypes
        new.resources = resources
        let (record, secret) = try await admin.createClient(new)
        return App(id: record.id, secret: secret ?? "", record: record)
    }

    /// The user's remembered consent for `app` (what "remember this decision" stores), so a public client's
    /// request goes through without the consent page.
    func remember(_ app: App, for user: UserRecord, scope: String = "openid profile email offline_access") async throws {
        try await store.saveConsent(
            ConsentRecord(userID: user.id, clientID: app.id, scope: Scope(parsing: scope)!, createdAt: testClock.clock.nowSeconds))
    }

    /// PKCE (RFC 7636): a random verifier and its S256 challenge, computed independently of the server.
    struct PKCEPair: Sendable {
        let verifier: String
        let challenge: String
        init(verifier: String = Base64URL.encode(Array((0..<32).map { _ in UInt8.random(in: 0...255) }))) {
            self.verifier = verifier
            self.challenge = Base64URL.encode(Array(SHA256.hash(data: Data(verifier.utf8))))
        }
    }

    /// `/oauth2/authorize?…` for `app` with the usual parameters plus `extra` (a nil value removes one).
    static func authorizePath(
        _ app: App, pkce: PKCEPair? = nil, scope: String? = "openid", state: String? = "st-123",
        redirectURI: String? = nil, _ extra: [(String, String?)] = []
    ) -> String {
        var pairs: [(String, String?)] = [
            ("response_type", "code"), ("client_id", app.id), ("redirect_uri", redirectURI ?? app.redirectURI),
            ("scope", scope), ("state", state),
        ]
        if let pkce { pairs += [("code_challenge", pkce.challenge), ("code_challenge_method", "S256")] }
        for (k, v) in extra {
            if let i = pairs.firstIndex(where: { $0.0 == k }) { pairs[i].1 = v } else { pairs.append((k, v)) }
        }
        return "/oauth2/authorize?" + form(pairs.compactMap { k, v in v.map { (k, $0) } })
    }

    /// Redeems a code at the token endpoint (public clients send `client_id`, confidential ones Basic).
    func redeem(
        _ app: App, code: String, redirectURI: String? = nil, verifier: String? = nil, extra: [(String, String)] = []
    ) async throws -> Reply {
        var pairs = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI ?? app.redirectURI)]
        if let verifier { pairs.append(("code_verifier", verifier)) }
        pairs += extra
        if app.isPublic { return try await post("/oauth2/token", pairs + [("client_id", app.id)]) }
        return try await post("/oauth2/token", pairs, auth: app.credentials)
    }

    /// Whether introspection (by a separate confidential client) calls `token` active.
    func isActive(_ token: String) async throws -> Bool {
        let inspector = try await makeClient(scope: "read")
        return try await post("/oauth2/introspect", [("token", token)], auth: inspector)["active"] as? Bool ?? false
    }
}

/// A browser: keeps the cookies the server sets and sends them back.
final class Browser: Sendable {
    let h: Harness
    private let jar = Mutex<[String: String]>([:])

    init(_ h: Harness) { self.h = h }

    func cookie(_ name: String) -> String? { jar.withLock { $0[name] } }
    func setCookie(_ name: String, _ value: String?) { jar.withLock { $0[name] = value } }
    var sessionCookie: String? { cookie(Harness.sessionCookie) }

    private var cookieHeader: HTTPFields {
        let value = jar.withLock { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        return value.isEmpty ? [:] : [.cookie: value]
    }

    private func absorb(_ reply: Harness.Reply) -> Harness.Reply {
        for header in reply.setCookies {
            let parts = header.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let first = parts.first, let eq = first.firstIndex(of: "=") else { continue }
            let name = String(first[..<eq])
            let value = String(first[first.index(after: eq)...])
            let expired = parts.contains { $0.lowercased() == "max-age=0" } || value.isEmpty
            jar.withLock { $0[name] = expired ? nil : value }
        }
        return reply
    }

    func get(_ path: String) async throws -> Harness.Reply {
        absorb(try await h.get(path, headers: cookieHeader))
    }

    func head(_ path: String) async throws -> Harness.Reply {
        absorb(try await h.head(path, headers: cookieHeader))
    }

    func post(_ path: String, _ pairs: [(String, String)]) async throws -> Harness.Reply {
        absorb(try await h.post(path, pairs, headers: cookieHeader))
    }

    /// A CSRF token for our forms (the login page sets the cookie and repeats it in a hidden field).
    func csrf() async throws -> String {
        let page = try await get("/login")
        return try #require(page.hidden("csrf_token"))
    }

    /// Signs in through the login form; returns the answer to the POST (303 on success).
    @discardableResult
    func signIn(_ username: String, password: String = Harness.password, returnTo: String? = nil) async throws
        -> Harness.Reply
    {
        let token = try await csrf()
        var form = [("csrf_token", token), ("username", username), ("password", password)]
        if let returnTo { form.append(("return_to", returnTo)) }
        return try await post("/login", form)
    }

    /// GETs `path` and follows local redirects (paths starting with "/") until a page or a foreign redirect.
    func follow(_ path: String) async throws -> Harness.Reply {
        var reply = try await get(path)
        var hops = 0
        while [.found, .seeOther].contains(reply.status), let next = reply.location, next.hasPrefix("/"), hops < 5 {
            reply = try await get(next)
            hops += 1
        }
        return reply
    }

    /// Submits the form on `page` (its hidden fields) to `action` with `extra` fields.
    func submit(_ page: Harness.Reply, to action: String, _ extra: [(String, String)]) async throws -> Harness.Reply {
        try await post(action, page.hiddenFields + extra)
    }

    /// Runs the authorization request (signed in, no consent page expected) and returns the code.
    func code(_ path: String) async throws -> String {
        let r = try await get(path)
        #expect(r.status == .found, "expected a redirect with a code, got \(r.status): \(r.body.prefix(300))")
        return try #require(r.redirectParameters["code"], "no code in \(r.location ?? "nil")")
    }
}
