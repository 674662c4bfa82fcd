import Crypto
import Foundation
import GatehouseCore
import GatehouseResourceServer
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// The admin REST API (`/admin/v1`), described by `Admin/openapi.json` (served at `/admin/v1/openapi.json`).
/// Handlers decode, call `Administration`, encode. Authentication: a Bearer access token of this server with
/// scope `gatehouse:admin` (everything) or `gatehouse:admin:read` (GET only). Errors are RFC 9457 problem
/// details; single resources carry an `ETag`, and PATCH and DELETE honour `If-Match`.
struct AdminAPI: Sendable {
    let services: GatehouseServices
    let logger: Logger
    static let base = "/admin/v1"

    /// Who is calling, from a verified token.
    struct Caller: Sendable {
        let actor: AuditActor
    }

    typealias Handler = @Sendable (inout Request, GatehouseRequestContext, Administration) async throws -> Response

    func add(to router: Router<GatehouseRequestContext>) {
        router.get(RouterPath(Self.base + "/openapi.json")) { _, _ in
            var response = HTTP.raw(PackageResources.openapi_json, noStore: false, contentType: "application/json")
            response.headers[.cacheControl] = "public, max-age=300"
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
        let users = UsersRoutes()
        route(router, .get, "/stats") { _, _, admin in try Self.json(try await admin.stats()) }
        // Users
        route(router, .get, "/users", users.list)
        route(router, .post, "/users", users.create)
        route(router, .get, "/users/:id", users.show)
        route(router, .patch, "/users/:id", users.update)
        route(router, .delete, "/users/:id", users.delete)
        route(router, .post, "/users/:id/password", users.password)
        route(router, .post, "/users/:id/disable") { r, c, a in try await users.toggle(&r, c, a, disable: true) }
        route(router, .post, "/users/:id/enable") { r, c, a in try await users.toggle(&r, c, a, disable: false) }
        route(router, .get, "/users/:id/sessions", users.sessions)
        route(router, .delete, "/users/:id/sessions", users.endSessions)
        route(router, .get, "/users/:id/grants", users.grants)
        route(router, .get, "/users/:id/groups", users.groups)
        route(router, .get, "/users/:id/identities", users.identities)
        route(router, .delete, "/users/:id/identities/:provider/:subject", users.unlink)
        // Clients
        let clients = ClientsRoutes()
        route(router, .get, "/clients", clients.list)
        route(router, .post, "/clients", clients.create)
        route(router, .get, "/clients/:id", clients.show)
        route(router, .patch, "/clients/:id", clients.update)
        route(router, .delete, "/clients/:id", clients.delete)
        route(router, .post, "/clients/:id/secret", clients.rotateSecret)
        // Scopes, groups, services, providers
        let more = DirectoryRoutes(services: services)
        route(router, .get, "/scopes", more.scopes)
        route(router, .post, "/scopes", more.createScope)
        route(router, .get, "/scopes/:name", more.scope)
        route(router, .patch, "/scopes/:name", more.updateScope)
        route(router, .delete, "/scopes/:name", more.deleteScope)
        route(router, .get, "/groups", more.groups)
        route(router, .post, "/groups", more.createGroup)
        route(router, .get, "/groups/:name", more.group)
        route(router, .delete, "/groups/:name", more.deleteGroup)
        route(router, .get, "/groups/:name/members", more.members)
        route(router, .post, "/groups/:name/members", more.addMember)
        route(router, .delete, "/groups/:name/members/:user", more.removeMember)
        route(router, .get, "/services", more.servicesList)
        route(router, .post, "/services", more.createService)
        route(router, .get, "/services/:name", more.service)
        route(router, .delete, "/services/:name", more.deleteService)
        route(router, .get, "/services/:name/grants", more.serviceGrants)
        route(router, .post, "/services/:name/grants", more.grantPermissions)
        route(router, .delete, "/services/:name/grants/:user", more.revokePermissions)
        route(router, .get, "/providers", more.providers)
        route(router, .get, "/providers/:id", more.provider)
        route(router, .delete, "/providers/:id", more.deleteProvider)
        // Keys, grants, webhook deliveries, audit
        let ops = OperationsRoutes(services: services)
        route(router, .get, "/keys", ops.keys)
        route(router, .post, "/keys/rotate", ops.rotateKey)
        route(router, .post, "/keys/:kid/revoke", ops.revokeKey)
        route(router, .delete, "/grants/:id", ops.revokeGrant)
        route(router, .get, "/events", ops.events)
        route(router, .get, "/events/:id", ops.event)
        route(router, .post, "/events/:id/retry", ops.retryEvent)
        route(router, .get, "/audit", ops.audit)
        refuseOtherMethods(router)
    }

    private func route(
        _ router: Router<GatehouseRequestContext>, _ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler
    ) {
        let api = self
        router.on(RouterPath(Self.base + path), method: method) { request, context in
            await api.handle(request, context, method: method, handler)
        }
        methods.table.withLock { $0[path, default: []].append(method) }
    }

    /// The methods each path has: the others answer 405 with `Allow` (RFC 9110 §15.5.6).
    private final class MethodTable: Sendable {
        let table = Mutex<[String: [HTTPRequest.Method]]>([:])
    }
    private let methods = MethodTable()

    private func refuseOtherMethods(_ router: Router<GatehouseRequestContext>) {
        for (path, allowed) in methods.table.withLock({ $0 }) {
            var allow = allowed
            if allow.contains(.get) { allow.append(.head) }
            let header = allow.map(\.rawValue).joined(separator: ", ")
            for m in [HTTPRequest.Method.get, .post, .put, .patch, .delete] where !allow.contains(m) {
                router.on(RouterPath(Self.base + path), method: m) { _, _ in
                    var response = Problem(405, detail: "Use \(header) here.").response
                    response.headers[.allow] = header
                    return response
                }
            }
        }
    }

    private func handle(
        _ request: Request, _ context: GatehouseRequestContext, method: HTTPRequest.Method, _ handler: Handler
    ) async -> Response {
        var request = request
        do {
            let caller = try await authenticate(request, write: method != .get && method != .head)
            var response = try await handler(&request, context, services.administration(caller.actor))
            response.headers[.cacheControl] = "no-store"
            return response
        } catch let problem as Problem {
            return problem.response
        } catch let e as Administration.ValidationError {
            return Problem(422, detail: e.description, errors: [.init(field: e.field ?? "body", message: e.description)]).response
        } catch let e as AdminError {
            switch e {
            case .notFound(let m): return Problem(404, detail: m).response
            case .conflict(let m): return Problem(409, detail: m).response
            }
        } catch {
            logger.error("unexpected error", metadata: ["endpoint": "admin", "detail": .string("\(error)")])
            return Problem(500, detail: "The server could not complete the request.").response
        }
    }

    /// RFC 6750 bearer token of this server with an admin scope. A user's token also needs the user to hold
    /// the permission now (a revoked permission ends the token's use here at once, not at its expiry).
    private func authenticate(_ request: Request, write: Bool) async throws -> Caller {
        let token: String
        do {
            token = try BearerToken.extract(authorizationHeader: request.headers[.authorization], query: request.uri.query, formValues: nil)
        } catch let e as ResourceServerError {
            throw e.bearerError == "invalid_request"
                ? Problem(400, detail: e.detail, challenge: "error=\"invalid_request\"")
                : Problem(401, detail: "This API needs a Bearer access token with scope gatehouse:admin.", challenge: nil)
        }
        guard let claims = try await services.verifier.activeClaims(token, revocations: services.storage),
            claims.aud.values.contains(services.settings.audience)
        else {
            throw Problem(401, detail: "The access token is invalid, expired or revoked.", challenge: "error=\"invalid_token\"")
        }
        let scope = Scope(parsing: claims.scope) ?? .empty
        var allowed = scope.contains(ScopeRecord.admin) || (!write && scope.contains(ScopeRecord.adminRead))
        if allowed, let userID = claims.userID {
            let held = Set(try await services.storage.permissions(service: ScopeRecord.adminService, userID: userID))
            allowed = write ? held.contains("admin") : (held.contains("admin") || held.contains("admin:read"))
        }
        guard allowed else {
            let needed = write ? ScopeRecord.admin : ScopeRecord.adminRead
            throw Problem(
                403, detail: "The access token lacks the scope \(needed).",
                challenge: "error=\"insufficient_scope\", scope=\"\(needed)\"")
        }
        return Caller(actor: claims.userID.map(AuditActor.user) ?? .client(claims.client_id))
    }

    // MARK: encoding

    static let encoder = JSONEncoder.sortedWithoutEscapingSlashes

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        HTTP.raw(Array(try encoder.encode(value)), status: status, noStore: true)
    }

