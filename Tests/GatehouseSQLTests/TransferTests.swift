import Foundation
import GatehouseCore
import GatehouseTestSupport
import Synchronization
import Testing

@testable import GatehouseSQL

/// `gatehouse export` / `import` / `backup` at the storage level: a round trip between every pair of
/// backends keeps every row (hashes and sealed values as they were), and whatever is wrong with a file
/// leaves the target as it was.
@Suite("Export and import")
struct TransferTests {
    static let box = try! SecretBox(base64Keys: [Data((0..<32).map { UInt8($0) }).base64EncodedString()])

    /// A store with a row in most tables: a user with a password, a client with a secret, a custom scope, a
    /// sealed signing key and provider secret, a group, a service permission, a grant with a refresh
    /// token, a session, a revoked access token, an outbox event.
    static func fill(_ store: SQLStore) async throws -> (user: UserRecord, client: ClientRecord, secret: String) {
        let admin = Administration(storage: store, passwords: PasswordHasher(cost: 4))
        let user = try await admin.createUser(username: "dan", email: "dan@example.com", name: "Dan", password: "correct horse")
        var new = Administration.NewClient(name: "app")
        new.redirectURIs = ["https://app.example/cb"]
        let (client, secret) = try await admin.createClient(new)
        _ = try await admin.createScope(name: "notes:read", description: "Read notes \"quoted\" ü", isDefault: false)
        _ = try await admin.createGroup(name: "ops")
        _ = try await admin.addMember(group: "ops", username: "dan", role: "admin")
        _ = try await admin.createService(name: "notes", permissionsURL: nil)
        try await admin.grant(service: "notes", username: "dan", permissions: ["write"])
        let key = try SigningKey.generate(.es256)
        _ = try await store.insertFirstKey(
            SigningKeyRecord(kid: key.kid, algorithm: .es256, privatePEM: key.pemRepresentation, createdAt: 1, deactivatedAt: nil, retiredAt: nil))
        try await store.insertProvider(ProviderRecord(id: "gh", kind: .github, name: "GitHub", clientID: "id", clientSecret: "very-secret-value"))
        try await store.insertGrant(
            GrantRecord(id: "g1", clientID: client.id, userID: user.id, scope: Scope(["openid", "notes:read"]), createdAt: 100, revokedAt: nil),
            refreshToken: RefreshTokenRecord(
                hash: Secrets.hash("refresh-1"), grantID: "g1", clientID: client.id, userID: user.id, scope: Scope(["openid"]),
                resources: ["https://api.example"], issuedAt: 100, expiresAt: 4_000_000_000))
        try await store.insertSession(SessionRecord(hash: Secrets.hash("cookie"), id: "sid", userID: user.id, authTime: 5, createdAt: 5, expiresAt: 4_000_000_000))
        try await store.revokeAccessToken(jti: "jti-1", expiresAt: 4_000_000_000)
        return (user, client, secret!)
    }

    static func export(_ store: SQLStore, tokens: Bool = true) async throws -> [String] {
        let lines = Mutex<[String]>([])
        _ = try await store.export(tokens: tokens) { line in lines.withLock { $0.append(line) } }
        return lines.withLock { $0 }
    }

    static func importing(_ lines: [String], into store: SQLStore) async throws -> Transfer.Summary {
        let next = Mutex(0)
        return try await store.importExport {
            next.withLock { i in
                defer { i += 1 }
                return i < lines.count ? lines[i] : nil
            }
        }
    }

