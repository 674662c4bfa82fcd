import Foundation

/// Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).
///
/// Methods: `client_secret_basic` (§2.3.1, HTTP Basic with form-urlencoded id and secret),
/// `client_secret_post` (§2.3.1, in the body) and `none` for public clients (§2.1, client_id only).
public struct ClientAuthenticator: Sendable {
    /// RFC 6749 §2.3 / RFC 7591 `token_endpoint_auth_method` values Gatehouse accepts.
    public enum Method: String, Sendable, CaseIterable {
        case clientSecretBasic = "client_secret_basic"
        case clientSecretPost = "client_secret_post"
        case none
    }

    let clients: any ClientStore
    /// For the expiry of a previous secret's grace period.
    let clock: Clock
    public init(clients: any ClientStore, clock: Clock = .system) {
        self.clients = clients
        self.clock = clock
    }

    /// Authenticates the client of a request. Throws `invalid_client` (401) for unknown clients, wrong
    /// secrets and confidential clients without a secret; `invalid_request` when two methods are mixed.
    public func authenticate(_ parameters: RequestParameters, authorization: String?) async throws -> (
        ClientRecord, Method
    ) {
        let basic = try authorization.map(Self.parseBasic)
        let postID = try parameters.single("client_id")
        let postSecret = try parameters.single("client_secret")
        // §2.3: "The client MUST NOT use more than one authentication method in each request."
        if basic != nil, postSecret != nil {
            throw OAuthError.invalidRequest.with(description: "Use only one client authentication method.")
        }
        if let basic, let postID, postID != basic.id {
            throw OAuthError.invalidRequest.with(description: "client_id does not match the authenticated client.")
        }
        guard let id = basic?.id ?? postID else {
            throw OAuthError.invalidClient.with(description: "Client authentication is required.")
        }
        let secret = basic?.secret ?? postSecret
        // Issued ids are base64url, at most 64 characters: anything else is not looked up at all.
        let plausible = id.utf8.count <= 64 && id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }
        guard plausible, let client = try await clients.client(id: id) else {
            // Spend the same work as a real check so timing does not reveal which client ids exist.
            if let secret { _ = Secrets.verify(secret, hash: Self.unknownClientHash) }
            throw OAuthError.invalidClient.with(description: "Client authentication failed.", debug: "unknown client \(id)")
        }
        guard let storedHash = client.secretHash else {
            // A public client has no secret; presenting one is an error, not a bonus.
            guard secret == nil else {
                throw OAuthError.invalidClient.with(description: "Client authentication failed.", debug: "secret sent for public client")
            }
            return (client, .none)
        }
        // After a rotation with a grace period the previous secret works until it expires (both compared).
        let previousValid = client.previousSecretHash.map { hash in
            secret.map { Secrets.verify($0, hash: hash) } ?? false
        } ?? false
        let previousLive = (client.previousSecretExpiresAt ?? 0) > clock.nowSeconds
        guard let secret, Secrets.verify(secret, hash: storedHash) || (previousValid && previousLive) else {
            throw OAuthError.invalidClient.with(description: "Client authentication failed.", debug: "bad or missing secret for \(id)")
        }
        return (client, basic != nil ? .clientSecretBasic : .clientSecretPost)
    }

    /// Parses `Authorization: Basic …` (RFC 7617) whose user and password are form-urlencoded
    /// (RFC 6749 §2.3.1, Appendix B).
    public static func parseBasic(_ header: String) throws -> (id: String, secret: String) {
        let invalid = OAuthError.invalidClient.with(description: "Malformed Basic authorization header.")
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic" else {
            throw OAuthError.invalidClient.with(description: "Unsupported authorization scheme; use Basic.")
        }
        guard let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let decoded = String(data: data, encoding: .utf8),
            let colon = decoded.firstIndex(of: ":")
        else { throw invalid }
        guard let id = FormEncoding.decode(decoded[..<colon]),
            let secret = FormEncoding.decode(decoded[decoded.index(after: colon)...]),
            !id.isEmpty
        else { throw invalid }
        return (id, secret)
    }

    private static let unknownClientHash = Secrets.hash(Secrets.generate())
}