    /// A single resource with its `ETag` (a hash of its representation).
    static func resource<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, location: String? = nil) throws -> Response {
        let bytes = Array(try encoder.encode(value))
        var response = HTTP.raw(bytes, status: status, noStore: true)
        response.headers[.eTag] = etag(bytes)
        if let location { response.headers[.location] = location }
        return response
    }

    static func etag(_ bytes: [UInt8]) -> String {
        "\"" + SHA256.hash(data: bytes).prefix(16).map { String(format: "%02x", $0) }.joined() + "\""
    }

    /// RFC 9110 §13.1.1: `If-Match` (strong comparison) against the resource's current representation.
    static func checkIfMatch<T: Encodable>(_ request: Request, current: T) throws {
        let values = request.headers[values: .ifMatch]
        guard !values.isEmpty else { return }
        let tags = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        if tags.contains("*") { return }
        let now = etag(Array(try encoder.encode(current)))
        guard tags.contains(now) else {
            throw Problem(412, detail: "The resource changed: If-Match does not match its current ETag \(now).")
        }
    }

    static func noContent() -> Response { Response(status: .noContent) }

    /// A path parameter, percent-decoded (nothing stored has a NUL or another control character in its key).
    static func parameter(_ context: GatehouseRequestContext, _ name: String) throws -> String {
        guard let raw = context.parameters.get(name), let value = raw.removingPercentEncoding, !value.isEmpty,
            value.utf8.count <= 1000, !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        else {
            throw Problem(404, detail: "Not found.")
        }
        return value
    }

    /// A path segment for a `Location` header (percent-encoded: a name may hold `/`, `?`, `%` or non-ASCII).
    static func segment(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~:@"))) ?? value
    }

    /// `If-Match` on a resource that has no representation of its own (a membership, a session list): only
    /// `*` can match (RFC 9110 §13.1.1), since no ETag is given out for it.
    static func checkIfMatchWithoutETag(_ request: Request) throws {
        let values = request.headers[values: .ifMatch]
        guard !values.isEmpty else { return }
        let tags = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        guard tags.contains("*") else { throw Problem(412, detail: "This resource has no ETag: If-Match can only be *.") }
    }
}