    /// A row line with one cell changed.
    static func changing(_ line: String, _ column: String, to value: Any) throws -> String {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        var cells = try #require(object["row"] as? [String: Any])
        cells[column] = value
        object["row"] = cells
        return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    /// The row lines, in an order independent of the database's.
    static func rows(_ lines: [String]) -> [String] { Array(lines.dropFirst().dropLast()).sorted() }

    @Test(arguments: TestDatabase.available, TestDatabase.available)
    func roundTripKeepsEveryRowAndCredentialsStillWork(from source: TestDatabase, to target: TestDatabase) async throws {
        try await source.withStore(secrets: Self.box) { from in
            let (user, client, secret) = try await Self.fill(from)
            let lines = try await Self.export(from)
            #expect(lines.first?.contains("\"format\":\"gatehouse-export\"") == true)
            #expect(lines.last == "{\"end\":true,\"rows\":\(lines.count - 2)}")
            #expect(!lines.joined().contains("very-secret-value") && !lines.joined().contains("PRIVATE KEY"))  // sealed
            #expect(!lines.joined().contains(secret) && !lines.joined().contains("correct horse"))  // hashed

            try await target.withStore(secrets: Self.box) { to in
                let summary = try await Self.importing(lines, into: to)
                #expect(summary.total == lines.count - 2)
                #expect(summary.rows["refresh_tokens"] == 1 && summary.rows["users"] == 1)
                // The same rows back out, value for value.
                #expect(Self.rows(try await Self.export(to)) == Self.rows(lines))
                // And they mean the same: password, client secret, refresh token, revoked jti, sealed values.
                let moved = try #require(try await to.user(username: "dan"))
                #expect(moved.id == user.id)
                #expect(try await PasswordHasher(cost: 4).verify("correct horse", hash: moved.passwordHash))
                let movedClient = try #require(try await to.client(id: client.id))
                #expect(Secrets.verify(secret, hash: try #require(movedClient.secretHash)))
                #expect(try await to.refreshToken(hash: Secrets.hash("refresh-1"))?.grantID == "g1")
                #expect(try await to.isAccessTokenRevoked(jti: "jti-1", grantID: nil, clientID: client.id))
                #expect(try await to.listProviders().first?.clientSecret == "very-secret-value")
                #expect(try await to.listKeys().count == 1)
                #expect(try await to.listScopes().first { $0.name == "notes:read" }?.description == "Read notes \"quoted\" ü")
                #expect(try await to.pendingMigrations().isEmpty)
            }
        }
    }

    @Test(arguments: TestDatabase.available)
    func everyTableOfTheSchemaIsClassified(db: TestDatabase) async throws {
        try await db.withStore { store in
            let schema = Set(try await store.schemaTables())
            #expect(schema == Set(Transfer.tables).union(Transfer.neverExported))
        }
    }

    @Test(arguments: TestDatabase.available)
    func noTokensLeavesOutGrantsRefreshTokensAndSessions(db: TestDatabase) async throws {
        try await db.withStore(secrets: Self.box) { store in
            _ = try await Self.fill(store)
            let lines = try await Self.export(store, tokens: false)
            #expect(lines.first?.contains("\"tokens\":false") == true)
            for table in Transfer.tokenTables { #expect(!lines.contains { $0.contains("\"table\":\"\(table)\"") }) }
            #expect(lines.contains { $0.contains("\"table\":\"revoked_access_tokens\"") })  // revocations always move
        }
    }

    @Test(arguments: TestDatabase.available)
    func badFilesChangeNothing(db: TestDatabase) async throws {
        let lines = try await TestDatabase.sqlite.withStore(secrets: Self.box) { store in
            _ = try await Self.fill(store)
            return try await Self.export(store)
        }
        func refused(_ file: [String], _ message: String) async throws {
            try await db.withStore(secrets: Self.box) { store in
                var text = "no error"
                do {
                    _ = try await Self.importing(file, into: store)
                } catch let failure as Transfer.Failure {
                    text = failure.description
                }
                #expect(text.contains(message), "\(text)")
                #expect(try await store.user(username: "dan") == nil)
                #expect(try await store.listScopes().contains { $0.name == "openid" })  // the built-in scopes are still there
            }
        }
        try await refused([], "empty")
        try await refused(["{\"hello\":1}"], "not a Gatehouse export")
        try await refused([lines[0].replacingOccurrences(of: "\"version\":1", with: "\"version\":99")] + lines.dropFirst(), "unsupported export format version 99")
        try await refused([lines[0].replacingOccurrences(of: "\"schema\":\(Migrations.latestVersion)", with: "\"schema\":999")] + lines.dropFirst(), "newer than this Gatehouse")
        try await refused(Array(lines.dropLast()), "ends before the export's last line")
        try await refused(Array(lines.dropLast(2)) + [lines.last!], "the export says")
        try await refused(lines + ["{\"table\":\"users\",\"row\":{}}"], "data after the end")
        let user = try #require(lines.firstIndex { $0.contains("\"table\":\"users\"") })
        var badColumn = lines
        badColumn[user] = badColumn[user].replacingOccurrences(of: "\"username\":", with: "\"user; DROP TABLE users\":")
        try await refused(badColumn, "has no column")
        var badType = lines
        badType[user] = badType[user].replacingOccurrences(of: "\"username\":\"dan\"", with: "\"username\":5")
        try await refused(badType, "users.username has the wrong type")
        var badTable = lines
        badTable[user] = badTable[user].replacingOccurrences(of: "\"table\":\"users\"", with: "\"table\":\"gatehouse_migrations\"")
        try await refused(badTable, "not in the export's header")

        var huge = lines
        huge[user] = try Self.changing(huge[user], "created_at", to: Int64.max)
        try await refused(huge, "out of range")

        // Sealed values must open with this secrets_key before anything is committed; none may be in clear.
        try await db.withStore(secrets: try SecretBox(base64Keys: [Data(repeating: 9, count: 32).base64EncodedString()])) { store in
            var text = "no error"
            do { _ = try await Self.importing(lines, into: store) } catch let failure as Transfer.Failure { text = failure.description }
            #expect(text.contains("does not open with this secrets_key"), "\(text)")
            #expect(try await store.user(username: "dan") == nil)
        }
        let key = try #require(lines.firstIndex { $0.contains("\"table\":\"signing_keys\"") })
        var clear = lines
        clear[key] = try Self.changing(clear[key], "private_pem", to: try SigningKey.generate(.es256).pemRepresentation)
        try await refused(clear, "stored unencrypted, but secrets_key is set")

        // A database in use is refused, and keeps its rows.
        try await db.withStore(secrets: Self.box) { store in
            _ = try await Administration(storage: store, passwords: PasswordHasher(cost: 4))
                .createUser(username: "erin", email: nil, name: nil, password: nil)
            let error = await #expect(throws: Transfer.Failure.self) { _ = try await Self.importing(lines, into: store) }
            #expect(error?.description.contains("not empty") == true)
            #expect(try await store.user(username: "erin") != nil)
            #expect(try await store.user(username: "dan") == nil)
        }
    }

    @Test func backupCopiesTheFileConsistently() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gh-backup-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try await SQLStore.open(.sqliteFile(path: dir.appendingPathComponent("live.sqlite").path), secrets: Self.box)
        try await source.migrate()
        _ = try await Self.fill(source)
        let copy = dir.appendingPathComponent("copy.sqlite").path
        try await source.backup(to: copy)
        let mode = try FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        await #expect(throws: Transfer.Failure.self) { try await source.backup(to: copy) }  // never overwrites
        // Nor an empty file, nor a dangling symlink.
        let empty = dir.appendingPathComponent("empty").path
        FileManager.default.createFile(atPath: empty, contents: nil)
        await #expect(throws: Transfer.Failure.self) { try await source.backup(to: empty) }
        let dangling = dir.appendingPathComponent("dangling").path
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: dir.appendingPathComponent("nowhere").path)
        await #expect(throws: Transfer.Failure.self) { try await source.backup(to: dangling) }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("nowhere").path))
        let before = Self.rows(try await Self.export(source))
        await source.close()

        let restored = try await SQLStore.open(.sqliteFile(path: copy), secrets: Self.box)
        #expect(Self.rows(try await Self.export(restored)) == before)
        await restored.close()

        let memory = try await SQLStore.open(.sqliteMemory)
        await #expect(throws: Transfer.Failure.self) { try await memory.backup(to: dir.appendingPathComponent("m").path) }
        await memory.close()
    }
}
