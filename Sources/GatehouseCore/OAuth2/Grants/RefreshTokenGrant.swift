import Crypto
import Foundation

/// RFC 6749 §6 with OAuth 2.1 §4.3.1 / RFC 9700 §4.14.2 rotation.
///
/// Every use rotates: the presented token is consumed atomically and a new one of the same family is
/// returned. A second use of a consumed token revokes the whole family (grant), unless it comes within
/// the configured grace period, in which case it receives the same new pair (sealed with a key only the
/// holder of the old token can derive). The scope may only be narrowed (§6).
public struct RefreshTokenGrant: TokenGrant {
    public static let grantType = GrantType.refreshToken
    public static let allowsPublicClients = true
    public init() {}

    /// The requested scope and resources stay as sent: they are checked against the stored token, after
    /// reuse detection (a replay must not dodge it by also asking for something invalid).
    public struct Request: Sendable {
        public let client: ClientRecord
        public let refreshToken: String
        public let scope: String?
        public let resources: [String]
    }

    public func validate(_ request: TokenRequest, context: TokenContext) throws -> Request {
        let p = request.parameters
        return Request(
            client: request.client, refreshToken: try p.required("refresh_token"), scope: try p.single("scope"),
            resources: p.all("resource"))
    }

    public func issue(_ request: Request, context: TokenContext) async throws -> IssuedTokens {
        let (client, raw) = (request.client, request.refreshToken)
        let invalid = OAuthError.invalidGrant.with(description: "The refresh token is invalid, expired or revoked.")
        let now = context.clock.nowSeconds
        guard let record = try await context.storage.refreshToken(hash: Secrets.hash(raw)) else {
            throw invalid.with(description: invalid.description, debug: "unknown refresh token")
        }
        // Bound to its client (§6: "the refresh token was issued to the authenticated client").
        guard record.clientID == client.id else {
            throw invalid.with(description: invalid.description, debug: "refresh token of another client")
        }
        guard let grant = try await context.storage.grant(id: record.grantID), grant.revokedAt == nil else {
            throw invalid.with(description: invalid.description, debug: "grant revoked")
        }
        // A consumed token is reuse, whatever else the request says (checked before expiry, scope and
        // resource, so a replay cannot dodge detection by waiting for the token to expire or by also asking
        // for something invalid). Until the purge deletes it, an expired used token still revokes.
        if record.usedAt != nil {
            return try await handleReuse(record, raw: raw, now: now, context: context)
        }
        guard record.expiresAt > now else {
            throw invalid.with(description: invalid.description, debug: "refresh token expired")
        }
        // The user must still exist.
        if let userID = record.userID, try await context.storage.user(id: userID) == nil {
            throw invalid.with(description: invalid.description, debug: "user deleted")
        }
        // §6: the new scope must not include any scope not originally granted.
        var scope = record.scope
        if let requested = request.scope {
            guard let narrowed = Scope(parsing: requested), narrowed.isSubset(of: record.scope) else {
                throw OAuthError.invalidScope.with(description: "A refresh may only narrow the granted scope.")
            }
            if !narrowed.isEmpty { scope = narrowed }
        }
        // Roles may have been taken away since the grant: restricted scopes need them still.
        if let userID = record.userID { try await context.checkScopeRoles(scope, userID: userID) }
        var resources = record.resources
        if !request.resources.isEmpty {
            resources = try context.resolveResources(request.resources, allowed: record.resources)
        }

        let next = context.makeRefreshToken(
            grantID: record.grantID, client: client, userID: record.userID, scope: record.scope,
            resources: record.resources)
        let claims = context.accessTokenClaims(
            client: client, subject: record.userID ?? client.id, scope: scope, resources: resources,
            grantID: record.grantID)
        // OIDC Core §12.2: refreshing an openid grant returns a fresh ID token (no nonce).
        var idToken: IDTokenIssuer.Input?
        if scope.contains("openid"), let userID = record.userID {
            idToken = context.idTokenInput(
                client: client, userID: userID, authTime: grant.authTime, nonce: nil, sessionID: grant.sessionID)
        }
        let plan = SuccessorSeal.Plan(access: claims, idToken: idToken, userID: record.userID, refreshToken: next.raw)
        // Only with a grace period is the successor kept (sealed) for a retry; otherwise nothing but
        // hashes is stored. What is sealed is the plan of the pair, not signed tokens.
        let sealed = context.settings.refreshGracePeriod > 0 ? try SuccessorSeal.seal(plan, with: raw) : nil
        switch try await context.storage.rotateRefreshToken(
            hash: record.hash, usedAt: now, sealedSuccessor: sealed, next: next.record)
        {
        case .rotated:
            // Signed only now that the presented token is consumed.
            return try await plan.sign(context, now: now)
        case .alreadyUsed(let current):
            // Lost a race with a concurrent use of the same token: that is reuse too.
            return try await handleReuse(current, raw: raw, now: now, context: context)
        }
    }

