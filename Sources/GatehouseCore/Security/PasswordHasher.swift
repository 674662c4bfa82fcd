import HummingbirdBcrypt
import NIOPosix
import Synchronization

/// Slow password hashing for user passwords (bcrypt), always run on a thread pool, never on an event loop.
public struct PasswordHasher: Sendable {
    public let cost: UInt8
    private let threadPool: NIOThreadPool

    /// Cost 12 by default; tests may lower it (minimum 4).
    public init(cost: UInt8 = 12, threadPool: NIOThreadPool = .singleton) {
        self.cost = max(4, cost)
        self.threadPool = threadPool
    }

    public func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await threadPool.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    /// Verifies a password. With `hash == nil` (unknown user) it still spends the same time on a dummy
    /// hash, so response time does not reveal whether the account exists.
    public func verify(_ password: String, hash: String?) async throws -> Bool {
        let cost = self.cost
        let ok = try await threadPool.runIfActive {
            Bcrypt.verify(password, hash: hash ?? PasswordHasher.dummyHash(cost: cost))
        }
        return ok && hash != nil
    }

    /// A bcrypt hash of a random value at `cost`, made once per cost (on the thread pool).
    private static func dummyHash(cost: UInt8) -> String {
        dummies.withLock { table in
            if let existing = table[cost] { return existing }
            let made = Bcrypt.hash(Secrets.generate(), cost: cost)
            table[cost] = made
            return made
        }
    }
    private static let dummies = Mutex<[UInt8: String]>([:])
}
