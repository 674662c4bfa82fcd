/// OpenID Connect RP-Initiated Logout 1.0 (§2, §3): who asks, and where the browser may go afterwards.
public struct LogoutEndpoint: Sendable {
    /// Only what logout uses: sessions and clients.
    public typealias Storage = BrowserStore & ClientStore
    let storage: any Storage
    let hints: IDTokenHintVerifier

    public init(storage: any Storage, hints: IDTokenHintVerifier) {
        self.storage = storage
        self.hints = hints
    }

    /// A validated logout request.
    public struct Request: Sendable {
        public var hint: IDTokenClaims?
        public var client: ClientRecord?
        /// Where to send the browser afterwards (already checked against the client's registration).
        public var postLogoutRedirectURI: String?
        public var state: String?
        /// The parameters as received, to carry through the confirmation page.
        public var parameters: [(String, String)]

        /// The redirect after logout, with `state` (§3).
        public var redirect: String? {
            postLogoutRedirectURI.map { RedirectURI.appending([("state", state)], to: $0) }
        }
    }

    /// What to do: end the session at once (a valid hint for the signed-in user, or nobody signed in), or
    /// ask the user first (§2: the OP should confirm when it cannot tell the request came from the RP).
    public enum Action: Sendable {
        case logout(Request)
        case confirm(Request)
    }

    /// Errors are shown on a page (never redirected: the target is what may be wrong). Without confirmation
    /// only when the hint was issued for this very session (same user and `sid`): an old ID token cannot
    /// end a later session.
    public func decide(_ p: RequestParameters, session: SessionRecord?) async throws -> Action {
        let request = try await validate(p)
        guard let session else { return .logout(request) }
        if let hint = request.hint, hint.sub == session.userID, hint.sid == session.id { return .logout(request) }
        return .confirm(request)
    }

    func validate(_ p: RequestParameters) async throws -> Request {
        let bad = OAuthError.invalidRequest
        var hint: IDTokenClaims?
        if let raw = try p.single("id_token_hint") {
            guard let claims = await hints.verify(raw) else {
                throw bad.with(description: "The id_token_hint is not an ID token issued by this server.")
            }
            hint = claims
        }
        var client: ClientRecord?
        if let clientID = try p.single("client_id") {
            guard clientID.utf8.count <= 200, let c = try await storage.client(id: clientID) else {
                throw bad.with(description: "Unknown client.")
            }
            // §2: when both are sent, the hint must have been issued to that client.
            if let hint, !hint.aud.values.contains(c.id) {
                throw bad.with(description: "The id_token_hint was not issued to this client_id.")
            }
            client = c
        } else if let hint {
            client = try await storage.client(id: hint.azp ?? hint.aud.values.first ?? "")
        }
        let target = try p.single("post_logout_redirect_uri")
        if let target {
            // §3: only a URI registered for the identified client; otherwise no redirect at all.
            guard let client else {
                throw bad.with(description: "post_logout_redirect_uri needs client_id or id_token_hint.")
            }
            guard client.postLogoutRedirectURIs.contains(where: { Secrets.constantTimeEquals($0, target) }) else {
                throw bad.with(description: "The post_logout_redirect_uri is not registered for this client.")
            }
        }
        let state = try p.single("state")
        if let state, state.utf8.count > 2000 { throw bad.with(description: "The state is too long.") }
        var kept: [(String, String)] = []
        for name in ["id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales"] {
            if let v = try p.single(name) { kept.append((name, v)) }
        }
        return Request(hint: hint, client: client, postLogoutRedirectURI: target, state: state, parameters: kept)
    }
}
