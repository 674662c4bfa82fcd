import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// dgp-oauth2 / OpenSpending auth (../shared/seeds/001): `/auth/check`, `/auth/authorize`, `/auth/update`,
/// `/auth/public-key`, with RS256 tokens under the `PRIVATE_KEY`/`PUBLIC_KEY` pair. Logins go through the
/// configured upstream providers or our own login page, then back to `next` with `?jwt=`.
struct DGPProfile {
    let c: CompatContext

    /// The profile's token issuer (nil until the application has made the signer).
    var tokens: DGPTokens? {
        c.options.dgpSigner.map {
            var tokens = DGPTokens(
                signer: $0, storage: c.services.storage, permissions: c.services.permissions, events: c.services.events,
                clock: c.services.clock, settings: c.services.settings, userTokenLifetime: c.options.dgpTokenLifetime)
            tokens.metrics = c.services.metrics
            return tokens
        }
    }

    func mount(on router: Router<GatehouseRequestContext>) {
        router.get("/auth/check") { request, _ in await check(request) }
        router.get("/auth/login/:provider") { request, context in
            await login(request, context, provider: context.parameters.get("provider") ?? "")
        }
        router.get("/auth/finish") { request, _ in await finish(request) }
        router.get("/auth/authorize") { request, _ in await authorize(request) }
        router.post("/auth/update") { request, _ in await update(request) }
        router.get("/auth/public-key") { _, _ in
            guard let tokens else { return HTTP.error(.serverError) }
            return HTTP.raw(Array(tokens.publicPEM.utf8), noStore: false, contentType: "application/x-pem-file")
        }
    }

    static let finishPath = "/auth/finish?"

    /// dgp's rows of the settings table.
    static let settings: [Setting] = [
        .list(
            "compat_next_hosts", \.compat.nextHosts, accepts: "comma-separated host names",
            help: "Hosts dgp's `next` may redirect to", item: { $0.lowercased() }),
        .list(
            "compat_next_paths", \.compat.nextPaths, default: "any path",
            accepts: "comma-separated path prefixes, each starting with `/`, without query or fragment",
            help: "Comma-separated path prefixes (each starts with `/`) that dgp's `next` must start with",
            item: { path in
                guard path.hasPrefix("/"), !path.contains("?"), !path.contains("#") else {
                    throw Setting.Invalid("'\(path)' is not a path prefix (it must start with /, without query or fragment)")
                }
                return path
            }),
        .duration(
            "compat_dgp_token_ttl", \.compat.dgpTokenLifetime, range: 60...86_400,
            help: "60s–24h. Lifetime of dgp's user token (`jwt`); signing out ends it sooner"),
    ]

