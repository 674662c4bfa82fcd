// In-process token verification rate of GatehouseResourceServer.TokenVerifier, per core, for ES256 and
// RS256 tokens minted by Gatehouse's own key code. Run through Benchmarks/verify.sh (release build),
// which prints it next to `openssl speed` for the same algorithms.
import Foundation
import GatehouseCore
import GatehouseResourceServer
import JWTKit

/// Serves a JWKS from memory: the benchmark measures verification, not the network.
struct StaticJWKS: HTTPFetching {
    let body: [UInt8]
    func get(_ url: String) async throws -> FetchedResponse { FetchedResponse(status: 200, body: body, maxAge: 3600) }
    func postForm(_ url: String, form: [(String, String)], basicAuth: (String, String)?) async throws -> FetchedResponse {
        FetchedResponse(status: 404, body: [])
    }
}

struct Claims: JWTPayload {
    var iss = "https://issuer.bench", sub = "user", aud = "https://api.bench", client_id = "app", scope = "read"
    var jti = UUID().uuidString
    var iat = Int(Date().timeIntervalSince1970), exp = Int(Date().timeIntervalSince1970) + 3600
    func verify(using algorithm: some JWTAlgorithm) throws {}
}

func bench(_ alg: SigningAlgorithm, seconds: Double) async throws -> Double {
    let key = try SigningKey.generate(alg)
    let jwks = try JSONEncoder().encode(["keys": [try key.publicJWK()]])
    let signer = JWTKeyCollection()
    switch alg {
    case .es256: await signer.add(ecdsa: try ES256PrivateKey(pem: key.pemRepresentation), kid: JWKIdentifier(string: key.kid))
    case .rs256:
        await signer.add(rsa: try Insecure.RSA.PrivateKey(pem: key.pemRepresentation), digestAlgorithm: .sha256, kid: JWKIdentifier(string: key.kid))
    default: fatalError("ES256 and RS256 only")
    }
    var header = JWTHeader()
    header.typ = "at+jwt"
    var tokens: [String] = []
    for _ in 0..<64 { tokens.append(try await signer.sign(Claims(), kid: JWKIdentifier(string: key.kid), header: header)) }
    let verifier = TokenVerifier(
        .init(issuer: "https://issuer.bench", audiences: ["https://api.bench"], jwksURL: "https://issuer.bench/jwks"),
        fetcher: StaticJWKS(body: Array(jwks)))
    _ = try await verifier.verify(tokens[0])  // fetch keys, warm up
    var count = 0
    let start = Date()
    while Date().timeIntervalSince(start) < seconds {
        for t in tokens { _ = try await verifier.verify(t) }
        count += tokens.count
    }
    return Double(count) / Date().timeIntervalSince(start)
}

// Usage: verify-bench [SECONDS=3] [ES256,RS256]
let arguments = Array(CommandLine.arguments.dropFirst())
let seconds = Double(arguments.first ?? "3") ?? 3
let algorithms = (arguments.count > 1 ? arguments[1] : "ES256,RS256").split(separator: ",").compactMap { SigningAlgorithm(name: String($0)) }
for alg in algorithms {
    let rate = try await bench(alg, seconds: seconds)
    print("\(alg.rawValue) \(Int(rate.rounded())) tokens/s (one task, sequential)")
}
