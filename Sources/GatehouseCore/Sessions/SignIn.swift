import Foundation

/// Password sign-in for the browser pages and the server-side sessions it starts.
///
/// The session cookie carries a 256-bit random value; only its SHA-256 is stored (a database leak yields no
/// usable session). Failures are counted per account and per client address, before the slow bcrypt
/// check, and every failure looks the same to the person signing in (no user enumeration).
public struct SignIn: Sendable {
    let storage: any GatehouseStorage
    let passwords: PasswordHasher
    let clock: Clock
    let sessionLifetime: Int64
    let accounts: FailureLimiter
    let addresses: FailureLimiter

    /// `accounts` is shared with the password grant (`TokenContext.passwordLimiter`): one budget of failures
    /// per username, whichever door is knocked on.
    public init(
        storage: any GatehouseStorage, settings: ServerSettings, clock: Clock, passwords: PasswordHasher,
        accounts: FailureLimiter
    ) {
        self.storage = storage
        self.passwords = passwords
        self.clock = clock
        self.sessionLifetime = settings.sessionLifetime
        self.accounts = accounts
        // One address may hold many accounts (an office behind NAT), so it gets a larger budget.
        self.addresses = FailureLimiter(
            maxFailures: settings.passwordMaxFailures * 5, window: settings.passwordLockoutWindow, clock: clock)
    }

    public enum Failure: Error, Sendable, Equatable {
        /// Wrong username or password (or no such user): one message for all.
        case invalidCredentials
        /// Too many failures for this account or address.
        case lockedOut
    }

    /// Checks a username and password. `address` is the client's IP address (nil when unknown).
    public func authenticate(username: String, password: String, address: String?) async throws -> UserRecord {
        let username = username.trimmingCharacters(in: .whitespaces)
        guard Administration.isValidUsername(username), !password.isEmpty, password.utf8.count <= 1024 else {
            // Still costs a bcrypt so timing does not tell malformed from unknown.
            _ = try await passwords.verify(password, hash: nil)
            throw Failure.invalidCredentials
        }
        // Same key as the password grant's.
        let accountKey = username.lowercased()
        let addressKey = Self.addressKey(address)
        // Both counts are taken before the slow check, atomically with the lockout test, so parallel guesses
        // cannot overshoot. Success resets the account and takes back the address's count: the address
        // only accumulates failures, so many people behind one NAT can still sign in.
        guard addresses.admit(addressKey) else { throw Failure.lockedOut }
        guard accounts.admit(accountKey) else { throw Failure.lockedOut }
        let user = try await storage.user(username: username)
        guard try await passwords.verify(password, hash: user?.passwordHash), let user else {
            throw Failure.invalidCredentials
        }
        accounts.reset(accountKey)
        addresses.forgive(addressKey)
        return user
    }

    /// IPv4 addresses count individually; IPv6 addresses by their /64 (one host usually has a whole /64).
    static func addressKey(_ address: String?) -> String {
        guard let address else { return "address:unknown" }
        guard address.contains(":") else { return "address:" + address }
        var groups = address.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if let gap = groups.firstIndex(of: ""), groups.count < 8 {
            // Expand "::" so the first four groups are the /64 prefix.
            let missing = 8 - groups.filter { !$0.isEmpty }.count
            groups = Array(groups[..<gap]).filter { !$0.isEmpty } + Array(repeating: "0", count: missing)
                + Array(groups[(gap + 1)...]).filter { !$0.isEmpty }
        }
        return "address6:" + groups.prefix(4).map { $0.lowercased() }.joined(separator: ":")
    }

    /// Starts a session: the raw cookie value (returned once) and the stored record.
    public func startSession(for user: UserRecord) async throws -> (cookie: String, session: SessionRecord) {
        let raw = Secrets.generate()
        let now = clock.nowSeconds
        let record = SessionRecord(
            hash: Secrets.hash(raw), id: Secrets.identifier(), userID: user.id, authTime: now, createdAt: now,
            expiresAt: now + sessionLifetime)
        try await storage.insertSession(record)
        return (raw, record)
    }

    /// The live session a cookie names, with its user; `nil` when unknown, expired or the user is gone.
    public func session(cookie: String?) async throws -> (session: SessionRecord, user: UserRecord)? {
        guard let cookie, cookie.utf8.count == 43 else { return nil }
        guard let session = try await storage.session(hash: Secrets.hash(cookie)),
            session.expiresAt > clock.nowSeconds, let user = try await storage.user(id: session.userID)
        else { return nil }
        return (session, user)
    }

    public func endSession(cookie: String?) async throws {
        guard let cookie, cookie.utf8.count == 43 else { return }
        try await storage.deleteSession(hash: Secrets.hash(cookie))
    }
}
