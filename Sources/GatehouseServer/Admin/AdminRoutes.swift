import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird

// The admin API's handlers, by resource: decode (path, query, JSON body), call `Administration`, encode.

struct UsersRoutes: Sendable {
    typealias API = AdminAPI

    @Sendable func list(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let q = try ListQuery(request)
        let query = UserQuery(
            prefix: try q.string("query"), disabled: try q.bool("disabled"), group: try q.string("group"), limit: try q.limit())
        return try API.json(try await admin.listUsers(query, cursor: try q.cursor))
    }

    @Sendable func create(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        var body = try await JSONInput.read(&request)
        let username = body.required("username")
        let email = body.string("email"), name = body.string("name")
        var profile = UserProfile()
        profile.givenName = body.string("given_name")
        profile.familyName = body.string("family_name")
        profile.picture = body.string("picture")
        profile.phoneNumber = body.string("phone_number")
        profile.address = body.string("address")
        profile.emailVerified = body.bool("email_verified") ?? false
        profile.phoneNumberVerified = body.bool("phone_number_verified") ?? false
        let password = body.string("password"), hash = body.string("password_hash")
        try body.finish()
        let user = try await admin.createUser(
            username: username ?? "", email: email, name: name, password: password, passwordHash: hash, profile: profile)
        return try API.resource(UserView(user), status: .created, location: API.base + "/users/" + API.segment(user.id))
    }

    @Sendable func show(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(UserView(try await admin.user(id: try API.parameter(context, "id"))))
    }

    @Sendable func update(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        var body = try await JSONInput.read(&request)
        var patch = UserPatch()
        patch.username = body.string("username")
        patch.email = body.nullableString("email")
        patch.name = body.nullableString("name")
        patch.givenName = body.nullableString("given_name")
        patch.familyName = body.nullableString("family_name")
        patch.picture = body.nullableString("picture")
        patch.phoneNumber = body.nullableString("phone_number")
        patch.address = body.nullableString("address")
        patch.emailVerified = body.bool("email_verified")
        patch.phoneNumberVerified = body.bool("phone_number_verified")
        try body.finish()
        try API.checkIfMatch(request, current: UserView(try await admin.user(id: id)))
        return try API.resource(UserView(try await admin.updateUser(id: id, patch)))
    }

    @Sendable func delete(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        try API.checkIfMatch(request, current: UserView(try await admin.user(id: id)))
        try await admin.deleteUser(id: id)
        return API.noContent()
    }

    @Sendable func password(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        var body = try await JSONInput.read(&request)
        let password = body.string("password")
        let requireReset = body.bool("require_reset") ?? false
        try body.finish()
        return try API.resource(UserView(try await admin.setPassword(userID: id, password: password, requireReset: requireReset)))
    }

    func toggle(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration, disable: Bool) async throws -> Response {
        let id = try API.parameter(context, "id")
        let user = disable ? try await admin.disableUser(id: id) : try await admin.enableUser(id: id)
        return try API.resource(UserView(user))
    }

    @Sendable func sessions(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let sessions = try await admin.sessions(userID: try API.parameter(context, "id"))
        return try API.json(try page(sessions, key: \.id, request))
    }

    @Sendable func endSessions(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.checkIfMatchWithoutETag(request)
        _ = try await admin.endSessions(userID: try API.parameter(context, "id"))
        return API.noContent()
    }

    @Sendable func grants(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let grants = try await admin.grants(userID: try API.parameter(context, "id"))
        return try API.json(try page(grants, key: \.id, request))
    }

    @Sendable func groups(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let user = try await admin.user(id: try API.parameter(context, "id"))
        let members = try await admin.memberships(userID: user.id).map {
            MemberView(group: $0.group, user_id: user.id, username: user.username, role: $0.role)
        }
        return try API.json(try page(members, key: \.group, request))
    }

    @Sendable func identities(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let identities = try await admin.identities(userID: try API.parameter(context, "id"))
        return try API.json(try page(identities, key: { $0.provider + "\u{0}" + $0.subject }, request))
    }

