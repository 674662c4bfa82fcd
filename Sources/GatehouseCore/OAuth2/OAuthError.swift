/// An error defined by RFC 6749 §5.2 (and the RFCs that extend its registry).
///
/// `code` and `description` are public: they become the `error` / `error_description` members of the
/// response. `debug` is private detail for logs only and never leaves the server. Only the HTTP layer knows
/// how an `OAuthError` becomes a response; anything that is not an `OAuthError` becomes `server_error`.
public struct OAuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The registered error code (`invalid_request`, `invalid_client`, …).
    public let code: String
    /// A human-readable description safe to show to the client.
    public var description: String
    /// The HTTP status the error is answered with.
    public let status: Int
    /// Private detail for logs.
    public var debug: String?
    /// A named security event (`refresh_token.reused`, …) the server logs at warning level.
    public var event: String?

    public init(code: String, description: String, status: Int = 400, debug: String? = nil) {
        self.code = code
        self.description = description
        self.status = status
        self.debug = debug
    }

    /// RFC 6749 §4.1.2.1 / §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E. Descriptions
    /// may quote request values, so anything else becomes `?`, and the text is cut at 200 characters.
    public var safeDescription: String { Self.safeDescription(description) }

    /// `text` made safe for `error_description` (the rule of `safeDescription`).
    public static func safeDescription(_ description: String) -> String {
        var out = String(String.UnicodeScalarView(description.unicodeScalars.prefix(200).map { s in
            let v = s.value
            return (v == 0x20 || v == 0x21 || (0x23...0x5B).contains(v) || (0x5D...0x7E).contains(v)) ? s : "?"
        }))
        if description.unicodeScalars.count > 200 { out += "..." }
        return out
    }

    /// The same error with another description.
    public func with(description: String, debug: String? = nil) -> OAuthError {
        var copy = self
        copy.description = description
        copy.debug = debug ?? self.debug
        return copy
    }

    // RFC 6749 §5.2
    public static let invalidRequest = OAuthError(
        code: "invalid_request", description: "The request is missing a required parameter or is otherwise malformed.")
    public static let invalidClient = OAuthError(
        code: "invalid_client", description: "Client authentication failed.", status: 401)
    public static let invalidGrant = OAuthError(
        code: "invalid_grant", description: "The provided grant is invalid, expired or revoked.")
    public static let unauthorizedClient = OAuthError(
        code: "unauthorized_client", description: "The client is not allowed to use this grant type.")
    public static let unsupportedGrantType = OAuthError(
        code: "unsupported_grant_type", description: "The grant type is not supported by this server.")
    public static let invalidScope = OAuthError(
        code: "invalid_scope", description: "The requested scope is invalid, unknown or not allowed for this client.")
    public static let accessDenied = OAuthError(
        code: "access_denied", description: "The resource owner or the server denied the request.")
    // RFC 7009 §2.2.1
    public static let unsupportedTokenType = OAuthError(
        code: "unsupported_token_type", description: "The server does not support revocation of this token type.")
    // RFC 8707 §2
    public static let invalidTarget = OAuthError(
        code: "invalid_target", description: "The requested resource is invalid, unknown or not allowed for this client.")
    // RFC 6749 §4.1.2.1
    public static let unsupportedResponseType = OAuthError(
        code: "unsupported_response_type", description: "Only response_type=code is supported.")
    // OpenID Connect Core §3.1.2.6
    public static let loginRequired = OAuthError(
        code: "login_required", description: "The user must sign in, but prompt=none was requested.")
    public static let consentRequired = OAuthError(
        code: "consent_required", description: "The user must consent, but prompt=none was requested.")
    public static let interactionRequired = OAuthError(
        code: "interaction_required", description: "User interaction is required, but prompt=none was requested.")
    public static let requestNotSupported = OAuthError(
        code: "request_not_supported", description: "The request parameter is not supported.")
    public static let requestURINotSupported = OAuthError(
        code: "request_uri_not_supported", description: "The request_uri parameter is not supported.")
    public static let registrationNotSupported = OAuthError(
        code: "registration_not_supported", description: "The registration parameter is not supported.")
    // RFC 6749 §5.2 / §4.1.2.1
    public static let serverError = OAuthError(
        code: "server_error", description: "The server encountered an unexpected condition.", status: 500)
    public static let temporarilyUnavailable = OAuthError(
        code: "temporarily_unavailable", description: "The server is temporarily unable to handle the request.",
        status: 503)

    // Refusals the endpoints share.
    /// A GET to an endpoint that accepts POST only (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1); 405.
    public static let postOnly = OAuthError(code: "invalid_request", description: "Use POST.", status: 405)
    /// The server ran into something unexpected while rendering a page (logged; no detail shown).
    public static let unexpected = serverError.with(description: "Something went wrong on our side. Try again later.")
}
