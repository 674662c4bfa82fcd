import Foundation

/// Password sign-in for the browser pages and the server-side sessions it starts.
///
/// The session cookie carries a 256-bit random value; only its SHA-256 is stored (a database leak yields no
/// usable session). Passwords are checked by the `PasswordAuthenticator` the password grant uses too.
public struct SignIn: Sendable {
    /// Only what sign-in uses: users, sessions, and setting a password the user was asked to change.
    public typealias Storage = UserStore & BrowserStore & AdminStore
    let storage: any Storage
    let clock: Clock
    let sessionLifetime: Int64
    let events: Events
    public let passwords: PasswordAuthenticator

    public init(
        storage: any Storage, settings: ServerSettings, clock: Clock, passwords: PasswordAuthenticator, events: Events = .none
    ) {
        self.storage = storage
        self.clock = clock
        self.sessionLifetime = settings.sessionLifetime
        self.passwords = passwords
        self.events = events
    }

    /// Completes a sign-in (password, upstream provider): a new session id at every sign-in, so no session
    /// fixation (the browser's previous session, `previousCookie`, ends), and a `user.login` event. Returns the
    /// new session's cookie value and record.
    public func complete(user: UserRecord, method: String, previousCookie: String?) async throws
        -> (cookie: String, session: SessionRecord)
    {
        // The password check refused a disabled account already; this is every other way in (upstream).
        if user.isDisabled {
            await passwords.audit.note(
                AuditAction.signInDisabled, actor: .user(user.id), target: "user:" + user.id, detail: ["method": method])
            throw Failure.disabled
        }
        if method != "password" {
            await passwords.audit.note(
                AuditAction.signInSucceeded, actor: .user(user.id), target: "user:" + user.id, detail: ["method": method])
        }
        try await endSession(cookie: previousCookie)
        let started = try await startSession(for: user)
        try? await events.emit(Events.userLogin, ["user_id": user.id, "method": method])
        return started
    }

    /// Why a password sign-in failed (the password grant's failures).
    public typealias Failure = PasswordAuthenticator.Failure

    /// Checks a username and password. `address` is the client's IP address (nil when unknown).
    public func authenticate(username: String, password: String, address: String?) async throws -> UserRecord {
        try await passwords.authenticate(username: username, password: password, address: address)
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
            session.expiresAt > clock.nowSeconds, let user = try await storage.user(id: session.userID), !user.isDisabled
        else { return nil }
        return (session, user)
    }

    /// The user was asked to choose a new password (`require_reset`) and proved the current one: stores the
    /// new one (8 to 72 bytes, not the current one), clears the request and ends every other session.
    public func changeRequiredPassword(username: String, current: String, new: String, address: String?) async throws
        -> UserRecord
    {
        guard (8...72).contains(new.utf8.count) else { throw PasswordChange.invalid("The new password must be 8 to 72 bytes long.") }
        guard new != current else { throw PasswordChange.invalid("Choose a password other than the current one.") }
        do {
            _ = try await passwords.authenticate(username: username, password: current, address: address)
            // The password was right but no change was asked for: this page changes nothing then.
            throw PasswordChange.invalid("No password change is pending for this account: sign in on the sign-in page.")
        } catch Failure.mustChangePassword {
            // The current password was right: this is the case the page exists for.
        }
        guard let user = try await storage.user(username: username.trimmingCharacters(in: .whitespaces)) else {
            throw Failure.invalidCredentials
        }
        let hash = try await passwords.passwords.hash(new)
        _ = try await storage.setPassword(userID: user.id, hash: hash, resetRequired: false, at: clock.nowSeconds)
        _ = try await storage.deleteSessions(userID: user.id)
        await passwords.audit.note("user.password_changed", actor: .user(user.id), target: "user:" + user.id, address: address)
        guard let updated = try await storage.user(id: user.id) else { throw Failure.invalidCredentials }
        return updated
    }

    /// The page for a disabled account that signed in some other way than with a password (an upstream provider).
    public static let disabledAccount = Refusal(
        OAuthError.accessDenied.with(description: "This account is disabled. Ask your administrator."),
        heading: "You cannot sign in", log: "disabled account")

    /// A new password that cannot be used.
    public enum PasswordChange: Error, Equatable {
        case invalid(String)
    }

    public func endSession(cookie: String?) async throws {
        guard let cookie, cookie.utf8.count == 43 else { return }
        try await storage.deleteSession(hash: Secrets.hash(cookie))
    }
}
