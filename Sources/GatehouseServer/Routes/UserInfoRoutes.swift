import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// UserInfo (OIDC Core §5.3) with RFC 6750 bearer-token rules.
extension BrowserRoutes {

    /// OIDC Core §5.3 with RFC 6750 §2.1/§2.2: the token in the Authorization header, or in a POST form body;
    /// never in the query string, and never in two places at once.
    func userinfo(_ request: Request) async -> Response {
        var request = request
        do {
            var token: String?
            if request.headers[.authorization] != nil {
                // RFC 6750 §3.1: a request without a Bearer token gets no error code.
                guard let bearer = HTTP.bearerToken(request) else { throw BearerError.missing }
                token = bearer
            }
            if let query = request.uri.query, query.contains("access_token") {
                throw BearerError.invalidRequest("Send the access token in the Authorization header, not the URL.")
            }
            if request.method == .post, (request.headers[.contentType] ?? "").lowercased().hasPrefix("application/x-www-form-urlencoded") {
                let form: RequestParameters
                do { form = try await formBody(&request) } catch { throw BearerError.invalidRequest("The request body is malformed.") }
                let values = form.values["access_token"] ?? []
                if !values.isEmpty {
                    guard token == nil, values.count == 1 else {
                        throw BearerError.invalidRequest("Send the access token once, in one place.")
                    }
                    token = values[0]
                }
            }
            guard let token, !token.isEmpty else { throw BearerError.missing }
            let claims = try await services.userinfo.handle(token: token)
            var response = try HTTP.json(claims)
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        } catch let e as BearerError {
            return Self.bearerError(e)
        } catch {
            logger.error("unexpected error", metadata: ["endpoint": "userinfo", "detail": .string("\(error)")])
            return HTTP.error(.serverError)
        }
    }

    static func bearerError(_ e: BearerError) -> Response {
        var challenge = "Bearer realm=\"gatehouse\""
        var response: Response
        if e.code.isEmpty {
            response = Response(status: .unauthorized, headers: [.cacheControl: "no-store"])
        } else {
            challenge += ", error=\"\(e.code)\", error_description=\"\(HTTP.describe(e.description))\""
            if e.code == "insufficient_scope" { challenge += ", scope=\"openid\"" }
            response = HTTP.error(OAuthError(code: e.code, description: e.description, status: e.status))
        }
        response.headers[.wwwAuthenticate] = challenge
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }
}
