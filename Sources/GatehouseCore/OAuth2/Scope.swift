/// An OAuth 2.0 scope: a set of scope tokens (RFC 6749 §3.3).
///
/// Read from space-separated lists (the standard) and, for existing clients, comma-separated ones; always
/// written space-separated. Order of first appearance is kept so responses are stable.
public struct Scope: Sendable, Equatable, Hashable, CustomStringConvertible {
    public private(set) var tokens: [String]

    public init<S: Sequence>(_ tokens: S) where S.Element == String {
        var seen = Set<String>()
        self.tokens = tokens.filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    /// Parses a scope parameter. Returns `nil` when a token contains characters outside RFC 6749 §3.3's
    /// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
    public init?(parsing string: String) {
        let parts = string.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        for part in parts where !Scope.isValidToken(part) { return nil }
        self.init(parts)
    }

    public static let empty = Scope([String]())

    /// RFC 6749 §3.3 scope-token grammar (commas are separators here, so they are never part of a token).
    public static func isValidToken(_ token: String) -> Bool {
        guard !token.isEmpty else { return false }
        return token.unicodeScalars.allSatisfy { scalar in
            let v = scalar.value
            return v == 0x21 || (0x23...0x5B).contains(v) || (0x5D...0x7E).contains(v)
        } && !token.contains(",")
    }

    public var isEmpty: Bool { tokens.isEmpty }
    public var set: Set<String> { Set(tokens) }
    public func contains(_ token: String) -> Bool { tokens.contains(token) }
    public func isSubset(of other: Scope) -> Bool { set.isSubset(of: other.set) }
    /// The tokens of `self` that are also in `other`, in `self`'s order.
    public func intersection(_ other: Scope) -> Scope { Scope(tokens.filter { other.contains($0) }) }

    /// Space-separated, as RFC 6749 writes it.
    public var description: String { tokens.joined(separator: " ") }
}
