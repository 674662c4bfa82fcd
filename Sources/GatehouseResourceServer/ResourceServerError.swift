/// Why a request was not allowed. `code` is the identifier existing APIs already use; `status` and
/// `bearerError` map it to RFC 6750 §3.
public struct ResourceServerError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: String
    /// Private detail for logs; never sent to the caller.
    public let detail: String
    /// Scopes the request lacked (insufficient_scope only).
    public let requiredScopes: [String]

    public var description: String { "\(code): \(detail)" }

    /// RFC 6750 §3.1: 400 for a malformed request, 401 for a missing or bad token, 403 for
    /// insufficient_scope; 503 when the issuer cannot be reached.
    public var status: Int {
        switch code {
        case Self.invalidFormat: return 400
        case "insufficient_scope": return 403
        case "temporarily_unavailable": return 503
        default: return 401
        }
    }

    /// The RFC 6750 §3.1 `error` value; `nil` when the request carried no Bearer credentials (no header,
    /// or another scheme): §3.1 "the resource server SHOULD NOT include an error code".
    public var bearerError: String? {
        switch code {
        case Self.headerMissing, Self.typeNotSupported: return nil
        case Self.invalidFormat: return "invalid_request"
        case "insufficient_scope": return "insufficient_scope"
        case "temporarily_unavailable": return nil
        default: return "invalid_token"
        }
    }

    public static let headerMissing = "auth.authorization_header_missing"
    public static let invalidFormat = "auth.authorization_token_invalid_format"
    public static let typeNotSupported = "auth.authorization_token_type_not_supported"

    public static func authorizationHeaderMissing() -> Self { .init(code: headerMissing, detail: "no Authorization header", requiredScopes: []) }
    public static func tokenInvalidFormat(_ detail: String) -> Self { .init(code: invalidFormat, detail: detail, requiredScopes: []) }
    public static func tokenTypeNotSupported(_ scheme: String) -> Self {
        .init(code: typeNotSupported, detail: "authorization scheme \(scheme)", requiredScopes: [])
    }
    public static func invalidToken(_ detail: String) -> Self { .init(code: "invalid_token", detail: detail, requiredScopes: []) }
    public static func insufficientScope(_ required: [String]) -> Self {
        .init(code: "insufficient_scope", detail: "needs \(required.joined(separator: " "))", requiredScopes: required)
    }
    public static func unavailable(_ detail: String) -> Self { .init(code: "temporarily_unavailable", detail: detail, requiredScopes: []) }
}
