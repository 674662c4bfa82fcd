import Foundation
import JWTKit
import Synchronization

/// The issuer's published keys, fetched from its JWKS and kept for the HTTP cache lifetime.
///
/// - Refreshes in the background when the cache lifetime has passed (requests keep using the old set,
///   which is also kept when a refresh fails).
/// - A token with an unknown `kid` triggers one refresh, but not more often than
///   `minimumRefreshInterval`, so a flood of forged `kid`s cannot hammer the issuer.
/// - Concurrent requests that need a refresh share one fetch.
actor KeySet {
    struct Snapshot: Sendable {
        /// kid → the key's `alg` (JWKs without `alg` or `kid` are skipped).
        let algorithms: [String: String]
        /// kid → the verifying key, resolved once per fetch.
        let verifiers: [String: any JWTAlgorithm]
        let fetchedAt: Date
        let expiresAt: Date
    }

    /// The current snapshot for lock-free reads on the hot path (no actor hop while it is fresh).
    nonisolated let published = Mutex<Snapshot?>(nil)

    /// The fresh snapshot holding `kid`, without entering the actor; `nil` sends the caller to
    /// `snapshot(for:)`.
    nonisolated func freshSnapshot(for kid: String, now: Date) -> Snapshot? {
        published.withLock { s in
            guard let s, s.verifiers[kid] != nil, now < s.expiresAt else { return nil }
            return s
        }
    }

    private let jwksURL: @Sendable () async throws -> String
    private let fetcher: any HTTPFetching
    private let minimumRefreshInterval: TimeInterval
    private let defaultLifetime: TimeInterval
    /// A set older than this (the issuer unreachable all along) is dropped: requests fail closed
    /// instead of trusting keys the issuer may have withdrawn.
    private let maximumStaleness: TimeInterval
    private let now: @Sendable () -> Date
    private var current: Snapshot?
    private var inFlight: Task<Snapshot, any Error>?
    /// When an unknown `kid` last caused a refresh (first fetches and background refreshes do not count,
    /// so a key rotated in just after a fetch is still picked up at once).
    private var lastKidRefresh: Date?
    private var backgroundRefreshScheduled = false
    private var lastFailedFetch: Date?
    private var retryBackgroundAfter = Date.distantPast
    private func backgroundRefreshDone(ok: Bool) {
        backgroundRefreshScheduled = false
        if !ok { retryBackgroundAfter = now() + minimumRefreshInterval }
    }
    /// How many times the JWKS was fetched (for tests and metrics).
    private(set) var fetchCount = 0

    init(
        jwksURL: @escaping @Sendable () async throws -> String, fetcher: any HTTPFetching,
        minimumRefreshInterval: TimeInterval, defaultLifetime: TimeInterval, maximumStaleness: TimeInterval = 86_400,
        now: @escaping @Sendable () -> Date
    ) {
        self.jwksURL = jwksURL
        self.fetcher = fetcher
        self.minimumRefreshInterval = minimumRefreshInterval
        self.defaultLifetime = defaultLifetime
        self.maximumStaleness = maximumStaleness
        self.now = now
    }

    /// The key set that should hold `kid`: fetched on first use, refreshed when stale or (rate-limited)
    /// when `kid` is unknown.
    func snapshot(for kid: String) async throws -> Snapshot {
        if let snapshot = current, now().timeIntervalSince(snapshot.fetchedAt) > maximumStaleness {
            current = nil
            published.withLock { $0 = nil }
        }
        guard let snapshot = current else {
            // No usable set: fetch, but after a failure not again within the minimum interval (503).
            if inFlight == nil, let failed = lastFailedFetch, now().timeIntervalSince(failed) < minimumRefreshInterval {
                throw ResourceServerError.unavailable("JWKS fetch failed recently; retrying after the minimum interval")
            }
            return try await refresh()
        }
        if snapshot.algorithms[kid] != nil {
            if now() >= snapshot.expiresAt, inFlight == nil, !backgroundRefreshScheduled,
                now() >= retryBackgroundAfter
            {
                // Stale: refresh in the background (once), answer with what we have. After a failure, wait
                // the minimum interval before trying again (an unreachable issuer is not hammered).
                backgroundRefreshScheduled = true
                Task {
                    let ok = (try? await self.refresh()) != nil
                    await self.backgroundRefreshDone(ok: ok)
                }
            }
            return snapshot
        }
        // Unknown kid: one refresh, rate-limited (a failed attempt counts too).
        if inFlight == nil {
            if let last = lastKidRefresh, now().timeIntervalSince(last) < minimumRefreshInterval { return snapshot }
            lastKidRefresh = now()
        }
        return (try? await refresh()) ?? snapshot
    }

    /// Fetches the JWKS once for all concurrent callers.
    @discardableResult
    func refresh() async throws -> Snapshot {
        if let inFlight { return try await inFlight.value }
        let task = Task { try await self.fetch() }
        inFlight = task
        defer { inFlight = nil }
        let snapshot: Snapshot
        do {
            snapshot = try await task.value
        } catch {
            lastFailedFetch = now()
            throw error
        }
        lastFailedFetch = nil
        current = snapshot
        published.withLock { $0 = snapshot }
        return snapshot
    }

    private func fetch() async throws -> Snapshot {
        fetchCount += 1
        let url = try await jwksURL()
        let response: FetchedResponse
        do {
            response = try await fetcher.get(url)
        } catch {
            throw ResourceServerError.unavailable("JWKS \(url) unreachable: \(error)")
        }
        guard response.status == 200 else { throw ResourceServerError.unavailable("JWKS \(url) answered \(response.status)") }
        // Each key is read on its own: a key of a kind we do not support (an encryption key, a new
        // algorithm) is skipped, it does not make the whole set unusable.
        guard let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any],
            let rawKeys = object["keys"] as? [[String: Any]]
        else { throw ResourceServerError.unavailable("JWKS \(url) is not a JWK set") }
        let collection = JWTKeyCollection()
        var algorithms: [String: String] = [:]
        var verifiers: [String: any JWTAlgorithm] = [:]
        for raw in rawKeys {
            // Only signing keys (use absent or "sig") with a kid and an explicit asymmetric alg are trusted.
            guard (raw["use"] as? String ?? "sig") == "sig",
                (raw["key_ops"] as? [String]).map({ $0.contains("verify") }) ?? true,
                let kid = raw["kid"] as? String, let alg = raw["alg"] as? String,
                TokenVerifier.asymmetricAlgorithms.contains(alg), algorithms[kid] == nil,
                let data = try? JSONSerialization.data(withJSONObject: raw),
                let key = try? JSONDecoder().decode(JWK.self, from: data),
                (try? await collection.add(jwk: key)) != nil,
                let verifier = try? await collection.getKey(for: JWKIdentifier(string: kid), alg: alg)
            else { continue }
            algorithms[kid] = alg
            verifiers[kid] = verifier
        }
        // A set with nothing usable does not replace one that had keys.
        guard !verifiers.isEmpty || current == nil else {
            throw ResourceServerError.unavailable("JWKS \(url) has no usable signing key")
        }
        let lifetime = response.maxAge.map { min(max(TimeInterval($0), 60), 86_400) } ?? defaultLifetime
        let fetchedAt = now()
        return Snapshot(
            algorithms: algorithms, verifiers: verifiers, fetchedAt: fetchedAt,
            expiresAt: fetchedAt + lifetime)
    }
}
