import Foundation

/// A verified access token: what an API needs to decide, plus every claim.
public struct AccessToken: Sendable, Equatable {
    /// `sub`: the user's opaque id, or the client id for machine tokens.
    public let subject: String
    /// `client_id`: the client the token was issued to.
    public let clientID: String
    /// `scope`, split.
    public let scopes: Set<String>
    /// `aud`.
    public let audience: [String]
    public let issuer: String
    public let expiresAt: Date
    public let issuedAt: Date?
    public let jwtID: String?
    /// Every claim of the token (or of the introspection answer), as JSON values.
    public let claims: [String: JSONValue]

    public func hasScope(_ scope: String) -> Bool { scopes.contains(scope) }
    public func hasAll(_ required: [String]) -> Bool { required.allSatisfy(scopes.contains) }
    public func hasAny(_ required: [String]) -> Bool { required.isEmpty || required.contains(where: scopes.contains) }

    /// Builds a token from a claims object, checking the members every access token must have.
    init(claims: [String: JSONValue]) throws {
        guard case .string(let sub)? = claims["sub"], case .string(let iss)? = claims["iss"],
            let exp = claims["exp"]?.number
        else { throw ResourceServerError.invalidToken("missing sub, iss or exp") }
        self.subject = sub
        self.issuer = iss
        self.expiresAt = Date(timeIntervalSince1970: exp)
        self.issuedAt = claims["iat"]?.number.map(Date.init(timeIntervalSince1970:))
        self.clientID = claims["client_id"]?.string ?? ""
        self.scopes = Set((claims["scope"]?.string ?? "").split(separator: " ").map(String.init))
        switch claims["aud"] {
        case .string(let a)?: self.audience = [a]
        case .array(let list)?: self.audience = list.compactMap(\.string)
        default: self.audience = []
        }
        self.jwtID = claims["jti"]?.string
        self.claims = claims
    }
}

/// A JSON value, for claims whose shape the library does not know.
public enum JSONValue: Sendable, Equatable, Codable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    /// From a JSONSerialization value.
    init(any value: Any) {
        switch value {
        case let s as String: self = .string(s)
        case let n as NSNumber:
            // JSONSerialization gives booleans as NSNumber too (objCType "c"); numbers use other types.
            if String(cString: n.objCType) == "c" { self = .bool(n.boolValue) } else { self = .number(n.doubleValue) }
        case let a as [Any]: self = .array(a.map(JSONValue.init(any:)))
        case let o as [String: Any]: self = .object(o.mapValues(JSONValue.init(any:)))
        default: self = .null
        }
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var number: Double? { if case .number(let n) = self { return n } else { return nil } }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let n): try c.encode(n)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        case .null: try c.encodeNil()
        }
    }
}
