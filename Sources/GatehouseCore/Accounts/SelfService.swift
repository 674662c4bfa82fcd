import Foundation

/// What a signed-in user does for themselves on the account pages: register OAuth apps (with the permission
/// `apps:create` in the service `gatehouse`, Lego's "everyone with the right permissions can create an
/// OAuth2 application") and revoke the apps they authorized. The pages only render its answers; every
/// refusal is a `Refusal` with the page's message.
public struct SelfService: Sendable {
    /// App registration (through `Administration`) and revoking grants.
    public typealias Storage = Administration.Storage & BrowserStore
    let storage: any Storage
    let permissions: PermissionResolver
    let events: Events
    let clock: Clock
    /// A registered app is audited (`client.created`, by the user).
    let audit: AuditLog

    public static let appsPermission = "apps:create"
    public static let appsService = "gatehouse"

    public init(storage: any Storage, permissions: PermissionResolver, events: Events, clock: Clock, audit: AuditLog = .none) {
        self.audit = audit
        self.storage = storage
        self.permissions = permissions
        self.events = events
        self.clock = clock
    }

    /// The refusal for a user without `apps:create` (403).
    public static let notAllowed = Refusal(
        OAuthError(code: "access_denied", description: "Registering apps needs the permission apps:create.", status: 403),
        heading: "Not allowed", log: "no apps:create permission")

    /// Whether `user` may register apps, and a note when a permissions URL could not be read (for the log).
    public func mayRegisterApps(_ user: UserRecord) async throws -> (allowed: Bool, problem: String?) {
        do {
            let result = try await permissions.permissions(service: Self.appsService, userID: user.id)
            return (result.permissions[Self.appsPermission] == true, result.problem)
        } catch PermissionResolver.Failure.unknownService {
            return (false, nil)
        }
    }

    /// The scopes a user may offer an app (those that need a role stay with administrators).
    public func registrableScopes() async throws -> [ScopeRecord] {
        try await storage.listScopes().filter { $0.requiredRole == nil && !ScopeRecord.reservedNames.contains($0.name) }
    }

    /// Registers an app for `user` (who must hold `apps:create`): a confidential client with one redirect
    /// URI; returns it and its secret (shown once).
    public func registerApp(by user: UserRecord, name: String?, redirectURI: String?, scope: String?) async throws
        -> (client: ClientRecord, secret: String?)
    {
        guard try await mayRegisterApps(user).allowed else { throw Self.notAllowed }
        var new = Administration.NewClient(name: name ?? "")
        new.redirectURIs = [redirectURI ?? ""]
        new.scope = scope
        let restricted = Set(try await storage.listScopes().filter { $0.requiredRole != nil }.map(\.name))
            .union(ScopeRecord.reservedNames)
        if let requested = scope.flatMap(Scope.init(parsing:)), let bad = requested.tokens.first(where: restricted.contains) {
            throw Refusal(
                OAuthError.invalidScope.with(description: "The scope \(bad) cannot be registered here."),
                log: "restricted scope \(bad)")
        }
        do {
            return try await Administration(storage: storage, clock: clock, audit: audit, actor: .user(user.id)).createClient(new)
        } catch let e as Administration.ValidationError {
            throw Refusal(
                OAuthError.invalidRequest.with(description: e.description), heading: "The app was not registered",
                log: e.description)
        }
    }

    /// Revokes every grant `user` gave the client (its tokens stop working) and emits `grant.revoked`.
    public func revokeApp(_ clientID: String?, for user: UserRecord) async throws {
        guard let clientID else { throw Refusal(Self.missing("No app was named."), log: "no client named") }
        try await storage.revokeGrants(userID: user.id, clientID: clientID, at: clock.nowSeconds)
        try? await events.emit(Events.grantRevoked, ["user_id": user.id, "client_id": clientID, "reason": "revoked_by_user"])
    }

    static func missing(_ description: String) -> OAuthError { OAuthError.invalidRequest.with(description: description) }
}

extension Refusal {
    /// A form that failed its CSRF check (expired, or posted from another site).
    public static let formExpired = Refusal(
        OAuthError.invalidRequest.with(
            description: "The form expired or did not come from this site. Go back, reload the page and try again."),
        log: "CSRF check failed")
    /// A show-once page (a new app's secret, an out-of-band code) opened again or without its cookie.
    public static let nothingToShow = Refusal(
        OAuthError.invalidRequest.with(description: "There is nothing to show."), log: "show-once value missing")
    /// A consent form posted without Allow or Deny.
    public static let noDecision = Refusal(
        OAuthError.invalidRequest.with(description: "Choose Allow or Deny."), log: "no consent decision")
}

extension AuthorizationEndpoint.Decision {
    /// The decision of the consent form (`decision=allow|deny`, `remember=on`).
    public init(form: RequestParameters) throws {
        switch try form.single("decision") {
        case "allow": self = .allow(remember: try form.single("remember") == "on")
        case "deny": self = .deny
        default: throw Refusal.noDecision
        }
    }
}