    /// dgp-oauth2's own environment variables, honoured as fallbacks when the profile is on: `EXTERNAL_ADDRESS`
    /// (issuer), `DATABASE_URL` (SQLAlchemy spelling), `PRIVATE_KEY`/`PUBLIC_KEY`, `GOOGLE_KEY`/`GOOGLE_SECRET`
    /// and `GITHUB_KEY`/`GITHUB_SECRET` (providers).
    static func readEnvironment(_ environment: [String: String], into config: inout GatehouseConfiguration) throws {
        typealias Failure = GatehouseConfiguration.Error
        if config.configuredIssuer == nil, let external = environment["EXTERNAL_ADDRESS"], !external.isEmpty {
            let v = external.contains("://") ? external : "https://" + external
            do { try GatehouseConfiguration.checkIssuer(v) } catch { throw Failure(description: "invalid EXTERNAL_ADDRESS: \(error)") }
            config.configuredIssuer = v
        }
        if config.sources["database_url"] == nil, let v = environment["DATABASE_URL"], !v.isEmpty {
            // SQLAlchemy URLs: postgresql+psycopg2://… → postgresql://…
            var url = v
            if let plus = url.firstIndex(of: "+"), let colon = url.range(of: "://"), plus < colon.lowerBound {
                url = String(url[..<plus]) + String(url[colon.lowerBound...])
            }
            do { config.database = try DatabaseURL(parsing: url) } catch { throw Failure(description: "invalid DATABASE_URL: \(error)") }
            config.sources["database_url"] = "DATABASE_URL"
        }
        config.compat.dgpPrivateKey = environment["PRIVATE_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.compat.dgpPublicKey = environment["PUBLIC_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if config.compat.dgpPublicKey != nil, config.compat.dgpPrivateKey == nil {
            throw Failure(description: "invalid PUBLIC_KEY: set PRIVATE_KEY too (the dgp profile signs with it)")
        }
        for (id, kind, name) in [("google", ProviderKind.google, "Google"), ("github", ProviderKind.github, "GitHub")] {
            let prefix = id.uppercased()
            guard let key = environment["\(prefix)_KEY"], !key.isEmpty else { continue }
            guard let secret = environment["\(prefix)_SECRET"], !secret.isEmpty else {
                throw Failure(description: "invalid \(prefix)_KEY: \(prefix)_SECRET is missing")
            }
            if !config.providers.contains(where: { $0.id == id }) {
                config.providers.append(ProviderRecord(id: id, kind: kind, name: name, clientID: key, clientSecret: secret))
            }
        }
    }

    /// The user of a valid, unexpired user token whose session is still signed in.
    func user(_ jwt: String?) async throws -> UserRecord? { try await tokens?.user(jwt) }

    func profile(_ user: UserRecord) -> [String: String] { tokens?.profile(user) ?? [:] }

    /// `next` as `DGPTokens.allowedNext` accepts it (`compat_next_hosts`, `compat_next_paths`).
    func allowedNext(_ next: String?) -> String? {
        DGPTokens.allowedNext(next, hosts: c.options.nextHosts, paths: c.options.nextPaths)
    }

    /// `GET /auth/check?jwt=&next=`.
    func check(_ request: Request) async -> Response {
        await HTTP.endpoint("dgp check", logger: c.logger) {
            let q = try HTTP.query(request)
            if let user = try await user(try q.single("jwt")) {
                return CompatContext.json(["authenticated": true, "profile": profile(user)])
            }
            let base = c.services.settings.issuer.hasSuffix("/") ? String(c.services.settings.issuer.dropLast()) : c.services.settings.issuer
            let next = try q.single("next")
            var providers: [String: Any] = [:]
            for p in try await c.services.providers() + [ProviderRecord(id: "gatehouse", kind: .oauth2, name: "Gatehouse", clientID: "", clientSecret: "")] {
                providers[p.id] = ["url": RedirectURI.appending([("next", next)], to: base + "/auth/login/" + p.id)]
            }
            return CompatContext.json(["authenticated": false, "providers": providers])
        }
    }

    /// `GET /auth/login/{provider}?next=`: a provider's sign-in (or ours, `gatehouse`), then `/auth/finish`.
    func login(_ request: Request, _ context: GatehouseRequestContext, provider id: String) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await c.browser.page("dgp login") {
            let q = try HTTP.query(request)
            guard let next = allowedNext(try q.single("next")) else {
                return c.browser.pages.error(DGPTokens.nextNotAllowed)
            }
            let returnTo = Self.finishPath + FormEncoding.encode([("next", next)])
            if id == "gatehouse" {
                // Already signed in: straight to the token (single sign-on); otherwise our login page first.
                if try await c.browser.currentSession(request) != nil { return c.browser.pages.seeOtherLocal(returnTo) }
                return c.browser.toLogin(returnTo: returnTo)
            }
            guard let provider = try await c.services.upstreamSignIn.provider(id: id) else {
                return c.browser.pages.error(UpstreamSignIn.unknownProvider)
            }
            return try await c.browser.beginUpstream(
                provider, returnTo: returnTo, linkUserID: nil, address: c.services.clientAddress(request, context))
        }
    }

    /// After any login: a user token, appended to `next` as `jwt`.
    func finish(_ request: Request) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await c.browser.page("dgp finish") {
            let q = try HTTP.query(request)
            guard let next = allowedNext(try q.single("next")) else {
                return c.browser.pages.error(DGPTokens.nextNotAllowed)
            }
            guard let (session, user) = try await c.browser.currentSession(request), let tokens else {
                let returnTo = Self.finishPath + FormEncoding.encode([("next", next)])
                return c.browser.toLogin(returnTo: returnTo)
            }
            let token = try await tokens.userToken(for: user, session: session)
            return Response(status: .found, headers: [.location: RedirectURI.appending([("jwt", token)], to: next), .cacheControl: "no-store"])
        }
    }

    /// `GET /auth/authorize?jwt=&service=` → `{token, userid, permissions, service}`.
    func authorize(_ request: Request) async -> Response {
        if let refused = HTTP.refuseHead(request) { return refused }
        return await HTTP.endpoint("dgp authorize", logger: c.logger) {
            let q = try HTTP.query(request)
            guard let user = try await user(try q.single("jwt")), let tokens else {
                return CompatContext.json(["error": "not authenticated", "permissions": [:] as [String: Bool]], status: .unauthorized)
            }
            let issued = try await tokens.permissionToken(for: user, service: try q.single("service"))
            if let problem = issued.problem {
                c.logger.warning("permissions unavailable", metadata: ["service": .string(issued.service), "detail": .string(problem)])
            }
            return CompatContext.json(
                ["token": issued.token, "userid": user.id, "permissions": issued.permissions, "service": issued.service])
        }
    }

    /// `POST /auth/update?jwt=&username=`: the username may change once; other fields are ignored.
    func update(_ request: Request) async -> Response {
        await HTTP.endpoint("dgp update", logger: c.logger) {
            let q = try HTTP.query(request)
            guard let user = try await user(try q.single("jwt")) else {
                return CompatContext.json(["success": false, "error": "Not authenticated"], status: .unauthorized)
            }
            guard let username = try q.single("username") else { return CompatContext.json(["success": true]) }
            let admin = Administration(storage: c.services.storage, clock: c.services.clock)
            switch try await admin.changeUsername(userID: user.id, to: username) {
            case .changed: return CompatContext.json(["success": true])
            case .refused(let why): return CompatContext.json(["success": false, "error": why])
            }
        }
    }
}
