import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Mustache

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
