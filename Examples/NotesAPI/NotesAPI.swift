// An example API protected by GatehouseResourceServer: notes per user, read with scope notes:read,
// written with notes:write. Run it next to a Gatehouse server:
//
//   swift run notes-api --issuer http://127.0.0.1:8080 --audience http://127.0.0.1:9090 --port 9090
//
// Tokens are verified in-process against the issuer's JWKS; with --introspect (and the API's client
// secret in NOTES_API_CLIENT_SECRET) they are checked with the issuer on every request instead.
import ArgumentParser
import Foundation
import GatehouseResourceServer
import GatehouseResourceServerHummingbird
import Hummingbird
import Logging
import Synchronization

@main
struct NotesAPI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notes-api", abstract: "Example notes API protected by Gatehouse access tokens.")

    @Option(help: "Gatehouse issuer URL.") var issuer: String
    @Option(help: "This API's audience (the resource clients request tokens for).") var audience: String
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 9090
    @Flag(help: "Verify tokens by introspection (secret from NOTES_API_CLIENT_SECRET).") var introspect = false
    @Option(help: "Client id for introspection.") var clientId: String?
    @Option(help: "Seconds a positive introspection answer is reused.") var introspectionCacheTtl: Double = 5

    func run() async throws {
        var logger = Logger(label: "notes-api")
        logger.logLevel = .info
        let verifier: any AccessTokenVerifying
        if introspect {
            guard let clientId, let secret = ProcessInfo.processInfo.environment["NOTES_API_CLIENT_SECRET"] else {
                throw ValidationError("--introspect needs --client-id and NOTES_API_CLIENT_SECRET")
            }
            var config = IntrospectionVerifier.Configuration(
                issuer: issuer, audiences: [audience], clientID: clientId, clientSecret: secret)
            config.cacheTTL = introspectionCacheTtl
            verifier = IntrospectionVerifier(config)
        } else {
            verifier = TokenVerifier(.init(issuer: issuer, audiences: [audience]))
        }

        let notes = Notes()
        let router = Router(context: BasicAccessTokenContext.self)
        router.get("/healthz") { _, _ in "ok" }
        let api = router.group("notes").add(middleware: BearerTokenMiddleware(verifier: verifier))
        api.group().add(middleware: RequireScopes(["notes:read"])).get { _, context in
            let subject = context.accessToken!.subject
            return NoteList(subject: subject, notes: notes.list(subject))
        }
        api.group().add(middleware: RequireScopes(["notes:write"])).post { request, context -> EditedResponse<Note> in
            let input = try await request.decode(as: NewNote.self, context: context)
            guard !input.text.isEmpty, input.text.count <= 10_000 else { throw HTTPError(.badRequest, message: "text must be 1 to 10000 characters") }
            let note = notes.add(input.text, for: context.accessToken!.subject)
            return EditedResponse(status: .created, response: note)
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { _ in FileHandle.standardOutput.write(Data("notes-api listening on http://\(host):\(port)\n".utf8)) },
            logger: logger)
        try await app.runService()
    }
}

struct Note: ResponseCodable { let id: String; let text: String }
struct NewNote: Decodable { let text: String }
struct NoteList: ResponseCodable { let subject: String; let notes: [Note] }

/// In-memory notes per subject.
final class Notes: Sendable {
    private let store = Mutex<[String: [Note]]>([:])
    func list(_ subject: String) -> [Note] { store.withLock { $0[subject] ?? [] } }
    func add(_ text: String, for subject: String) -> Note {
        let note = Note(id: UUID().uuidString.lowercased(), text: text)
        store.withLock { $0[subject, default: []].append(note) }
        return note
    }
}
