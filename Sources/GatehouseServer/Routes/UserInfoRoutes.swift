import Foundation
import GatehouseCore
import GatehouseResourceServer
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
            var formValues: [String]?
            if request.method == .post, (request.headers[.contentType] ?? "").lowercased().hasPrefix("application/x-www-form-urlencoded") {
                do { formValues = try await HTTP.formBody(&request).values["access_token"] } catch {
                    throw BearerError.invalidRequest("The request body is malformed.")
                }
            }
            let token: String
            do {
                token = try BearerToken.extract(
                    authorizationHeader: request.headers[.authorization], query: request.uri.query, formValues: formValues)
            } catch let e as ResourceServerError {
                // RFC 6750 §3.1: no credentials (or another scheme) get no error code.
                throw e.bearerError == "invalid_request" ? BearerError.invalidRequest(e.detail) : BearerError.missing
            }
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
            response = HTTP.error(e.oauthError)
        }
        response.headers[.wwwAuthenticate] = challenge
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }
}