    @Sendable func unlink(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.checkIfMatchWithoutETag(request)
        try await admin.unlinkIdentity(
            userID: try API.parameter(context, "id"), provider: try API.parameter(context, "provider"),
            subject: try API.parameter(context, "subject"))
        return API.noContent()
    }
}

struct ClientsRoutes: Sendable {
    typealias API = AdminAPI

    @Sendable func list(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let q = try ListQuery(request)
        return try API.json(try await admin.listClients(cursor: try q.cursor, limit: try q.limit()))
    }

    @Sendable func create(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        var body = try await JSONInput.read(&request)
        var new = Administration.NewClient(name: body.required("name") ?? "")
        new.redirectURIs = body.strings("redirect_uris") ?? []
        new.postLogoutRedirectURIs = body.strings("post_logout_redirect_uris") ?? []
        new.grantTypes = body.strings("grant_types", max: 10) ?? []
        new.allowPasswordGrant = new.grantTypes.contains(GrantType.password)
        new.scope = body.string("scope")
        new.defaultScope = body.string("default_scope")
        new.resources = body.strings("resources") ?? []
        new.isPublic = body.bool("public") ?? false
        new.skipConsent = body.bool("skip_consent") ?? false
        new.singleGrantPerUser = body.bool("single_grant_per_user") ?? false
        new.legacyRedirectState = body.bool("legacy_redirect_state") ?? false
        new.mayExchangeFrom = body.strings("may_exchange_from") ?? []
        try body.finish()
        let (client, secret) = try await admin.createClient(new)
        // The secret is in this answer only; the ETag is that of the client without it.
        var response = try API.json(ClientView(client, secret: secret, now: admin.now), status: .created)
        response.headers[.location] = API.base + "/clients/" + API.segment(client.id)
        response.headers[.eTag] = API.etag(Array(try API.encoder.encode(ClientView(client, now: admin.now))))
        return response
    }

    @Sendable func show(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(ClientView(try await admin.client(id: try API.parameter(context, "id")), now: admin.now))
    }

    @Sendable func update(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        var body = try await JSONInput.read(&request)
        var patch = ClientPatch()
        patch.name = body.string("name")
        patch.redirectURIs = body.strings("redirect_uris")
        patch.postLogoutRedirectURIs = body.strings("post_logout_redirect_uris")
        patch.grantTypes = body.strings("grant_types", max: 10)
        patch.scope = body.string("scope")
        patch.defaultScope = body.string("default_scope")
        patch.resources = body.strings("resources")
        patch.skipConsent = body.bool("skip_consent")
        patch.singleGrantPerUser = body.bool("single_grant_per_user")
        patch.legacyRedirectState = body.bool("legacy_redirect_state")
        patch.mayExchangeFrom = body.strings("may_exchange_from")
        try body.finish()
        try API.checkIfMatch(request, current: ClientView(try await admin.client(id: id), now: admin.now))
        return try API.resource(ClientView(try await admin.updateClient(id: id, patch), now: admin.now))
    }

    @Sendable func delete(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        try API.checkIfMatch(request, current: ClientView(try await admin.client(id: id), now: admin.now))
        try await admin.deleteClient(id: id)
        return API.noContent()
    }

    @Sendable func rotateSecret(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        let grace = try ListQuery(request).integer("grace")
        let (client, secret) = try await admin.rotateSecret(clientID: id, grace: grace)
        var response = try API.json(ClientView(client, secret: secret, now: admin.now))
        response.headers[.eTag] = API.etag(Array(try API.encoder.encode(ClientView(client, now: admin.now))))
        return response
    }
}

struct DirectoryRoutes: Sendable {
    typealias API = AdminAPI
    let services: GatehouseServices

    // MARK: scopes

