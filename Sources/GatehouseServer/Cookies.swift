import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Mustache

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
        return try? RequestParameters.decodeForm(decoded)
    }

    /// `Set-Cookie` for a value; `maxAge` nil makes a browser-session cookie, 0 deletes it.
    func header(_ name: String, _ value: String, maxAge: Int64?) -> String {
        var cookie = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
        if let maxAge { cookie += "; Max-Age=\(maxAge)" }
        if secure { cookie += "; Secure" }
        return cookie
    }
}
