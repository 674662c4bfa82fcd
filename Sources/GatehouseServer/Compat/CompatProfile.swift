import Foundation
import GatehouseCore
import HTTPTypes
import Hummingbird
import Logging

/// Compatibility profiles: thin adapters that mount a legacy API's routes and response shapes onto the core's
/// operations (no second implementation of any grant). None is on by default (`--compat`).
public enum CompatProfile: String, Sendable, CaseIterable, Hashable {
    case lego, dgp, doorkeeper, dot

    /// Work a profile needs before serving (e.g. the scopes its clients ask for).
    func prepare(_ services: GatehouseServices) async throws {
        if self == .lego { try await LegoProfile.prepare(services) }
    }

    func mount(on router: Router<GatehouseRequestContext>, with c: CompatContext) {
        switch self {
        case .doorkeeper: DoorkeeperProfile(c: c).mount(on: router)
        case .dot: DOTProfile(c: c).mount(on: router)
        case .lego: LegoProfile(c: c).mount(on: router)
        case .dgp: DGPProfile(c: c).mount(on: router)
        }
    }
}

/// The profiles' settings (`compat*`, `cors_origins`; rows in `CompatProfile.settings`).
public struct CompatOptions: Sendable {
    public var profiles: Set<CompatProfile> = []
    /// The client first-party legacy endpoints issue tokens to (`compat_client_id`).
    public var clientID: String?
    /// Origins that get CORS headers on the legacy APIs (`cors_origins`).
    public var corsOrigins: [String] = []
    /// Hosts dgp's `next` may redirect to (`compat_next_hosts`).
    public var nextHosts: [String] = []
    /// Path prefixes dgp's `next` may have (empty: any path on an allowed host).
    public var nextPaths: [String] = []
    /// Lifetime of dgp's user token (`jwt`), seconds.
    public var dgpTokenLifetime: Int64 = 3600
    /// Providers dot's register-by-token accepts tokens of (empty: the endpoint answers 404).
    public var exchangeProviders: [String] = []
    /// dgp: `PRIVATE_KEY` / `PUBLIC_KEY` (RSA PEM) for the profile's tokens, from dgp-oauth2's environment.
    public var dgpPrivateKey: String?
    public var dgpPublicKey: String?
    /// dgp: the RS256 signer of its tokens (made from `dgpPrivateKey` when the application is built).
    public var dgpSigner: RSATokenSigner?
    public init() {}
}

extension CompatProfile {
    /// The profiles' rows of the settings table.
    static let settings: [Setting] = [
        Setting(
            "compat", default: "none", accepts: "comma-separated: `lego`, `dgp`, `doorkeeper`, `dot`",
            help: "Compatibility profiles to mount: `lego`, `dgp`, `doorkeeper`, `dot` ([docs/compat.md](docs/compat.md))",
            apply: { v, c in
                for name in Setting.commaList(v).map({ $0.lowercased() }) {
                    guard let profile = CompatProfile(rawValue: name) else {
                        throw Setting.Invalid("'\(name)' is not a compatibility profile (lego, dgp, doorkeeper, dot)")
                    }
                    c.compat.profiles.insert(profile)
                }
            }, effective: { $0.compat.profiles.isEmpty ? nil : $0.compat.profiles.map(\.rawValue).sorted().joined(separator: ",") }),
        .text(
            "compat_client_id", \.compat.clientID, accepts: "an existing client id",
            help: "The client that the profiles' first-party endpoints issue tokens to"),
    ] + DGPProfile.settings + DOTProfile.settings + LegoProfile.settings
}

/// What every profile works with.
struct CompatContext: Sendable {
    let services: GatehouseServices
    let core: CoreHandlers
    let browser: BrowserRoutes
    let logger: Logger
    /// The profiles' settings.
    let options: CompatOptions
    var clientID: String? { options.clientID }

    /// Our access token's claims when it is valid, current and not revoked.
    func verify(_ token: String?) async throws -> AccessTokenClaims? {
        guard let token, let claims = try await services.verifier.activeClaims(token, revocations: services.storage),
            // Only tokens meant for this server's own APIs (not one a client asked for another resource).
            claims.aud.values.contains(services.settings.audience)
        else { return nil }
        return claims
    }

    /// The user behind a token (nil for client-credentials tokens).
    func user(_ claims: AccessTokenClaims) async throws -> UserRecord? {
        guard let userID = claims.userID else { return nil }
        return try await services.storage.user(id: userID)
    }

    /// The configured first-party client, or a clear error (start-up checks it too; it may have been
    /// deleted since).
    func compatClient(_ profile: String) async throws -> ClientRecord {
        try await FirstPartyClient.resolve(clientID, profile: profile, clients: services.storage)
    }

    /// A JSON object response with a status (legacy shapes are plain dictionaries).
    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok, noStore: Bool = true) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return HTTP.raw(Array(data), status: status, noStore: noStore)
    }

    /// A token response as a dictionary, for profiles that add members to it.
    static func dictionary(_ response: TokenResponse) throws -> [String: Any] {
        (try JSONSerialization.jsonObject(with: try HTTP.jsonEncoder.encode(response)) as? [String: Any]) ?? [:]
    }
}
