import Foundation
import Synchronization

/// Checks a username and password for every door that takes one (login page, password grant, lego
/// token-auth), with one `LoginThrottle`: the same budget of failures per account and per client address,
/// whichever door is knocked on. Every failure looks the same (no user enumeration): malformed and unknown
/// usernames cost a bcrypt too.
public struct PasswordAuthenticator: Sendable {
    let users: any UserStore
    let passwords: PasswordHasher
    public let throttle: LoginThrottle
    let metrics: GatehouseMetrics
    /// Sign-in successes, failures and lockouts go to the audit log.
    public var audit: AuditLog = .none {
        didSet { throttle.audit.withLock { $0 = audit } }
    }

    public init(users: any UserStore, passwords: PasswordHasher, throttle: LoginThrottle, metrics: GatehouseMetrics = .none) {
        self.metrics = metrics
        self.users = users
        self.passwords = passwords
        self.throttle = throttle
    }

    /// Why a password sign-in failed: wrong credentials, or throttled for some seconds.
    public enum Failure: Error, Sendable, Equatable {
        /// Wrong username or password (or no such user): one message for all.
        case invalidCredentials
        /// Too many failures for this account or from this address; retry after this many seconds.
        case throttled(retryAfter: Int64)
        /// The password was right, but an administrator disabled the account.
        case disabled
        /// The password was right, but an administrator requires a new one before the sign-in completes.
        case mustChangePassword
    }

    /// The user when `password` is theirs. `address`: the client's IP address (behind `trusted_proxies`, the
    /// forwarded one), `nil` when unknown.
    public func authenticate(username: String, password: String, address: String?) async throws -> UserRecord {
        let username = username.trimmingCharacters(in: .whitespaces)
        let addressKey = Self.addressKey(address)
        let wellFormed = Administration.isValidUsername(username) && !password.isEmpty && password.utf8.count <= 1024
        // A malformed name is looked up nowhere, but counts like an unknown one (decoy counter, address).
        let user = wellFormed ? try await users.user(username: username) : nil
        do {
            try await throttle.admit(username: String(username.prefix(150)), accountExists: user != nil, addressKey: addressKey)
        } catch LoginThrottle.Refusal.throttled(let retryAfter) {
            metrics.signIn(method: "password", outcome: .throttled)
            throw Failure.throttled(retryAfter: retryAfter)
        }
        guard wellFormed else {
            // Still costs a bcrypt so timing does not tell malformed from unknown.
            _ = try await passwords.verify(String(password.prefix(1024)), hash: nil)
            try await throttle.failed(addressKey: addressKey)
            metrics.signIn(method: "password", outcome: .failure)
            throw Failure.invalidCredentials
        }
        guard try await passwords.verify(password, hash: user?.passwordHash), let user else {
            try await throttle.failed(addressKey: addressKey)
            metrics.signIn(method: "password", outcome: .failure)
            await audit.note(
                AuditAction.signInFailed, actor: .anonymous, target: user.map { "user:" + $0.id },
                detail: ["username": username, "method": "password"], address: address)  // well-formed: letters, digits, . _ - @ +
            throw Failure.invalidCredentials
        }
        try await throttle.succeeded(username: username)
        guard !user.isDisabled else {
            metrics.signIn(method: "password", outcome: .failure)
            await audit.note(
                AuditAction.signInDisabled, actor: .user(user.id), target: "user:" + user.id, detail: ["method": "password"],
                address: address)
            throw Failure.disabled
        }
        guard !user.passwordResetRequired else { throw Failure.mustChangePassword }
        metrics.signIn(method: "password", outcome: .success)
        await audit.note(
            AuditAction.signInSucceeded, actor: .user(user.id), target: "user:" + user.id, detail: ["method": "password"],
            address: address)
        return user
    }

    /// IPv4 addresses count individually; IPv6 addresses by their /64 (one host usually has a whole /64).
    public static func addressKey(_ address: String?) -> String {
        guard let address, let ip = IPAddress(address) else { return "address:unknown" }
        guard !ip.isIPv4 else { return "address:" + ip.description }
        return "address6:" + ip.bytes.prefix(8).hexString
    }
}
