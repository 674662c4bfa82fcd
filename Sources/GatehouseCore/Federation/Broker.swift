import Foundation

/// Turns an upstream identity into one of our users: finds the linked account, links to the signed-in user
/// or (when the provider vouches for the email and the provider allows it) to the account with that email,
/// or creates a user. Emits `user.created`.
public struct Broker: Sendable {
    /// Only what resolving identities uses: users and linked identities.
    public typealias Storage = UserStore & FederationStore
    let storage: any Storage
    let events: Events
    let clock: Clock

    public init(storage: any Storage, events: Events, clock: Clock) {
        self.storage = storage
        self.events = events
        self.clock = clock
    }

    /// Why an upstream identity could not become one of our users.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The provider account is linked to a different user than the one signed in.
        case linkedToAnotherUser
        case userGone
        public var description: String {
            switch self {
            case .linkedToAnotherUser: return "That account is already linked to another user."
            case .userGone: return "The linked user no longer exists."
            }
        }
    }

    /// The user an identity resolved to, and whether it was created or newly linked.
    public struct Resolution: Sendable {
        public var user: UserRecord
        public var created: Bool
        public var linked: Bool
    }

    public func resolve(_ external: ExternalIdentity, provider: ProviderRecord, linkTo linkUserID: String? = nil)
        async throws -> Resolution
    {
        let now = clock.nowSeconds
        if let found = try await linked(external, provider: provider, linkTo: linkUserID) { return found }
        let identity = { (userID: String) in
            IdentityRecord(
                providerID: provider.id, subject: external.subject, userID: userID, username: external.username,
                email: external.email, createdAt: now)
        }
        func link(_ user: UserRecord) async throws -> Resolution {
            do {
                try await storage.insertIdentity(identity(user.id))
            } catch StorageError.duplicate {
                // Linked by a concurrent request meanwhile: that link decides.
                if let found = try await linked(external, provider: provider, linkTo: linkUserID) { return found }
                throw Failure.userGone
            }
            return Resolution(user: user, created: false, linked: true)
        }
        if let linkUserID {
            guard let user = try await storage.user(id: linkUserID) else { throw Failure.userGone }
            return try await link(user)
        }
        // Both sides must vouch for the address: the provider, and our own record (an unverified local email
        // could have been claimed by someone else first).
        if provider.linkByEmail, external.emailVerified, let email = external.email,
            let user = try await storage.user(email: email), user.profile.emailVerified
        {
            return try await link(user)
        }
        // A new user and its identity in one transaction: of concurrent first sign-ins one creates the user,
        // the others find it (no half-made users).
        switch try await createUser(external, provider: provider, now: now, identity: identity) {
        case .created(let user):
            try? await events.emit(
                Events.userCreated, ["user_id": user.id, "username": user.username, "provider": provider.id])
            return Resolution(user: user, created: true, linked: true)
        case .linkedMeanwhile:
            if let found = try await linked(external, provider: provider, linkTo: nil) { return found }
            throw Failure.userGone
        }
    }

    /// The user the provider account is linked to, if any (refusing a link to someone else).
    func linked(_ external: ExternalIdentity, provider: ProviderRecord, linkTo linkUserID: String?) async throws -> Resolution? {
        guard let existing = try await storage.identity(providerID: provider.id, subject: external.subject) else { return nil }
        if let linkUserID, existing.userID != linkUserID { throw Failure.linkedToAnotherUser }
        guard let user = try await storage.user(id: existing.userID) else { throw Failure.userGone }
        return Resolution(user: user, created: false, linked: false)
    }

    enum Creation { case created(UserRecord), linkedMeanwhile }

    /// The username from the provider, cut to our alphabet, made unique with a numeric suffix.
    func createUser(
        _ external: ExternalIdentity, provider: ProviderRecord, now: Int64, identity: (String) -> IdentityRecord
    ) async throws -> Creation {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "._-@+"))
        var base = String(String.UnicodeScalarView((external.username ?? external.email?.split(separator: "@").first.map(String.init) ?? "")
            .unicodeScalars.filter { allowed.contains($0) && $0.isASCII }))
        base = String(base.prefix(120))
        if base.isEmpty { base = "\(provider.id)-user" }
        let email = external.email.flatMap { $0.contains("@") && $0.count <= 254 && !$0.contains(" ") ? $0 : nil }
        let picture = external.picture.flatMap { p in
            (p.hasPrefix("https://") || p.hasPrefix("http://")) && p.count <= 2000 ? p : nil
        }
        for attempt in 0..<20 {
            let username = attempt == 0 ? base : attempt < 10 ? "\(base)-\(attempt + 1)" : "\(base)-\(Secrets.identifier().prefix(6))"
            let user = UserRecord(
                id: UUID().uuidString.lowercased(), username: username, email: email, name: external.name.map { String($0.prefix(200)) },
                passwordHash: nil, createdAt: now, updatedAt: now,
                profile: UserProfile(picture: picture, emailVerified: email != nil && external.emailVerified))
            do {
                try await storage.insertUser(user, linking: identity(user.id))
                return .created(user)
            } catch StorageError.duplicate(let what) where what.hasPrefix("identity") {
                return .linkedMeanwhile
            } catch StorageError.duplicate {
                continue  // the username is taken: next suffix
            }
        }
        throw StorageError.duplicate("username \(base)")
    }
}