    @Sendable func scopes(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await services.storage.listScopes().map(ScopeView.init), key: \.name, request))
    }

    @Sendable func createScope(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        var body = try await JSONInput.read(&request)
        let name = body.required("name") ?? ""
        let description = body.string("description")
        let isDefault = body.bool("default") ?? false
        let role = body.string("required_role")
        try body.finish()
        if isDefault, ScopeRecord.reservedNames.contains(name) {
            throw Administration.ValidationError("the admin scopes cannot be default scopes", field: "default")
        }
        let scope = try await admin.createScope(name: name, description: description, isDefault: isDefault, requiredRole: role)
        return try API.resource(ScopeView(scope), status: .created, location: API.base + "/scopes/" + API.segment(name))
    }

    @Sendable func scope(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(ScopeView(try await admin.scope(name: try API.parameter(context, "name"))))
    }

    @Sendable func updateScope(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let name = try API.parameter(context, "name")
        var body = try await JSONInput.read(&request)
        let description = body.string("description")
        let isDefault = body.bool("default")
        let role = body.nullableString("required_role")
        try body.finish()
        try API.checkIfMatch(request, current: ScopeView(try await admin.scope(name: name)))
        return try API.resource(ScopeView(try await admin.updateScope(name: name, description: description, isDefault: isDefault, requiredRole: role)))
    }

    @Sendable func deleteScope(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let name = try API.parameter(context, "name")
        let force = try ListQuery(request).bool("force") ?? false
        try API.checkIfMatch(request, current: ScopeView(try await admin.scope(name: name)))
        try await admin.deleteScope(name: name, force: force)
        return API.noContent()
    }

    // MARK: groups

    @Sendable func groups(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await admin.listGroups(), key: \.name, request))
    }

    @Sendable func createGroup(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        var body = try await JSONInput.read(&request)
        let name = body.required("name") ?? ""
        try body.finish()
        let group = try await admin.createGroup(name: name)
        return try API.resource(GroupView(group, members: 0), status: .created, location: API.base + "/groups/" + API.segment(name))
    }

    @Sendable func group(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(try await admin.group(name: try API.parameter(context, "name")))
    }

    @Sendable func deleteGroup(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let name = try API.parameter(context, "name")
        try API.checkIfMatch(request, current: try await admin.group(name: name))
        try await admin.deleteGroup(name: name)
        return API.noContent()
    }

    @Sendable func members(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await admin.members(group: try API.parameter(context, "name")), key: \.user_id, request))
    }

    @Sendable func addMember(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let name = try API.parameter(context, "name")
        var body = try await JSONInput.read(&request)
        let user = body.required("user") ?? ""
        let role = body.string("role") ?? "member"
        try body.finish()
        return try API.json(try await admin.addMember(group: name, user: user, role: role))
    }

    @Sendable func removeMember(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.checkIfMatchWithoutETag(request)
        try await admin.removeMember(group: try API.parameter(context, "name"), user: try API.parameter(context, "user"))
        return API.noContent()
    }

    // MARK: services

    @Sendable func servicesList(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await services.storage.listServices().map(ServiceView.init), key: \.name, request))
    }

    @Sendable func createService(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        var body = try await JSONInput.read(&request)
        let name = body.required("name") ?? ""
        let url = body.string("permissions_url")
        try body.finish()
        let service = try await admin.createService(name: name, permissionsURL: url)
        return try API.resource(ServiceView(service), status: .created, location: API.base + "/services/" + API.segment(name))
    }

    @Sendable func service(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(ServiceView(try await admin.service(name: try API.parameter(context, "name"))))
    }

    @Sendable func deleteService(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let name = try API.parameter(context, "name")
        try API.checkIfMatch(request, current: ServiceView(try await admin.service(name: name)))
        try await admin.deleteService(name: name)
        return API.noContent()
    }

    @Sendable func serviceGrants(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await admin.serviceGrants(service: try API.parameter(context, "name")), key: \.user_id, request))
    }

    @Sendable func grantPermissions(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let name = try API.parameter(context, "name")
        var body = try await JSONInput.read(&request)
        let user = body.required("user") ?? ""
        let permissions = body.strings("permissions") ?? []
        try body.finish()
        return try API.json(try await admin.grantPermissions(service: name, user: user, permissions: permissions))
    }

    @Sendable func revokePermissions(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.checkIfMatchWithoutETag(request)
        let q = try ListQuery(request)
        let named = q.parameters.all("permission")
        _ = try await admin.revokePermissions(
            service: try API.parameter(context, "name"), user: try API.parameter(context, "user"),
            permissions: named.isEmpty ? nil : named)
        return API.noContent()
    }

    // MARK: providers

    func providerViews() async throws -> [ProviderView] {
        try await services.providers().map { p in
            ProviderView(
                id: p.id, kind: p.kind.rawValue, name: p.name, client_id: p.clientID, issuer: p.issuer,
                scope: p.scope.description, link_by_email: p.linkByEmail,
                // The config file wins over a database row with the same id.
                source: services.configuredProviderIDs.contains(p.id) ? "config" : "database")
        }
    }

    @Sendable func providers(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await providerViews(), key: \.id, request))
    }

    @Sendable func provider(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        guard let view = try await providerViews().first(where: { $0.id == id }) else { throw AdminError.notFound("no provider '\(id)'") }
        return try API.resource(view)
    }

    @Sendable func deleteProvider(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let id = try API.parameter(context, "id")
        guard let view = try await providerViews().first(where: { $0.id == id }) else { throw AdminError.notFound("no provider '\(id)'") }
        guard view.source == "database" else {
            throw AdminError.conflict("the provider '\(id)' comes from the config file: remove it there")
        }
        try API.checkIfMatch(request, current: view)
        try await admin.deleteProvider(id: id)
        return API.noContent()
    }
}

