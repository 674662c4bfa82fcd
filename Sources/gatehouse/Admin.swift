import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseSQL
import GatehouseServer

// MARK: users

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage users.",
        subcommands: [Create.self, List.self, Show.self, Update.self, Disable.self, Enable.self, Delete.self, SetPassword.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Username (unique, case-insensitive).") var username: String
        @Option(help: "Email address.") var email: String?
        @Option(help: "Display name.") var name: String?
        @Option(help: "Given (first) name.") var givenName: String?
        @Option(help: "Family (last) name.") var familyName: String?
        @Option(help: "URL of a profile picture.") var picture: String?
        @Flag(help: "The email address is verified (released as email_verified: true).") var emailVerified = false
        @Option(help: "Phone number (E.164 recommended, e.g. +4712345678).") var phone: String?
        @Option(help: "Postal address, one formatted string.") var address: String?
        @Flag(help: "Read the password from standard input.") var passwordStdin = false

        func run() async throws {
            var password: String? = nil
            if passwordStdin {
                let data = FileHandle.standardInput.readDataToEndOfFile()
                var text = String(decoding: data, as: UTF8.self)
                while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
                password = text
            }
            try await common.withStore { store, config in
                let profile = UserProfile(
                    givenName: givenName, familyName: familyName, picture: picture, emailVerified: emailVerified,
                    phoneNumber: phone, address: address)
                let user = try await Administration.cli(store, config).createUser(
                    username: username, email: email, name: name, password: password, profile: profile)
                // `user.created` is in the outbox (Administration emits it); a running server's webhook worker delivers it.
                try common.print(
                    json: UserView(user),
                    text: "created user \(user.username) (id \(user.id))")
            }
        }
    }
}

// MARK: clients

extension ClientView {
    var text: String {
        var lines = [
            "client_id:      \(client_id)",
            "name:           \(name)",
            "type:           \(`public` ? "public" : "confidential")",
            "grant_types:    \(grant_types.joined(separator: " "))",
            "scope:          \(scope)",
            "default_scope:  \(default_scope)",
        ]
        if !redirect_uris.isEmpty { lines.append("redirect_uris:  \(redirect_uris.joined(separator: " "))") }
        if !resources.isEmpty { lines.append("resources:      \(resources.joined(separator: " "))") }
        if let client_secret { lines.append("client_secret:  \(client_secret)   (shown once: store it now)") }
        return lines.joined(separator: "\n")
    }
}

