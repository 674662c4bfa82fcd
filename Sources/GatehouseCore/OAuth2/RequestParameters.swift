/// The parameters of a request to one of our endpoints, from a form or JSON body.
///
/// Strict at the edge (RFC 6749 §3.1, §3.2): a parameter sent more than once is `invalid_request`, empty
/// values count as omitted, unknown parameters are ignored.
public struct RequestParameters: Sendable, Equatable {
    public private(set) var values: [String: [String]]

    public init(_ values: [String: [String]] = [:]) { self.values = values }

    public init(pairs: [(String, String)]) {
        var v: [String: [String]] = [:]
        for (k, value) in pairs { v[k, default: []].append(value) }
        self.values = v
    }

    /// The single value of `name`, `nil` when absent or empty.
    public func single(_ name: String) throws -> String? {
        guard let all = values[name] else { return nil }
        guard all.count == 1 else {
            throw OAuthError.invalidRequest.with(description: "The parameter \(name) must not be repeated.")
        }
        return all[0].isEmpty ? nil : all[0]
    }

    public func required(_ name: String) throws -> String {
        guard let value = try single(name) else {
            throw OAuthError.invalidRequest.with(description: "The parameter \(name) is required.")
        }
        return value
    }

    /// Every (name, value) pair, names sorted (for re-encoding a request as a query string).
    public var pairs: [(String, String)] {
        values.sorted { $0.key < $1.key }.flatMap { name, list in list.map { (name, $0) } }
    }

    /// All non-empty values of a parameter that may repeat (RFC 8707 `resource`).
    public func all(_ name: String) -> [String] { (values[name] ?? []).filter { !$0.isEmpty } }
}
