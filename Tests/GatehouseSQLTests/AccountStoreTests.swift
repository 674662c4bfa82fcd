import Foundation
import GatehouseCore
import GatehouseTestSupport
import Testing

@testable import GatehouseSQL

/// Conformance of the accounts storage (groups, services, permissions, username change) and the
/// administration rules on top, on SQLite and (when configured) PostgreSQL.
@Suite("Accounts storage conformance")
struct AccountStoreTests {
    static func admin(_ store: SQLStore) -> Administration {
        Administration(storage: store, passwords: PasswordHasher(cost: 4))
    }

    @Test(arguments: TestDatabase.available)
    func groupsAndMembershipsWithRoles(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let dan = try await admin.createUser(username: "dan", email: nil, name: nil, password: nil)
            _ = try await admin.createGroup(name: "webkom")
            await #expect(throws: AdminError.conflict("the group 'webkom' already exists")) {
                _ = try await admin.createGroup(name: "webkom")
            }
            _ = try await admin.addMember(group: "webkom", username: "dan", role: "member")
            _ = try await admin.addMember(group: "webkom", username: "DAN", role: "admin")  // changes the role
            #expect(try await store.memberships(userID: dan.id) == [MembershipRecord(group: "webkom", userID: dan.id, role: "admin")])
            await #expect(throws: Administration.ValidationError("no group 'nope'")) {
                _ = try await admin.addMember(group: "nope", username: "dan", role: "member")
            }
            await #expect(throws: Administration.ValidationError("no user 'eve'")) {
                _ = try await admin.addMember(group: "webkom", username: "eve", role: "member")
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func servicesGrantPermissions(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let dan = try await admin.createUser(username: "dan", email: nil, name: nil, password: nil)
            _ = try await admin.createService(name: "storage", permissionsURL: nil)
            try await admin.grant(service: "storage", username: "dan", permissions: ["write", "read"])
            try await admin.grant(service: "storage", username: "dan", permissions: ["read"])  // idempotent
            #expect(try await store.permissions(service: "storage", userID: dan.id) == ["read", "write"])
            await #expect(throws: Administration.ValidationError.self) {
                _ = try await admin.createService(name: "remote", permissionsURL: "http://permissions.example.com")  // not https
            }
            await #expect(throws: Administration.ValidationError("no service 'nope'")) {
                try await admin.grant(service: "nope", username: "dan", permissions: ["x"])
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func usernameChangesOnceAndStaysUnique(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            let dan = try await admin.createUser(username: "dan", email: nil, name: nil, password: nil)
            _ = try await admin.createUser(username: "taken", email: nil, name: nil, password: nil)
            #expect(try await admin.changeUsername(userID: dan.id, to: "Taken") == .refused("The username is already taken."))
            #expect(try await admin.changeUsername(userID: dan.id, to: "bad name") != .changed)
            #expect(try await admin.changeUsername(userID: dan.id, to: "daniel") == .changed)
            #expect(try await store.user(username: "daniel")?.id == dan.id)
            #expect(try await store.user(username: "dan") == nil)
            #expect(try await store.usernameWasChanged(userID: dan.id))
            #expect(try await admin.changeUsername(userID: dan.id, to: "dan2") == .refused("The username can only be changed once."))
            #expect(try await store.user(id: dan.id)?.username == "daniel")
        }
    }

    @Test(arguments: TestDatabase.available)
    func scopesCanRequireARole(db: TestDatabase) async throws {
        try await db.withStore { store in
            let admin = Self.admin(store)
            _ = try await admin.createScope(name: "all", description: "everything", isDefault: false, requiredRole: "admin")
            #expect(try await store.listScopes().first { $0.name == "all" }?.requiredRole == "admin")
        }
    }
}
