import Foundation

/// Password sign-in for the browser pages and the server-side sessions it starts.
///
/// The session cookie carries a 256-bit random value; only its SHA-256 is stored (a database leak yields no
/// usable session). Passwords are checked by the `PasswordAuthenticator` the password grant uses too.
public struct SignIn: Sendable {
    /// Only what sign-in uses: users and sessions.
    public typealias Storage = UserStore & BrowserStore
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
            session.expiresAt > clock.nowSeconds, let user = try await storage.user(id: session.userID)
        else { return nil }
        return (session, user)
    }

    public func endSession(cookie: String?) async throws {
        guard let cookie, cookie.utf8.count == 43 else { return }
        try await storage.deleteSession(hash: Secrets.hash(cookie))
    }
}
