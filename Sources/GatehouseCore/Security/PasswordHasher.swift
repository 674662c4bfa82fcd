import HummingbirdBcrypt
import NIOPosix
import Synchronization

/// Slow password hashing for user passwords (bcrypt), never on an event loop.
///
/// bcrypt runs on a pool of its own (not `NIOThreadPool.singleton`, where SQLite does its I/O), and at
/// most `maxPending` checks may wait or run at once: beyond that the request is refused with
/// `temporarily_unavailable` instead of queueing, so a flood of password guesses cannot stall the
/// database work of every other request.
public struct PasswordHasher: Sendable {
    public let cost: UInt8
    private let threadPool: NIOThreadPool
    private let gate: Gate

    /// Cost 12 by default; tests may lower it (minimum 4).
    public init(cost: UInt8 = 12, threadPool: NIOThreadPool = PasswordHasher.sharedPool, maxPending: Int = 16) {
        self.cost = max(4, cost)
        self.threadPool = threadPool
        self.gate = Gate(limit: maxPending)
    }

    /// Two threads for bcrypt, started once, separate from the SQLite pool.
    public static let sharedPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    public func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await gate.run { try await threadPool.runIfActive { Bcrypt.hash(password, cost: cost) } }
    }

    /// Verifies a password. With `hash == nil` (unknown user) it still spends the same time on a dummy
    /// hash, so response time does not reveal whether the account exists.
    public func verify(_ password: String, hash: String?) async throws -> Bool {
        let cost = self.cost
        let ok = try await gate.run {
            try await threadPool.runIfActive {
                Bcrypt.verify(password, hash: hash ?? PasswordHasher.dummyHash(cost: cost))
            }
        }
        return ok && hash != nil
    }

    /// A bcrypt hash as imported from another system (`$2a$`, `$2b$` or `$2y$`, cost 4 to 16: a higher cost
    /// would make each sign-in take seconds), 60 characters of the bcrypt alphabet.
    public static func isBcryptHash(_ hash: String) -> Bool {
        let b = Array(hash.utf8)
        guard b.count == 60, b[0] == 0x24, b[1] == 0x32, [0x61, 0x62, 0x79].contains(b[2]), b[3] == 0x24, b[6] == 0x24,
            (0x30...0x39).contains(b[4]), (0x30...0x39).contains(b[5]),
            let cost = Int(String(decoding: b[4...5], as: UTF8.self)), (4...16).contains(cost)
        else { return false }
        return b[7...].allSatisfy { c in
            c == 0x2E || c == 0x2F || (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
        }
    }

    /// An imported hash in the form this bcrypt verifies: `$2y$` (PHP's name for the fixed algorithm) is the
    /// same algorithm as `$2b$`.
    public static func normalizedBcryptHash(_ hash: String) -> String {
        hash.hasPrefix("$2y$") ? "$2b$" + hash.dropFirst(4) : hash
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

/// Admits at most `limit` concurrent operations; the rest fail at once with `temporarily_unavailable`.
final class Gate: Sendable {
    private let inFlight = Atomic<Int>(0)
    let limit: Int
    init(limit: Int) { self.limit = limit }

    func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        guard inFlight.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
            inFlight.wrappingSubtract(1, ordering: .relaxed)
            throw OAuthError.temporarilyUnavailable.with(
                description: "Too many password checks in progress; retry shortly.", debug: "password gate full")
        }
        defer { inFlight.wrappingSubtract(1, ordering: .relaxed) }
        return try await body()
    }
}
