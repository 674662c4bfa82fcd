import Foundation
import GatehouseCore
import GatehouseResourceServerTestSupport
import GatehouseTestSupport
import Synchronization
import Testing

@testable import GatehouseSQL

/// `gatehouse_db_*` metrics: calls holding a connection and calls waiting for one are counted while they
/// happen, and back to zero after, also when a call fails.
@Suite("Database connection use")
struct ConnectionUseTests {
    @Test(arguments: TestDatabase.available)
    func inUseAndWaitingAreCounted(db: TestDatabase) async throws {
        try await db.withStore { store in
            #expect(store.connectionUse() == ConnectionUse(inUse: 0, waiting: 0, capacity: db == .sqlite ? 1 : SQLStore.postgresConnections))
            // One transaction holds the SQLite writer (PostgreSQL: a connection and a row lock) until released.
            let release = AsyncStream.makeStream(of: Void.self)
            let entered = AsyncStream.makeStream(of: Void.self)
            let holder = Task {
                try await store.backend.transaction { _ in
                    entered.continuation.yield()
                    for await _ in release.stream { break }
                }
            }
            for await _ in entered.stream { break }
            #expect(store.connectionUse().inUse == 1)
            if db == .sqlite {
                // A second writer waits for the first.
                let second = Task { try await store.backend.transaction { _ in } }
                #expect(try await waitUntil { store.connectionUse().waiting == 1 })
                #expect(store.connectionUse().inUse == 1)
                release.continuation.yield()
                try await holder.value
                try await second.value
            } else {
                release.continuation.yield()
                try await holder.value
            }
            #expect(store.connectionUse().inUse == 0 && store.connectionUse().waiting == 0)
            // A failing body is counted out too.
            struct Boom: Error {}
            await #expect(throws: Boom.self) { try await store.backend.read { _ in throw Boom() } }
            #expect(store.connectionUse().inUse == 0 && store.connectionUse().waiting == 0)
        }
    }
}
