import Foundation

/// "Sign in with …": the OAuth 2.0 / OpenID Connect client state machine of an upstream sign-in (RFC 6749
/// §4.1 with `state`, RFC 7636 PKCE and, for OIDC, `nonce`; RFC 9700 §4.7 browser binding).
///
/// `begin` stores a single-use flow (state, verifier and nonce; only hashes of the state and of the browser
/// binding are stored) and answers the provider URL plus the browser-binding value the caller sets as a
/// cookie. `finish` takes the flow by its state (single use: removed before anything else is checked),
/// checks that it belongs to this provider, this browser and is not expired, redeems the code upstream and
/// resolves the identity to one of our users. The route only encodes the outcome.
public struct UpstreamSignIn: Sendable {
    /// Only what the flow uses: pending flows, and what the broker needs to resolve identities.
    public typealias Storage = UpstreamFlowStore
    let storage: any Storage
    let upstream: UpstreamClient
    let broker: Broker
    let clock: Clock
    let lifetime: Int64
    let providers: @Sendable () async throws -> [ProviderRecord]

    /// Pending upstream sign-ins one client address may have at once (each is a row until it expires).
    public static let pendingFlowsPerAddress = 20

    /// Counts finished sign-ins by outcome (`.none`: not recorded).
    public var metrics: GatehouseMetrics = .none

    public init(
        storage: any Storage, upstream: UpstreamClient, broker: Broker, clock: Clock, settings: ServerSettings,
        providers: @escaping @Sendable () async throws -> [ProviderRecord]
    ) {
        self.storage = storage
        self.upstream = upstream
        self.broker = broker
        self.clock = clock
        self.lifetime = settings.upstreamFlowLifetime
        self.providers = providers
    }

    /// Why a sign-in could not start or finish: what the error page shows, and what the log records.
    public typealias Failure = Refusal

    /// The refusal for a provider id that names no configured or stored provider (404).
    public static let unknownProvider = OAuthError(
        code: "invalid_request", description: "There is no such sign-in provider.", status: 404)

    /// Every provider a user may sign in with.
    public func allProviders() async throws -> [ProviderRecord] { try await providers() }

    /// The provider with `id`, or nil.
    public func provider(id: String?) async throws -> ProviderRecord? {
        guard let id else { return nil }
        return try await providers().first { $0.id == id }
    }

    /// Where the browser goes next, and the browser-binding value to set as a cookie for `lifetime` seconds.
    public struct Started: Sendable {
        public let url: String
        public let browserBinding: String
        public let lifetime: Int64
    }

    /// Starts a sign-in (or, with `linkUserID`, the linking of another account to a signed-in user).
    /// `returnTo` is a local path already checked by the caller; `address` the client's IP address.
    public func begin(
        _ provider: ProviderRecord, redirectURI: String, returnTo: String, linkUserID: String?, address: String?
    ) async throws -> Started {
        let state = Secrets.generate()
        let verifier = Secrets.generate()
        let nonce = Secrets.generate()
        let browser = Secrets.generate()
        let url: String
        do {
            url = try await upstream.authorizationURL(
                provider, redirectURI: redirectURI, state: state, codeVerifier: verifier, nonce: nonce)
        } catch let e as UpstreamError {
            throw Failure(
                OAuthError(code: "temporarily_unavailable", description: "\(provider.name): \(e.description)", status: 502),
                heading: "Sign-in with \(provider.name) is not available", log: "could not start: \(e.detail)")
        }
        let now = clock.nowSeconds
        let stored = try await storage.insertUpstreamFlow(
            UpstreamFlowRecord(
                stateHash: Secrets.hash(state), providerID: provider.id, browserHash: Secrets.hash(browser),
                codeVerifier: verifier, nonce: nonce, returnTo: returnTo, linkUserID: linkUserID,
                expiresAt: now + lifetime, addressKey: PasswordAuthenticator.addressKey(address)),
            limitPerAddress: Self.pendingFlowsPerAddress, at: now)
        guard stored else {
            throw Failure(
                OAuthError(
                    code: "temporarily_unavailable",
                    description: "Too many sign-ins are in progress from your network. Finish one, or try again in a few minutes.",
                    status: 429),
                heading: "Too many sign-ins in progress", log: "too many pending upstream sign-ins")
        }
        return Started(url: url, browserBinding: browser, lifetime: lifetime)
    }

