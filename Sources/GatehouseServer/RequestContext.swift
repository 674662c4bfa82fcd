import Hummingbird
import NIOCore
import Synchronization

/// The request context: Hummingbird's basic one plus the client's address (for login throttling) and the
/// facts handlers learn about the request for the access log (`RequestFacts`).
public struct GatehouseRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Shared by every copy of this context (middleware and handler see the same one).
    public let facts = RequestFacts()

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}

/// What a handler learned about its request that the access log reports: the client it authenticated (or
/// issued to).
public final class RequestFacts: Sendable {
    private let state = Mutex<String?>(nil)
    public init() {}
    /// The registered client id (bounded by the clients table: safe as a log field and a metric label).
    public var clientID: String? {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}