    /// A consumed token came back: inside the grace period the holder gets the same pair again, otherwise
    /// the family is revoked (RFC 9700 §4.14.2).
    private func handleReuse(_ record: RefreshTokenRecord, raw: String, now: Int64, context: TokenContext) async throws
        -> IssuedTokens
    {
        let grace = context.settings.refreshGracePeriod
        if grace > 0, let usedAt = record.usedAt, now - usedAt <= grace, let sealed = record.sealedSuccessor,
            let plan = SuccessorSeal.open(sealed, with: raw), plan.access.exp > now,
            // Only while the successor is unused: once it has been refreshed, the holder of the successor has
            // moved on, and the old token coming back is reuse (a retry would otherwise hand out a spent token
            // and a live access token to whoever still holds the old one).
            let successor = try await context.storage.refreshToken(hash: Secrets.hash(plan.refreshToken)),
            successor.usedAt == nil
        {
            // The same pair: the same refresh token, and an access token with the same claims (same `jti`).
            return try await plan.sign(context, now: now)
        }
        try await context.storage.revokeGrant(id: record.grantID, at: now)
        context.metrics.refreshTokenReuse()
        await context.audit.note(
            AuditAction.refreshTokenReuse, actor: .client(record.clientID), target: "grant:" + record.grantID,
            detail: ["client_id": record.clientID, "user_id": record.userID ?? ""])
        try? await context.events.emit(
            Events.grantRevoked,
            ["grant_id": record.grantID, "client_id": record.clientID, "user_id": record.userID ?? "", "reason": "refresh_token_reuse"])
        var error = OAuthError.invalidGrant.with(
            description: "The refresh token was already used; the grant has been revoked.",
            debug: "refresh token reuse, family \(record.grantID) revoked")
        error.event = "refresh_token.reused"
        throw error
    }
}

/// Seals the successor pair of a refresh token with AES-GCM under a key derived (HKDF-SHA256) from the
/// old token's value: the database alone cannot open it. The pair is sealed as a plan (the access token's
/// claims, the ID token's inputs and the new refresh token) and signed when it is handed out, so nothing is
/// signed before the rotation commits, and a retry within the grace period gets tokens with the same claims.
enum SuccessorSeal {
    struct Plan: Codable, Sendable, Equatable {
        var access: AccessTokenClaims
        var idToken: IDTokenIssuer.Input?
        var userID: String?
        var refreshToken: String

        func sign(_ context: TokenContext, now: Int64) async throws -> IssuedTokens {
            try await context.sign(access, idToken: idToken, userID: userID, refreshToken: refreshToken, now: now)
        }
    }

    static func key(for raw: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Data(raw.utf8)), info: Data("gatehouse refresh successor v2".utf8),
            outputByteCount: 32)
    }

    static func seal(_ plan: Plan, with raw: String) throws -> String {
        let data = try JSONEncoder().encode(plan)
        guard let combined = try AES.GCM.seal(data, using: key(for: raw)).combined else {
            throw OAuthError.serverError.with(description: OAuthError.serverError.description, debug: "seal failed")
        }
        return combined.base64EncodedString()
    }

    static func open(_ sealed: String, with raw: String) -> Plan? {
        guard let data = Data(base64Encoded: sealed), let box = try? AES.GCM.SealedBox(combined: data),
            let plain = try? AES.GCM.open(box, using: key(for: raw))
        else { return nil }
        return try? JSONDecoder().decode(Plan.self, from: plain)
    }
}
