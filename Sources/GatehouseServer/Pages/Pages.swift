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
            ("password_change", PackageResources.password_change_mustache), ("admin", PackageResources.admin_mustache),
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
    func error(_ error: OAuthError, heading: String = Refusal.defaultHeading) -> Response {
        let status = HTTPResponse.Status(code: error.status == 401 ? 400 : error.status)
        return render(
            "error", ["heading": heading, "description": error.description, "code": error.code], status: status)
    }

    /// The page of a refusal the core decided (its message and heading).
    func error(_ refusal: Refusal) -> Response { error(refusal.error, heading: refusal.heading) }

    /// POST/Redirect/GET: forms are answered with 303 See Other.
    func seeOther(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    /// A redirect to a path of ours (prefixed with the issuer's path).
    func seeOtherLocal(_ path: String) -> Response { seeOther(prefix + path) }
}