/// An RFC 9457 problem details answer.
struct Problem: Error, Sendable {
    struct FieldError: Encodable, Sendable {
        let field: String
        let message: String
    }
    let status: Int
    let detail: String
    var errors: [FieldError] = []
    /// For 401/403/400 on authentication: the `WWW-Authenticate: Bearer` parameters (nil: none).
    var challenge: String?
    var isAuthentication = false

    init(_ status: Int, detail: String, errors: [FieldError] = []) {
        self.status = status
        self.detail = detail
        self.errors = errors
    }

    init(_ status: Int, detail: String, challenge: String?) {
        self.status = status
        self.detail = detail
        self.challenge = challenge
        isAuthentication = true
    }

    /// RFC 9110 §15 reason phrases: with type `about:blank`, the title is the status's phrase (RFC 9457 §4.2.1).
    static let titles = [
        400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        409: "Conflict", 412: "Precondition Failed", 413: "Content Too Large", 415: "Unsupported Media Type",
        422: "Unprocessable Content", 500: "Internal Server Error", 503: "Service Unavailable",
    ]

    var response: Response {
        struct Body: Encodable {
            let type: String
            let title: String
            let status: Int
            let detail: String
            let errors: [FieldError]?
        }
        let code = HTTPResponse.Status(code: status)
        let body = Body(
            type: "about:blank", title: Self.titles[status] ?? "Error", status: status, detail: String(detail.prefix(500)),
            errors: status == 422 ? errors : nil)
        var response = HTTP.raw(
            Array((try? AdminAPI.encoder.encode(body)) ?? Data()), status: code, noStore: true,
            contentType: "application/problem+json")
        if isAuthentication {
            response.headers[.wwwAuthenticate] = "Bearer realm=\"gatehouse\"" + (challenge.map { ", " + $0 } ?? "")
        }
        return response
    }
}

/// A JSON value as sent (booleans, integers, other numbers and null kept apart).
enum JSONValue: Decodable {
    case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// The JSON object of a request body, read field by field: wrong types are collected (one entry per field),
/// unknown fields refused, so a typo never passes silently.
struct JSONInput {
    private let object: [String: JSONValue]
    private var seen: Set<String> = []
    private(set) var errors: [Problem.FieldError] = []