    /// How a finished flow ended.
    public enum Outcome: Sendable {
        /// Another account was linked to the signed-in user `user`.
        case linked(user: UserRecord, provider: ProviderRecord)
        /// `user` signed in; the browser returns to `returnTo`.
        case signedIn(user: UserRecord, provider: ProviderRecord, returnTo: String)
    }

    /// Finishes the flow the provider's redirect to `/login/{providerID}/callback` names. `query` is that
    /// redirect's query, `browserBinding` the cookie set by `begin`, `redirectURI` the callback URI of a
    /// provider id (it must equal the one `begin` sent).
    public func finish(
        providerID: String?, query: RequestParameters, browserBinding: String?,
        redirectURI: (String) -> String
    ) async throws -> Outcome {
        // Counted as a failed sign-in only once the state named a flow this server started (a stray callback
        // is not a sign-in).
        var started = false
        func fail(_ description: String, code: String = "access_denied", status: Int = 400, log: String) -> Failure {
            if started { metrics.signIn(method: "upstream", outcome: .failure) }
            return Failure(OAuthError(code: code, description: description, status: status), heading: "Sign-in did not work", log: log)
        }
        let restart = "Start again from the login page."
        guard let state = try query.single("state"), state.utf8.count <= 512 else {
            throw fail("The sign-in response is incomplete. \(restart)", code: "invalid_request", log: "no state")
        }
        // Single use: the flow is removed before anything else is checked.
        guard let flow = try await storage.takeUpstreamFlow(stateHash: Secrets.hash(state)) else {
            throw fail("This sign-in link has expired or was already used. \(restart)", code: "invalid_request", log: "unknown state")
        }
        started = true
        guard flow.providerID == providerID, flow.expiresAt > clock.nowSeconds,
            Secrets.verify(browserBinding ?? "", hash: flow.browserHash)
        else {
            throw fail(
                "This sign-in did not start in this browser, or took too long. \(restart)", code: "invalid_request",
                log: "state not bound to this browser, expired, or wrong provider")
        }
        guard let provider = try await provider(id: flow.providerID) else {
            throw fail(Self.unknownProvider.description, code: "invalid_request", log: "provider removed")
        }
        if let error = try query.single("error") {
            let what = OAuthError.safeDescription(error)
            throw fail("\(provider.name) did not sign you in (\(what)).", log: "provider answered error=\(what)")
        }
        guard let code = try query.single("code"), code.utf8.count <= 2048 else {
            throw fail("The sign-in response is incomplete. \(restart)", code: "invalid_request", log: "no code")
        }
        let external: ExternalIdentity
        do {
            external = try await upstream.completeSignIn(
                provider, code: code, redirectURI: redirectURI(provider.id), codeVerifier: flow.codeVerifier, nonce: flow.nonce)
        } catch let e as UpstreamError {
            let unavailable = e.kind == .unavailable || e.kind == .misconfigured
            throw fail(
                "\(provider.name): \(e.description)", code: unavailable ? "temporarily_unavailable" : "access_denied",
                status: unavailable ? 502 : 400, log: e.detail)
        }
        let resolution: Broker.Resolution
        do {
            resolution = try await broker.resolve(external, provider: provider, linkTo: flow.linkUserID)
        } catch let e as Broker.Failure {
            throw fail(e.description, log: "\(e)")
        }
        if flow.linkUserID != nil { return .linked(user: resolution.user, provider: provider) }
        metrics.signIn(method: "upstream", outcome: .success)
        return .signedIn(user: resolution.user, provider: provider, returnTo: flow.returnTo)
    }
}

/// Unlinking an upstream account from a user, never the user's last way to sign in.
extension Broker {
    /// Unlinks the identity (`providerID`, `subject`) from `user`; throws a `Refusal` with the page's message.
    public func unlink(providerID: String?, subject: String?, from user: UserRecord) async throws {
        guard let providerID, let subject else {
            throw Refusal(OAuthError.invalidRequest.with(description: "No linked account was named."), log: "no identity named")
        }
        let identities = try await storage.identities(userID: user.id)
        guard user.passwordHash != nil || identities.count > 1 else {
            throw Refusal(
                OAuthError.invalidRequest.with(description: "This is your only way to sign in; link another account first."),
                heading: "This account cannot be unlinked", log: "last way to sign in")
        }
        // Unknown, someone else's, or (after a concurrent unlink) the last way to sign in.
        guard try await storage.deleteIdentity(providerID: providerID, subject: subject, userID: user.id) else {
            throw Refusal(
                OAuthError.invalidRequest.with(description: "That account could not be unlinked."),
                heading: "This account cannot be unlinked", log: "identity not deleted")
        }
    }
}
