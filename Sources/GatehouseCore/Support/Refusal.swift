/// A request the core refuses with a message meant for a person (an error page), not a client library:
/// the `OAuthError` to show, the page's heading, and private detail for the log.
public struct Refusal: Error, Sendable {
    public let error: OAuthError
    public let heading: String
    /// Private detail for the log; never shown.
    public let log: String

    public init(_ error: OAuthError, heading: String = Refusal.defaultHeading, log: String) {
        self.error = error
        self.heading = heading
        self.log = log
    }

    public static let defaultHeading = "This request cannot be completed"
}
