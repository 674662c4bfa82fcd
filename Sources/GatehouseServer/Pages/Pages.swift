import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Mustache

/// Server-rendered pages: the Mustache templates compiled into the binary (Pages/Templates), rendered
/// with HTML escaping, and sent with headers that forbid framing, inline script and referrers.
struct Pages: Sendable {
    let library: MustacheLibrary
    /// The issuer's path (e.g. "" or "/auth"): links and form actions are prefixed with it.
    let prefix: String

    init(issuer: String) throws {
        var library = MustacheLibrary()
        let templates: [(String, [UInt8])] = [
            ("layout", PackageResources.layout_mustache), ("login", PackageResources.login_mustache),
            ("consent", PackageResources.consent_mustache), ("error", PackageResources.error_mustache),
            ("account", PackageResources.account_mustache), ("oob", PackageResources.oob_mustache),
            ("logout", PackageResources.logout_mustache), ("signed_out", PackageResources.signed_out_mustache),
            ("apps", PackageResources.apps_mustache), ("app_created", PackageResources.app_created_mustache),
        ]
        for (name, bytes) in templates {
            try library.register(String(decoding: bytes, as: UTF8.self), named: name)
        }
        self.library = library
        var path = URLComponents(string: issuer)?.path ?? ""
        while path.hasSuffix("/") { path.removeLast() }
        self.prefix = path
    }

    static let stylesheet = PackageResources.gatehouse_css

    /// Pages may load our stylesheet and nothing else: no script at all, no framing, no <base>.
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"

    func render(_ template: String, _ values: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        var values = values
        values["prefix"] = prefix
        let html = library.render(values, withTemplate: template) ?? "Gatehouse: template \(template) is missing"
        var headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8",
            .cacheControl: "no-store",
            .contentSecurityPolicy: Self.contentSecurityPolicy,
        ]
        headers[.pragma] = "no-cache"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The page for requests that must not redirect (RFC 6749 §4.1.2.1) and for other browser errors.
    func error(_ error: OAuthError, heading: String = "This request cannot be completed") -> Response {
        let status = HTTPResponse.Status(code: error.status == 401 ? 400 : error.status)
        return render(
            "error", ["heading": heading, "description": error.description, "code": error.code], status: status)
    }

    /// POST/Redirect/GET: forms are answered with 303 See Other.
    func seeOther(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    /// A redirect to a path of ours (prefixed with the issuer's path).
    func seeOtherLocal(_ path: String) -> Response { seeOther(prefix + path) }
}

/// Cookies of the browser pages. Under an https issuer they are `Secure` with the `__Host-` prefix (bound
/// to this host, path `/`); on a loopback http issuer (development) they cannot be `Secure`.
struct Cookies: Sendable {
    let secure: Bool
    let sessionName: String
    let csrfName: String

    init(settings: ServerSettings) {
        secure = settings.isHTTPS
        sessionName = secure ? "__Host-gatehouse_session" : "gatehouse_session"
        csrfName = secure ? "__Host-gatehouse_csrf" : "gatehouse_csrf"
    }

    /// The value of a cookie in the request (the first, if repeated).
    static func value(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == name { return String(kv[1]) }
            }
        }
        return nil
    }

    /// A value shown once on the page at `path` after a POST (an out-of-band code, a new client secret): it
    /// travels in a short-lived cookie scoped to that page, never in a URL (history, logs, referrers), and
    /// nobody can make the page show a value of their choosing.
    func oneTime(_ name: String, path: String, _ pairs: [(String, String)]) -> String {
        let payload = Base64URL.encode(Array(FormEncoding.encode(pairs).utf8))
        return "\(name)=\(payload); Path=\(path); HttpOnly; SameSite=Strict; Max-Age=120" + (secure ? "; Secure" : "")
    }

    func clearOneTime(_ name: String, path: String) -> String {
        "\(name)=; Path=\(path); HttpOnly; SameSite=Strict; Max-Age=0" + (secure ? "; Secure" : "")
    }

    static func readOneTime(_ name: String, in request: Request) -> RequestParameters? {
        guard let raw = value(name, in: request), raw.utf8.count <= 2048, let decoded = Base64URL.decode(raw) else { return nil }
        return try? HTTP.parseForm(decoded)
    }

    /// `Set-Cookie` for a value; `maxAge` nil makes a browser-session cookie, 0 deletes it.
    func header(_ name: String, _ value: String, maxAge: Int64?) -> String {
        var cookie = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
        if let maxAge { cookie += "; Max-Age=\(maxAge)" }
        if secure { cookie += "; Secure" }
        return cookie
    }
}

/// CSRF protection for every form (double submit): a random value in an `HttpOnly` cookie, repeated in a
/// hidden field; a POST is accepted only when both are present and equal (compared in constant time).
/// `SameSite=Lax` already keeps the cookie off cross-site POSTs; the token also covers same-site attackers.
enum CSRF {
    /// The token for a page: the request's cookie value, or a new one (then `setCookie` must be sent).
    static func token(_ request: Request, cookies: Cookies) -> (token: String, setCookie: String?) {
        if let existing = Cookies.value(cookies.csrfName, in: request), isWellFormed(existing) {
            return (existing, nil)
        }
        let fresh = Secrets.generate()
        return (fresh, cookies.header(cookies.csrfName, fresh, maxAge: nil))
    }

    static func isValid(_ request: Request, form: RequestParameters, cookies: Cookies) -> Bool {
        guard let cookie = Cookies.value(cookies.csrfName, in: request), isWellFormed(cookie),
            let values = form.values["csrf_token"], values.count == 1
        else { return false }
        return Secrets.constantTimeEquals(cookie, values[0])
    }

    static func isWellFormed(_ value: String) -> Bool {
        value.utf8.count == 43 && value.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }
    }
}
