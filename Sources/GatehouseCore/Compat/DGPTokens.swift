import Crypto
import Foundation
import JWTKit

/// The tokens of the dgp-oauth2 / OpenSpending auth profile (../shared/seeds/001): an RS256 user token
/// (`jwt`, bound to the browser session it came from) and per-service permission tokens, under the
/// profile's own `PRIVATE_KEY`/`PUBLIC_KEY` pair. The profile's routes only map requests and shapes; what a
/// token says, how long it lives and which `next` URL it may travel to are decided here.
public struct DGPTokens: Sendable {
    /// The user token (`jwt`).
    public struct UserToken: JWTPayload, Equatable {
        public var userid: String
        public var name: String
        public var email: String
        public var avatar_url: String
        public var idhash: String
        public var username: String
        public var iat: Int64
        public var exp: Int64
        /// The browser session it came from: signing out ends the token too.
        public var sid: String?
        public func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    /// The permission token `/auth/authorize` returns for a service.
    public struct PermissionToken: JWTPayload, Equatable {
        public var userid: String
        public var service: String
        public var permissions: [String: Bool]
        public var iat: Int64
        public var exp: Int64
        public func verify(using algorithm: some JWTAlgorithm) throws {}
    }

    /// Only what the profile uses: users and sessions.
    public typealias Storage = UserStore & BrowserStore
    let signer: RSATokenSigner
    let storage: any Storage
    let permissions: PermissionResolver
    let events: Events
    /// Counts the tokens issued (`.none`: not recorded).
    public var metrics: GatehouseMetrics = .none
    let clock: Clock
    let issuer: String
    let userTokenLifetime: Int64
    let permissionTokenLifetime: Int64

    public init(
        signer: RSATokenSigner, storage: any Storage, permissions: PermissionResolver, events: Events, clock: Clock,
        settings: ServerSettings, userTokenLifetime: Int64
    ) {
        self.signer = signer
        self.storage = storage
        self.permissions = permissions
        self.events = events
        self.clock = clock
        self.issuer = settings.issuer
        self.userTokenLifetime = userTokenLifetime
        self.permissionTokenLifetime = settings.accessTokenLifetime
    }

    /// The public key the profile's clients verify with (PEM).
    public var publicPEM: String { signer.publicPEM }

    /// The user of a valid, unexpired user token whose session is still signed in.
    public func user(_ jwt: String?) async throws -> UserRecord? {
        let now = clock.nowSeconds
        guard let jwt, let claims = await signer.verify(jwt, as: UserToken.self), claims.exp > now, let sid = claims.sid,
            let session = try await storage.session(id: sid, at: now), session.userID == claims.userid
        else { return nil }
        return try await storage.user(id: claims.userid)
    }

    /// A stable public hash of the user (dgp's `idhash`).
    public func idhash(_ user: UserRecord) -> String {
        String(SHA256.hash(data: Data((issuer + "|" + user.id).utf8)).hexString.prefix(40))
    }

    /// dgp's profile of a user: `{id, name, email, avatar_url, idhash, username}`.
    public func profile(_ user: UserRecord) -> [String: String] {
        [
            "id": user.id, "name": user.name ?? user.username, "email": user.email ?? "",
            "avatar_url": user.profile.picture ?? "", "idhash": idhash(user), "username": user.username,
        ]
    }

    /// A user token for the signed-in `user`, ending with `session` at the latest.
    public func userToken(for user: UserRecord, session: SessionRecord) async throws -> String {
        let now = clock.nowSeconds
        let p = profile(user)
        let token = try await signer.sign(
            UserToken(
                userid: user.id, name: p["name"] ?? "", email: p["email"] ?? "", avatar_url: p["avatar_url"] ?? "",
                idhash: p["idhash"] ?? "", username: user.username, iat: now,
                exp: min(now + userTokenLifetime, session.expiresAt), sid: session.id))
        await events.tokenIssued(clientID: "dgp", grantType: "dgp:user_token", scope: "")
        metrics.tokenIssued(grantType: "dgp:user_token", clientID: "dgp")
        return token
    }

    /// A permission token: the user's permissions in `service` (none for an unknown service), and a note
    /// when a permissions URL could not be read (for the log).
    public func permissionToken(for user: UserRecord, service: String?) async throws
        -> (token: String, permissions: [String: Bool], service: String, problem: String?)
    {
        guard let service else {
            throw OAuthError.invalidRequest.with(description: "The parameter service is required.")
        }
        var granted: [String: Bool] = [:]
        var problem: String?
        do {
            let result = try await permissions.permissions(service: service, userID: user.id)
            (granted, problem) = (result.permissions, result.problem)
        } catch PermissionResolver.Failure.unknownService {}
        let now = clock.nowSeconds
        let token = try await signer.sign(
            PermissionToken(userid: user.id, service: service, permissions: granted, iat: now, exp: now + permissionTokenLifetime))
        await events.tokenIssued(clientID: "dgp", grantType: "dgp:permission_token", scope: service)
        metrics.tokenIssued(grantType: "dgp:permission_token", clientID: "dgp")
        return (token, granted, service, problem)
    }

    /// The refusal for a `next` that `allowedNext` does not accept.
    public static let nextNotAllowed = Refusal(
        OAuthError.invalidRequest.with(description: "The next URL is missing or not on an allowed host."),
        log: "next not allowed")

    /// `next` must be an http(s) URL on a configured host (`compat_next_hosts`) and, when `paths` is set
    /// (`compat_next_paths`), under one of those paths: no open redirect, and the token goes only where the
    /// operator said.
    public static func allowedNext(_ next: String?, hosts: [String], paths: [String]) -> String? {
        // No control characters or spaces anywhere: browsers drop tabs and newlines from URLs, so what they
        // follow would not be what was checked.
        guard let next, next.utf8.count <= 2000, next.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }),
            let u = URLComponents(string: next), let host = u.host?.lowercased(),
            hosts.contains(host), u.user == nil, u.fragment == nil,
            paths.isEmpty || Self.pathAllowed(u.percentEncodedPath, prefixes: paths),
            // The token travels in the URL: https only (http on loopback, for development).
            u.scheme?.lowercased() == "https" || (u.scheme?.lowercased() == "http" && RedirectURI.isLoopback(host))
        else { return nil }
        return next
    }

    /// The path starts with one of `prefixes` and has no dot segments (plain or percent-encoded).
    public static func pathAllowed(_ path: String, prefixes: [String]) -> Bool {
        let lower = path.lowercased()
        // Dot segments (plain, encoded, or with `;params` as some servers read them), encoded slashes or
        // backslashes: anything a server or browser could resolve to another path than the prefix says.
        let segments = lower.split(separator: "/", omittingEmptySubsequences: false)
            .map { $0.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "" }
            .map { $0.replacingOccurrences(of: "%2e", with: ".") }
        guard !segments.contains(where: { $0 == "." || $0 == ".." }), !lower.contains("%2f"), !lower.contains("%5c"),
            !path.contains("\\"), !path.contains("//")
        else { return false }
        return prefixes.contains { path.hasPrefix($0) }
    }
}
