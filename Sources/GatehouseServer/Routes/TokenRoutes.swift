import Foundation
import GatehouseCore
import Hummingbird
import Logging

/// The OAuth endpoints' handlers, shared by the standard routes and the compatibility profiles.
struct CoreHandlers: Sendable {
    let services: GatehouseServices
    let logger: Logger

    func token(_ request: Request, _ context: GatehouseRequestContext) async -> Response {
        await token(request, context) { try HTTP.json($0.response) }
    }

    /// The token endpoint with a custom encoding of the successful response (compatibility shapes).
    func token(
        _ request: Request, _ context: GatehouseRequestContext, encode: @Sendable (IssuedTokens) async throws -> Response
    ) async -> Response {
        var request = request
        return await HTTP.endpoint("token", logger: logger) {
            let parameters = try await HTTP.parameters(&request)
            let issued = try await services.token.handle(
                parameters, authorization: request.headers[.authorization],
                clientAddress: services.clientAddress(request, context))
            context.facts.clientID = issued.clientID
            var encoded = try await encode(issued)
            encoded.headers[.accessControlAllowOrigin] = "*"
            return encoded
        }
    }

    func revoke(_ request: Request) async -> Response {
        var request = request
        return await HTTP.endpoint("revocation", logger: logger) {
            let parameters = try await HTTP.parameters(&request)
            try await services.revocation.handle(parameters, authorization: request.headers[.authorization])
            // RFC 7009 §2.2: 200 with an empty body.
            return Response(status: .ok, headers: [.cacheControl: "no-store"])
        }
    }

    func introspect(_ request: Request) async -> Response {
        var request = request
        return await HTTP.endpoint("introspection", logger: logger) {
            let parameters = try await HTTP.parameters(&request)
            return try HTTP.json(
                try await services.introspection.handle(parameters, authorization: request.headers[.authorization]))
        }
    }
}