struct Clients: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage OAuth clients.",
        subcommands: [Create.self, List.self, Show.self, Update.self, Delete.self, RotateSecret.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a client.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Display name.") var name: String
        @Option(name: .customLong("redirect-uri"), help: "Redirect URI (repeatable).") var redirectURIs: [String] = []
        @Option(
            name: .customLong("post-logout-redirect-uri"),
            help: "Where RP-initiated logout may send the browser afterwards (repeatable).")
        var postLogoutRedirectURIs: [String] = []
        @Option(name: .customLong("grant-type"), help: "Grant type (repeatable; default authorization_code refresh_token).")
        var grantTypes: [String] = []
        @Option(help: "Scopes the client may request, space-separated.") var scope: String?
        @Option(help: "Scopes granted when a request names none (default: the client's default-flagged scopes, else all of --scope).")
        var defaultScope: String?
        @Option(name: .customLong("resource"), help: "Resource indicator (RFC 8707) the client may request as audience (repeatable).")
        var resources: [String] = []
        @Flag(help: "A public client (no secret: native and browser apps).") var `public` = false
        @Flag(help: "First-party app: skip the consent page.") var skipConsent = false
        @Flag(help: "Allow the legacy password grant.") var allowPasswordGrant = false
        @Flag(help: "One active grant per user: a new one revokes the user's earlier tokens for this client.")
        var singleGrantPerUser = false
        @Flag(help: "Legacy: also accept the redirect URI plus one redirect_state parameter (python-social-auth).")
        var legacyRedirectState = false
        @Option(
            name: .customLong("may-exchange-from"),
            help: "A client whose access tokens this client may exchange (RFC 8693) although not addressed to it (repeatable).")
        var mayExchangeFrom: [String] = []

        func run() async throws {
            try await common.withStore { store, config in
                var new = Administration.NewClient(name: name)
                new.redirectURIs = redirectURIs
                new.postLogoutRedirectURIs = postLogoutRedirectURIs
                new.grantTypes = grantTypes
                new.scope = scope
                new.defaultScope = defaultScope
                new.resources = resources
                new.isPublic = `public`
                new.skipConsent = skipConsent
                new.singleGrantPerUser = singleGrantPerUser
                new.allowPasswordGrant = allowPasswordGrant
                new.legacyRedirectState = legacyRedirectState
                new.mayExchangeFrom = mayExchangeFrom
                let (client, secret) = try await Administration.cli(store, config).createClient(new)
                let out = ClientView(client, secret: secret, now: Clock.system.nowSeconds)
                try common.print(json: out, text: out.text)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List clients.")
        @OptionGroup var common: CommonOptions
        func run() async throws {
            try await common.withStore { store, _ in
                let out = try await store.listClients().map { ClientView($0, now: Clock.system.nowSeconds) }
                try common.print(
                    json: out,
                    text: out.isEmpty ? "no clients" : out.map { "\($0.client_id)  \($0.name)  [\($0.grant_types.joined(separator: " "))]" }.joined(separator: "\n"))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one client.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "client_id") var id: String
        func run() async throws {
            try await common.withStore { store, _ in
                guard let client = try await store.client(id: id) else { throw CLIError("no client '\(id)'") }
                let out = ClientView(client, now: Clock.system.nowSeconds)
                try common.print(json: out, text: out.text)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a client and revoke its grants.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "client_id") var id: String
        func run() async throws {
            struct Out: Encodable { let deleted: String }
            try await common.withStore { store, config in
                try await Administration.cli(store, config).deleteClient(id: id)
                try common.print(json: Out(deleted: id), text: "deleted client \(id)")
            }
        }
    }

    struct RotateSecret: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-secret", abstract: "Replace a client's secret (the old one stops working).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "client_id") var id: String
        func run() async throws {
            struct Out: Encodable { let client_id: String; let client_secret: String }
            try await common.withStore { store, config in
                let secret = try await Administration.cli(store, config).rotateSecret(clientID: id)
                try common.print(
                    json: Out(client_id: id, client_secret: secret),
                    text: "client_secret:  \(secret)   (shown once: store it now)")
            }
        }
    }
}

// MARK: scopes

struct Scopes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage scopes.", subcommands: [Create.self, List.self, Delete.self])

    struct ScopeOutput: Encodable {
        let name: String
        let description: String
        let `default`: Bool
        let required_role: String?
        init(_ s: ScopeRecord) { name = s.name; description = s.description; `default` = s.isDefault; required_role = s.requiredRole }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a scope.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "Scope name.") var name: String
        @Option(help: "Description shown on the consent page.") var description: String?
        @Flag(help: "Granted by default to clients that registered it.") var `default` = false
        @Option(help: "Grant the scope only to users holding this role in some group.") var requiredRole: String?
        func run() async throws {
            try await common.withStore { store, config in
                let s = try await Administration.cli(store, config).createScope(
                    name: name, description: description, isDefault: `default`, requiredRole: requiredRole)
                try common.print(json: ScopeOutput(s), text: "created scope \(s.name)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List scopes.")
        @OptionGroup var common: CommonOptions
        func run() async throws {
            try await common.withStore { store, _ in
                let scopes = try await store.listScopes()
                try common.print(
                    json: scopes.map(ScopeOutput.init),
                    text: scopes.map { "\($0.name)\($0.isDefault ? " (default)" : "")  \($0.description)" }
                        .joined(separator: "\n"))
            }
        }
    }
}

// MARK: keys

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage signing keys.", subcommands: [List.self, Rotate.self, Revoke.self, Reencrypt.self])

    static func outputs(_ store: SQLStore, _ config: GatehouseConfiguration) async throws -> [KeyView] {
        try await Administration.cli(store, config).keys()
    }

    static func text(_ keys: [KeyView]) -> String {
        keys.isEmpty ? "no keys yet (the server creates one on first start)"
            : keys.map { "\($0.kid)  \($0.algorithm)  \($0.status)" }.joined(separator: "\n")
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List signing keys.")
        @OptionGroup var common: CommonOptions
        func run() async throws {
            try await common.withStore { store, config in
                let out = try await Keys.outputs(store, config)
                try common.print(json: out, text: Keys.text(out))
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new key the signing key; old keys stay published until their tokens expire.")
        @OptionGroup var common: CommonOptions
        @Option(help: "ES256, ES384, RS256, PS256 or EdDSA (default: the configured signing algorithm).")
        var algorithm: String?
        @Flag(help: "Sign with the new key at once instead of after key_reload_interval + 60 s (verifiers may not have it yet).")
        var now = false
        func run() async throws {
            try await common.withStore { store, config in
                let lead = now ? 0 : KeyRing.publishLead(keyReloadInterval: config.settings.keyReloadInterval)
                let record = try await Administration.cli(store, config).rotateKey(algorithm: algorithm, immediately: now)
                let alg = record.algorithm
                let out = try await Keys.outputs(store, config)
                let when = now ? "signs now" : "is published now and signs in \(lead) s (publish before sign)"
                try common.print(
                    json: out.first { $0.kid == record.kid }!,
                    text: "new signing key \(record.kid) (\(alg)) \(when); running servers pick it up within the key reload interval\n" + Keys.text(out))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Emergency: withdraw a key at once (gone from the JWKS, its tokens refused); a new key signs if it was signing.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The key id (kid).") var kid: String
        func run() async throws {
            struct Out: Encodable { let revoked: String; let replacement: String? }
            try await common.withStore { store, config in
                let replacement = try await Administration.cli(store, config).revokeKey(kid: kid)
                try common.print(
                    json: Out(revoked: kid, replacement: replacement),
                    text: "revoked key \(kid); running servers drop it within a second"
                        + (replacement.map { "\nnew signing key \($0) signs now" } ?? ""))
            }
        }
    }

    struct Reencrypt: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encrypt every stored secret (signing keys, provider secrets) with the first secrets_key.")
        @OptionGroup var common: CommonOptions
        func run() async throws {
            struct Out: Encodable { let reencrypted: Int; let key_id: String }
            try await common.withStore { store, config in
                guard let box = config.secrets, let first = box.keys.first else {
                    throw CLIError("invalid secrets_key: keys reencrypt needs secrets_key or secrets_key_file")
                }
                let n = try await store.reencryptSecrets()
                try common.print(json: Out(reencrypted: n, key_id: first.id), text: "re-encrypted \(n) secrets with key \(first.id)")
            }
        }
    }
}
