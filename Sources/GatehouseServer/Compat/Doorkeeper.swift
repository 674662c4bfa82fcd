import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// Koala on Doorkeeper (../shared/seeds/002): `/api/oauth/*` with Doorkeeper's response shapes.
///
/// - `/api/oauth/authorize` is the authorization endpoint (out-of-band included).
/// - `/api/oauth/token` (JSON or form) answers with `created_at` and, for user tokens, a `member` object.
/// - `/api/oauth/revoke` is RFC 7009 revocation.
/// - `/api/oauth/token/info` is Doorkeeper's token info for a Bearer token.
struct DoorkeeperProfile {
    let c: CompatContext

    func mount(on router: Router<GatehouseRequestContext>) {
        router.get("/api/oauth/authorize") { request, context in await c.browser.authorize(request, context) }
        router.post("/api/oauth/authorize") { request, context in await c.browser.authorize(request, context) }
        router.post("/api/oauth/token") { request, context in await c.core.token(request, context) { try await encode($0) } }
        router.post("/api/oauth/revoke") { request, _ in await c.core.revoke(request) }
        router.get("/api/oauth/token/info") { request, _ in await tokenInfo(request) }
    }

    func encode(_ issued: IssuedTokens) async throws -> Response {
        var body = try CompatContext.dictionary(issued.response)
        body["created_at"] = c.services.clock.nowSeconds
        if let userID = issued.userID, let user = try await c.services.storage.user(id: userID) {
            body["member"] = ["id": user.id, "name": user.name ?? user.username, "email": user.email ?? NSNull()] as [String: Any]
        }
        return CompatContext.json(body)
    }

    /// Doorkeeper's `GET /oauth/token/info`.
    func tokenInfo(_ request: Request) async -> Response {
        do {
            guard let claims = try await c.verify(HTTP.bearerToken(request)) else {
                var r = CompatContext.json(
                    ["error": "invalid_token", "error_description": "The access token is invalid, expired or revoked."],
                    status: .unauthorized)
                r.headers[.wwwAuthenticate] = #"Bearer realm="Doorkeeper", error="invalid_token""#
                return r
            }
            let owner: Any = try await c.user(claims)?.id ?? NSNull()
            return CompatContext.json([
                "resource_owner_id": owner,
                "scope": (Scope(parsing: claims.scope) ?? .empty).tokens,
                "expires_in": max(0, claims.exp - c.services.clock.nowSeconds),
                "application": ["uid": claims.client_id],
                "created_at": claims.iat,
            ])
        } catch {
            c.logger.error("token info failed", metadata: ["detail": .string("\(error)")])
            return HTTP.error(.serverError)
        }
    }
}
