import Foundation

/// A group of users (a team, a committee); each membership carries a role.
public struct GroupRecord: Sendable, Equatable {
    public var name: String
    public var createdAt: Int64
    public init(name: String, createdAt: Int64) {
        self.name = name
        self.createdAt = createdAt
    }
}

/// A user's membership of a group, with its role.
public struct MembershipRecord: Sendable, Equatable {
    public var group: String
    public var userID: String
    public var role: String
    public init(group: String, userID: String, role: String) {
        self.group = group
        self.userID = userID
        self.role = role
    }
}

/// A service whose permissions Gatehouse manages: from grants, or from the service's own permissions URL.
public struct ServiceRecord: Sendable, Equatable {
    public var name: String
    public var permissionsURL: String?
    public var createdAt: Int64
    public init(name: String, permissionsURL: String?, createdAt: Int64) {
        self.name = name
        self.permissionsURL = permissionsURL
        self.createdAt = createdAt
    }
}

/// Accounts beyond sign-in: groups and memberships, services and their permission grants, and the one-time
/// username change.
public protocol AccountStore: Sendable {
    /// Throws `StorageError.duplicate` when the group exists.
    func insertGroup(_ group: GroupRecord) async throws
    func group(name: String) async throws -> GroupRecord?
    /// Adds the user to the group, or changes the role of an existing membership.
    func saveMembership(_ membership: MembershipRecord) async throws
    func memberships(userID: String) async throws -> [MembershipRecord]

    /// Throws `StorageError.duplicate` when the service exists.
    func insertService(_ service: ServiceRecord) async throws
    func service(name: String) async throws -> ServiceRecord?
    func grantPermissions(service: String, userID: String, permissions: [String]) async throws
    func permissions(service: String, userID: String) async throws -> [String]

    /// Changes the username unless it was changed before (then `false`). Throws `StorageError.duplicate`
    /// when the new name is taken.
    func changeUsername(userID: String, to username: String, at time: Int64) async throws -> Bool
    func usernameWasChanged(userID: String) async throws -> Bool
}

/// A user's permissions for a service (a user-permission manager): from the grants made with `services grant`,
/// or — when the service has a permissions URL — from that URL, called with the service and user id, whose JSON
/// object of booleans is used as is. Timeouts and errors give no permissions (and are logged by the caller).
public struct PermissionResolver: Sendable {
    /// Only what permission lookups use: services and grants of permissions.
    public typealias Storage = AccountStore
    let storage: any Storage
    let http: any UpstreamHTTP

    public init(storage: any Storage, http: any UpstreamHTTP) {
        self.storage = storage
        self.http = http
    }

    /// A permission lookup for a service that does not exist.
    public enum Failure: Error, Sendable { case unknownService }

    /// Permissions by name (`true` for each granted one), plus a note when a permissions URL failed.
    public func permissions(service name: String, userID: String) async throws -> (permissions: [String: Bool], problem: String?) {
        guard let service = try await storage.service(name: name) else { throw Failure.unknownService }
        guard let url = service.permissionsURL else {
            let granted = try await storage.permissions(service: name, userID: userID)
            return (Dictionary(granted.map { ($0, true) }, uniquingKeysWith: { a, _ in a }), nil)
        }
        let target = RedirectURI.appending([("service", name), ("userid", userID)], to: url)
        do {
            let response = try await http.get(target, headers: [("Accept", "application/json")])
            guard response.status == 200,
                let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
            else { return ([:], "permissions URL answered \(response.status) without a JSON object") }
            var out: [String: Bool] = [:]
            for (k, v) in object {
                if let b = v as? Bool { out[k] = b }
            }
            return (out, nil)
        } catch {
            return ([:], "permissions URL failed: \(error)")
        }
    }
}

extension Administration {
    /// 1–100 of letters, digits and `. _ - :` (group, service and permission names).
    public static func isValidName(_ name: String) -> Bool {
        (1...100).contains(name.count)
            && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-:".unicodeScalars.contains($0) }
    }

    public func createGroup(name: String) async throws -> GroupRecord {
        guard Self.isValidName(name) else { throw ValidationError("the group name must be 1 to 100 letters, digits or . _ - :", field: "name") }
        let group = GroupRecord(name: name, createdAt: clock.nowSeconds)
        do { try await storage.insertGroup(group) } catch StorageError.duplicate {
            throw AdminError.conflict("the group '\(name)' already exists")
        }
        try await audit.record("group.created", actor: actor, target: "group:" + name)
        return group
    }

    public func addMember(group: String, username: String, role: String) async throws -> MembershipRecord {
        guard try await storage.group(name: group) != nil else { throw ValidationError("no group '\(group)'") }
        guard let user = try await storage.user(username: username) else { throw ValidationError("no user '\(username)'") }
        guard Self.isValidName(role) else { throw ValidationError("--role must be 1 to 100 letters, digits or . _ - :") }
        let membership = MembershipRecord(group: group, userID: user.id, role: role)
        try await storage.saveMembership(membership)
        try await audit.record("group.member_added", actor: actor, target: "group:" + group, detail: ["user_id": user.id, "role": role])
        return membership
    }

    public func createService(name: String, permissionsURL: String?) async throws -> ServiceRecord {
        guard Self.isValidName(name) else { throw ValidationError("the service name must be 1 to 100 letters, digits or . _ - :", field: "name") }
        if let permissionsURL { try ProviderRecord.checkURL(permissionsURL, option: "--permissions-url") }
        let service = ServiceRecord(name: name, permissionsURL: permissionsURL, createdAt: clock.nowSeconds)
        do { try await storage.insertService(service) } catch StorageError.duplicate {
            throw AdminError.conflict("the service '\(name)' already exists")
        }
        try await audit.record("service.created", actor: actor, target: "service:" + name)
        return service
    }

    public func grant(service: String, username: String, permissions: [String]) async throws {
        guard try await storage.service(name: service) != nil else { throw ValidationError("no service '\(service)'") }
        guard let user = try await storage.user(username: username) else { throw ValidationError("no user '\(username)'") }
        guard !permissions.isEmpty else { throw ValidationError("name at least one --permission") }
        for p in permissions where !Self.isValidName(p) {
            throw ValidationError("'\(p)' is not a valid permission name (1 to 100 letters, digits or . _ - :)")
        }
        try await storage.grantPermissions(service: service, userID: user.id, permissions: permissions)
        try await audit.record(
            "service.permissions_granted", actor: actor, target: "service:" + service,
            detail: ["user_id": user.id, "permissions": permissions.joined(separator: " ")])
    }

    /// A user may change their username once; after that it is fixed.
    public enum UsernameChange: Sendable, Equatable {
        case changed
        case refused(String)
    }

    public func changeUsername(userID: String, to username: String) async throws -> UsernameChange {
        let username = username.trimmingCharacters(in: .whitespacesAndNewlines)
        guard Self.isValidUsername(username) else { return .refused("The username must be 1 to 150 letters, digits or . _ - @ +.") }
        guard let user = try await storage.user(id: userID) else { return .refused("No such user.") }
        if user.username == username { return .changed }
        do {
            guard try await storage.changeUsername(userID: userID, to: username, at: clock.nowSeconds) else {
                return .refused("The username can only be changed once.")
            }
        } catch StorageError.duplicate {
            return .refused("The username is already taken.")
        } catch {
            // A concurrent change took the name between the check and the update (the unique index refused it).
            if try await storage.user(username: username) != nil { return .refused("The username is already taken.") }
            throw error
        }
        return .changed
    }
}
