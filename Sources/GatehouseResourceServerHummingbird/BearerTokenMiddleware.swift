import Foundation
import GatehouseResourceServer
import HTTPTypes
import Hummingbird
import Logging

/// A request context that carries the verified access token.
public protocol AccessTokenRequestContext: RequestContext {
    var accessToken: AccessToken? { get set }
}

/// Requires `Authorization: Bearer <token>`, verifies it, and puts the `AccessToken` into the context.
/// Failures are answered with 401 and `WWW-Authenticate: Bearer realm="…", error="invalid_token"`
/// (RFC 6750 §3); tokens in the query string are ignored.
public struct BearerTokenMiddleware<Context: AccessTokenRequestContext>: RouterMiddleware {
    let verifier: any AccessTokenVerifying
    let realm: String

    public init(verifier: any AccessTokenVerifying, realm: String = "api") {
        self.verifier = verifier
        self.realm = realm
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        var context = context
        do {
            context.accessToken = try await verifier.verify(authorizationHeader: request.headers[.authorization])
        } catch let error as ResourceServerError {
            let metadata: Logger.Metadata = ["code": .string(error.code), "detail": .string(error.detail)]
            if error.status == 503 {
                context.logger.warning("cannot verify tokens: issuer unavailable", metadata: metadata)
            } else {
                context.logger.debug("bearer token refused", metadata: metadata)
            }
            return BearerError.response(error, realm: realm)
        }
        return try await next(request, context)
    }
}

/// Requires the verified token to carry scopes: all of them (`.all`) or at least one (`.any`).
/// Answers 403 with `error="insufficient_scope", scope="…"` (RFC 6750 §3.1) when it does not, and 401
/// when no token was verified before it.
public struct RequireScopes<Context: AccessTokenRequestContext>: RouterMiddleware {
    /// Whether every listed scope is needed, or any one of them.
    public enum Mode: Sendable { case all, any }
    let scopes: [String]
    let mode: Mode
    let realm: String

    public init(_ scopes: [String], mode: Mode = .all, realm: String = "api") {
        self.scopes = scopes
        self.mode = mode
        self.realm = realm
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let token = context.accessToken else {
            return BearerError.response(.authorizationHeaderMissing(), realm: realm)
        }
        let ok = mode == .all ? token.hasAll(scopes) : token.hasAny(scopes)
        guard ok else { return BearerError.response(.insufficientScope(scopes), realm: realm) }
        return try await next(request, context)
    }
}

enum BearerError {
    /// The RFC 6750 §3 challenge and a small JSON body `{"error": code}`.
    static func response(_ error: ResourceServerError, realm: String) -> Response {
        var challenge = "Bearer realm=\"\(realm)\""
        if let bearer = error.bearerError { challenge += ", error=\"\(bearer)\"" }
        if !error.requiredScopes.isEmpty { challenge += ", scope=\"\(error.requiredScopes.joined(separator: " "))\"" }
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        if error.status != 503 { headers[.wwwAuthenticate] = challenge }
        let body = #"{"error":"\#(error.code)"}"#
        return Response(
            status: HTTPResponse.Status(code: error.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// A ready context for APIs that need nothing else.
public struct BasicAccessTokenContext: AccessTokenRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var accessToken: AccessToken?
    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.accessToken = nil
    }
}