    /// Reads the body: JSON (`application/json`, or `application/merge-patch+json` for PATCH), at most 64 KiB,
    /// an object. An empty body is an empty object when `optional`.
    static func read(_ request: inout Request, optional: Bool = false) async throws -> JSONInput {
        if let declared = request.headers[.contentLength], let length = Int(declared), length > HTTP.maxBodySize {
            throw Problem(413, detail: "The body is larger than 64 KiB.")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: HTTP.maxBodySize) } catch {
            throw Problem(413, detail: "The body is larger than 64 KiB.")
        }
        let data = Data(buffer.readableBytesView)
        if data.isEmpty, optional { return JSONInput(object: [:]) }
        let type = (request.headers[.contentType] ?? "").split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        guard type == "application/json" || type == "application/merge-patch+json" else {
            throw Problem(415, detail: "Send the body as application/json.")
        }
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw Problem(400, detail: "The body is not a JSON object.")
        }
        return JSONInput(object: object)
    }

    init(object: [String: JSONValue]) { self.object = object }

    private mutating func value(_ key: String) -> JSONValue? {
        seen.insert(key)
        return object[key]
    }

    private mutating func wrong(_ key: String, _ expected: String) {
        errors.append(.init(field: key, message: "\(key) must be \(expected)"))
    }

    /// Absent: nil. Present: the string (null is a type error; so is a control character other than tab and
    /// newline: no stored value has one, and PostgreSQL cannot store NUL).
    mutating func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v, Self.isClean(s, multiline: Self.multiline.contains(key)) else {
            wrong(key, "a string without control characters")
            return nil
        }
        return s
    }

    /// Fields that may hold line breaks (a postal address); every other field is one line.
    static let multiline: Set<String> = ["address"]

    static func isClean(_ s: String, multiline: Bool = false) -> Bool {
        !s.unicodeScalars.contains {
            ($0.value < 0x20 && !(multiline && ($0.value == 0x0A || $0.value == 0x0D)) && $0.value != 0x09) || $0.value == 0x7F
        }
    }

    /// Absent: nil; null: `.some(nil)`; a string: `.some(value)`.
    mutating func nullableString(_ key: String) -> String?? {
        switch value(key) {
        case nil: return nil
        case .null: return .some(nil)
        case .string(let s) where Self.isClean(s, multiline: Self.multiline.contains(key)): return .some(s)
        default:
            wrong(key, "a string without control characters, or null")
            return nil
        }
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else {
            wrong(key, "true or false")
            return nil
        }
        return b
    }

    mutating func strings(_ key: String, max: Int = 50) -> [String]? {
        guard let v = value(key) else { return nil }
        guard case .array(let list) = v, list.count <= max else {
            wrong(key, "a list of at most \(max) strings")
            return nil
        }
        var out: [String] = []
        for item in list {
            guard case .string(let s) = item, Self.isClean(s) else {
                wrong(key, "a list of at most \(max) strings")
                return nil
            }
            out.append(s)
        }
        return out
    }

    mutating func required(_ key: String) -> String? {
        let s = string(key)
        if object[key] == nil { errors.append(.init(field: key, message: "\(key) is required")) }
        return s
    }

    /// Throws 422 with every collected error and every unknown field.
    func finish() throws {
        var all = errors
        for key in object.keys.sorted() where !seen.contains(key) {
            all.append(.init(field: key, message: "unknown field \(key)"))
        }
        guard all.isEmpty else {
            throw Problem(422, detail: all.map(\.message).joined(separator: "; "), errors: all)
        }
    }
}

/// Query parameters of list requests.
struct ListQuery {
    let parameters: RequestParameters
    init(_ request: Request) throws {
        do { parameters = try HTTP.query(request) } catch {
            throw Problem(400, detail: "The query string is malformed.")
        }
    }

    func string(_ name: String) throws -> String? {
        let value: String?
        do { value = try parameters.single(name) } catch {
            throw Problem(422, detail: "\(name) is given twice", errors: [.init(field: name, message: "\(name) is given twice")])
        }
        if let value, !JSONInput.isClean(value) || value.utf8.count > 1000 {
            throw Problem(422, detail: "\(name) is malformed", errors: [.init(field: name, message: "\(name) is malformed")])
        }
        return value
    }

    var cursor: String? { get throws { try string("cursor") } }

    func limit() throws -> Int {
        guard let raw = try string("limit") else { return 50 }
        guard let n = Int(raw), (1...200).contains(n) else {
            throw Problem(422, detail: "limit must be 1 to 200", errors: [.init(field: "limit", message: "limit must be 1 to 200")])
        }
        return n
    }

    func bool(_ name: String) throws -> Bool? {
        switch try string(name) {
        case nil: return nil
        case "true": return true
        case "false": return false
        default: throw Problem(422, detail: "\(name) must be true or false", errors: [.init(field: name, message: "\(name) must be true or false")])
        }
    }

    func integer(_ name: String) throws -> Int64? {
        guard let raw = try string(name) else { return nil }
        guard let n = Int64(raw), n >= 0, n <= 1 << 53 else {
            throw Problem(422, detail: "\(name) must be a non-negative integer", errors: [.init(field: name, message: "\(name) must be a non-negative integer")])
        }
        return n
    }
}

/// A list answered whole but paged like the others (small tables: scopes, groups, services, …).
func page<T: Encodable & Sendable>(_ items: [T], key: (T) -> String, _ request: Request) throws -> PageView<T> {
    let q = try ListQuery(request)
    let limit = try q.limit()
    let after = try AdminCursor.decode(try q.cursor)
    let sorted = items.sorted { key($0) < key($1) }
    let rest = after.map { a in sorted.filter { key($0) > a } } ?? sorted
    let chunk = Array(rest.prefix(limit))
    return PageView(items: chunk, next_cursor: rest.count > limit ? chunk.last.map { AdminCursor.encode(key($0)) } : nil)
}