struct OperationsRoutes: Sendable {
    typealias API = AdminAPI
    let services: GatehouseServices

    @Sendable func keys(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.json(try page(try await admin.keys(), key: { String(format: "%020lld", $0.created_at) + $0.kid }, request))
    }

    @Sendable func rotateKey(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        var body = try await JSONInput.read(&request, optional: true)
        let algorithm = body.string("algorithm")
        let immediately = body.bool("immediately") ?? false
        try body.finish()
        let key = try await admin.rotateKey(algorithm: algorithm, immediately: immediately)
        // This instance publishes (and, with `immediately`, signs with) the key now; the others at their next reload.
        _ = try? await services.keys.reload(from: services.storage)
        return try API.json(key, status: .created)
    }

    @Sendable func revokeKey(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        struct Out: Encodable {
            let revoked: String
            let replacement: String?
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: K.self)
                try c.encode(revoked, forKey: .revoked)
                try c.encode(replacement, forKey: .replacement)
            }
            enum K: String, CodingKey { case revoked, replacement }
        }
        let kid = try API.parameter(context, "kid")
        let replacement = try await admin.revokeKey(kid: kid)
        // Out of this instance's key set at once (the others drop it within about a second).
        try? await services.keys.drop([kid])
        _ = try? await services.keys.reload(from: services.storage)
        return try API.json(Out(revoked: kid, replacement: replacement))
    }

    @Sendable func revokeGrant(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.checkIfMatchWithoutETag(request)
        try await admin.revokeGrant(id: try API.parameter(context, "id"))
        return API.noContent()
    }

    @Sendable func events(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let q = try ListQuery(request)
        var status: OutboxStatus?
        if let raw = try q.string("status") {
            guard let s = OutboxStatus(rawValue: raw) else {
                throw Administration.ValidationError("status must be pending, delivered or failed", field: "status")
            }
            status = s
        }
        return try API.json(try await admin.events(status: status, cursor: try q.cursor, limit: try q.limit()))
    }

    @Sendable func event(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(try await admin.event(id: try API.parameter(context, "id")))
    }

    @Sendable func retryEvent(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        try API.resource(try await admin.retryEvent(id: try API.parameter(context, "id")))
    }

    @Sendable func audit(_ request: inout Request, _ context: GatehouseRequestContext, _ admin: Administration) async throws -> Response {
        let q = try ListQuery(request)
        let query = AuditQuery(
            actor: try q.string("actor"), action: try q.string("action"), target: try q.string("target"),
            since: try q.integer("since"), until: try q.integer("until"), limit: try q.limit())
        return try API.json(try await admin.auditEvents(query, cursor: try q.cursor))
    }
}
