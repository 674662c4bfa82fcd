import HTTPTypes
import Hummingbird

/// Headers every response carries: no framing, no sniffing, no referrer.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try HTTP.problem(error, request: request, context: context)
        }
        response.headers[.xFrameOptions] = "DENY"
        // Pages set their own policy (they load our stylesheet); everything else loads nothing.
        if response.headers[.contentSecurityPolicy] == nil {
            response.headers[.contentSecurityPolicy] = "default-src 'none'; frame-ancestors 'none'"
        }
        response.headers[.referrerPolicy] = "no-referrer"
        response.headers[.xContentTypeOptions] = "nosniff"
        // RFC 9112 §9.6: the connection closes after this response; say so, so the client does not
        // send its next request down a closing socket.
        if let connection = request.headers[.connection], connection.lowercased().contains("close") {
            response.headers[.connection] = "close"
        }
        return response
    }
}
