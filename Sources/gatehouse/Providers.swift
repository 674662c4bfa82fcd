import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer

/// `gatehouse providers add|list|remove`: upstream identity providers ("Sign in with …"). Providers can also
/// be listed in the config file (`providers`); these commands manage the ones stored in the database.
struct Providers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage upstream identity providers (GitHub, Google, any OIDC or OAuth2 provider).",
        subcommands: [Add.self, List.self, Remove.self])

    struct ProviderOutput: Encodable {
        let id: String
        let kind: String
        let name: String
        let client_id: String
        let issuer: String?
        let authorize_url: String?
        let token_url: String?
        let userinfo_url: String?
        let whoami_url: String?
        let introspection_url: String?
        let allow_foreign_tokens: Bool
        let scope: String
        let claims: [String: String]
        let link_by_email: Bool
        let callback_path: String
        let source: String

        init(_ p: ProviderRecord, source: String) {
            let r = p.resolved
            id = p.id
            kind = p.kind.rawValue
            name = p.name
            client_id = p.clientID
            issuer = r.issuer
            authorize_url = r.authorizeURL
            token_url = r.tokenURL
            userinfo_url = r.userinfoURL
            whoami_url = r.whoamiURL
            introspection_url = r.introspectionURL
            allow_foreign_tokens = r.allowForeignTokens
            scope = r.scope.description
            claims = r.claims
            link_by_email = p.linkByEmail
            callback_path = "/login/\(p.id)/callback"
            self.source = source
        }

        var text: String {
            "\(id)  \(kind)  \(name)  (redirect URI: ISSUER\(callback_path))\(source == "config" ? "  [config file]" : "")"
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a provider.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Identifier: a-z, 0-9, - and _ (used in /login/ID/callback and as subject_issuer).") var id: String
        @Option(help: "oidc, oauth2, github or google.") var kind: String
        @Option(help: "The OAuth client id Gatehouse has at the provider.") var clientId: String
        @Flag(help: "Read the client secret from standard input.") var clientSecretStdin = false
        @Option(help: "Name on the login button (default: the id).") var name: String?
        @Option(help: "oidc: the provider's issuer URL (its discovery document is used).") var issuer: String?
        @Option(help: "oauth2: the authorization endpoint.") var authorizeUrl: String?
        @Option(help: "oauth2: the token endpoint.") var tokenUrl: String?
        @Option(help: "oauth2: the user-details endpoint; may contain {param} placeholders.") var userinfoUrl: String?
        @Option(help: "A fixed URL that says whose a bearer token is (default: the user-details URL if it has no placeholders).")
        var whoamiUrl: String?
        @Option(help: "RFC 7662 introspection at the provider: proves whose a token is and that it was issued to Gatehouse.")
        var introspectionUrl: String?
        @Flag(help: "Token exchange: accept access tokens the provider cannot prove were issued to Gatehouse (a risk: see docs/federation.md).")
        var allowForeignTokens = false
        @Option(help: "Scopes to ask the provider for, space-separated.") var scope: String?
        @Option(
            name: .customLong("claim"),
            help: "Claim mapping ours=theirs (repeatable; ours: id, username, email, email_verified, name, picture).")
        var claims: [String] = []
        @Flag(help: "Sign people into the existing account with the same email when the provider says it is verified.")
        var linkByEmail = false

        func run() async throws {
            guard clientSecretStdin else { throw ValidationError("--client-secret-stdin is required (secrets never go on the command line)") }
            var secret = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            while secret.hasSuffix("\n") || secret.hasSuffix("\r") { secret.removeLast() }
            guard let kind = ProviderKind(rawValue: kind.lowercased()) else {
                throw ValidationError("--kind must be oidc, oauth2, github or google")
            }
            var mapping: [String: String] = [:]
            for c in claims {
                let parts = c.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--claim must look like ours=theirs: \(c)") }
                mapping[parts[0]] = parts[1]
            }
            var parsedScope = Scope.empty
            if let scope {
                guard let s = Scope(parsing: scope) else { throw ValidationError("--scope is not a valid scope list") }
                parsedScope = s
            }
            try await common.withStore { store, _ in
                let provider = ProviderRecord(
                    id: id, kind: kind, name: name ?? id, clientID: clientId, clientSecret: secret, issuer: issuer,
                    authorizeURL: authorizeUrl, tokenURL: tokenUrl, userinfoURL: userinfoUrl, scope: parsedScope,
                    claims: mapping, linkByEmail: linkByEmail, createdAt: Int64(Date().timeIntervalSince1970),
                    whoamiURL: whoamiUrl, introspectionURL: introspectionUrl, allowForeignTokens: allowForeignTokens)
                do { try provider.validate() } catch let e as Administration.ValidationError {
                    throw CLIError(e.description)  // one line, exit 1, like every other refused value
                }
                do {
                    try await store.insertProvider(provider)
                } catch StorageError.duplicate {
                    throw ValidationError("a provider '\(id)' already exists")
                }
                let out = ProviderOutput(provider, source: "database")
                try common.print(json: out, text: "added provider \(out.text)")
                if let note = provider.exchangeNote {
                    FileHandle.standardError.write(Data("note: \(note)\n".utf8))
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List providers (database and config file).")
        @OptionGroup var common: CommonOptions
        func run() async throws {
            try await common.withStore { store, config in
                let stored = try await store.listProviders().filter { p in !config.providers.contains { $0.id == p.id } }
                let all = config.providers.map { ProviderOutput($0, source: "config") } + stored.map { ProviderOutput($0, source: "database") }
                try common.print(json: all, text: all.map(\.text).joined(separator: "\n"))
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a provider (linked identities stay, unusable).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Provider id.") var id: String
        func run() async throws {
            struct Out: Encodable { let removed: String }
            try await common.withStore { store, _ in
                guard try await store.deleteProvider(id: id) else { throw ValidationError("no provider '\(id)' in the database") }
                try common.print(json: Out(removed: id), text: "removed provider \(id)")
            }
        }
    }
}
