import Foundation

/// RFC 6750 §2: where a bearer token may travel and how it is read. The one implementation, used by
/// `AccessTokenVerifying.verify(authorizationHeader:)`, the Hummingbird middleware and Gatehouse's own
/// protected resources (UserInfo, the compatibility APIs).
public enum BearerToken {
    /// RFC 6750 §2.1 `b64token`.
    static let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=".utf8)

    /// §2.1: the token of `Authorization: Bearer <token>` (or of another scheme in `schemes`, lower-case:
    /// legacy APIs such as drf-jwt's `JWT`). Throws `ResourceServerError`: `authorizationHeaderMissing` for no
    /// header, `tokenTypeNotSupported` for another scheme (neither carries an error code, §3.1),
    /// `tokenInvalidFormat` for anything malformed (`invalid_request`).
    public static func fromAuthorizationHeader(_ header: String?, schemes: Set<String> = ["bearer"]) throws -> String {
        guard let header, !header.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ResourceServerError.authorizationHeaderMissing()
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2 else { throw ResourceServerError.tokenInvalidFormat("expected '<scheme> <token>'") }
        guard schemes.contains(parts[0].lowercased()) else { throw ResourceServerError.tokenTypeNotSupported(String(parts[0])) }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, token.utf8.count <= 16_384, token.utf8.allSatisfy(allowed.contains) else {
            throw ResourceServerError.tokenInvalidFormat("not a bearer token")
        }
        return token
    }

    /// §2.1 or §2.2: the Authorization header, or the `access_token` parameter of an
    /// `application/x-www-form-urlencoded` POST body (`formValues`: its values, nil when there is no such
    /// body) — never the URI query (§2.3, `query`: the raw query string), and never two places at once.
    public static func extract(authorizationHeader: String?, query: String?, formValues: [String]?) throws -> String {
        var token: String?
        // A header naming only a scheme carries no credentials: a request without a token (§3.1, no error code).
        if let header = authorizationHeader, header.trimmingCharacters(in: .whitespaces).contains(" ") {
            token = try fromAuthorizationHeader(header)
        } else if authorizationHeader != nil {
            throw ResourceServerError.authorizationHeaderMissing()
        }
        if let query, query.split(separator: "&").contains(where: { pair in
            let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            return (name.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? name) == "access_token"
        }) {
            throw ResourceServerError.tokenInvalidFormat("Send the access token in the Authorization header, not the URL.")
        }
        if let values = formValues, !values.isEmpty {
            guard token == nil, values.count == 1 else {
                throw ResourceServerError.tokenInvalidFormat("Send the access token once, in one place.")
            }
            guard !values[0].isEmpty, values[0].utf8.count <= 16_384 else {
                throw ResourceServerError.tokenInvalidFormat("not a bearer token")
            }
            token = values[0]
        }
        guard let token else { throw ResourceServerError.authorizationHeaderMissing() }
        return token
    }
}
