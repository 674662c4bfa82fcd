import Foundation

/// The source of the current time, injected so tests can move it.
public struct Clock: Sendable {
    private let source: @Sendable () -> Date
    public init(_ source: @escaping @Sendable () -> Date) { self.source = source }
    public var now: Date { source() }
    /// Whole seconds since 1970 (JWT NumericDate, database timestamps).
    public var nowSeconds: Int64 { Int64(source().timeIntervalSince1970.rounded(.down)) }
    public static let system = Clock { Date() }
}
