import Foundation
import JWTKit
import Synchronization

/// The server's signing keys: the one that signs now, and every key whose tokens may still be alive.
///
/// Readers get an immutable `Snapshot` without waiting; `reload(from:)` builds a new one from storage, so
/// a `gatehouse keys rotate` run against the shared database takes effect on every instance at its next
/// reload. Keys leave the set (and lose their private half) once every token they signed has expired.
public final class KeyRing: Sendable {
    /// The keys at one moment: the one that signs, and every key published in the JWKS.
    public struct Snapshot: Sendable {
        public let signingKey: SigningKey
        /// Keys accepted for verification and published in the JWKS, newest first.
        public let publishedKeys: [SigningKey]
        /// jwt-kit collection holding every published key.
        public let collection: JWTKeyCollection
        /// The JWKS document (RFC 7517 §5), pre-encoded.
        public let jwksJSON: [UInt8]
        /// Keys revoked when this snapshot was built (a change means: reload at once).
        public let revoked: Set<String>
        /// Since when the signing key signs (its `active_from`, or its creation), in seconds since the epoch.
        public var signingSince: Int64? = nil
        public func key(kid: String) -> SigningKey? { publishedKeys.first { $0.kid == kid } }
    }

    private let current: Mutex<Snapshot?> = Mutex(nil)
    /// How long this instance needs a deactivated key to stay published (`ServerSettings.keyRetention`);
    /// the database's shared value, the largest of all instances', is what is applied.
    public let retention: Int64
    private let clock: Clock

    public init(retention: Int64, clock: Clock = .system) {
        self.retention = retention
        self.clock = clock
    }

    public var snapshot: Snapshot {
        get throws {
            guard let s = current.withLock({ $0 }) else { throw KeyRingError.notLoaded }
            return s
        }
    }

    /// Makes sure a signing key exists (creating one of `algorithm` on first start), then loads the set.
    public func bootstrap(store: any KeyStore, algorithm: SigningAlgorithm) async throws {
        let keys = try await store.listKeys()
        if !keys.contains(where: { $0.deactivatedAt == nil && $0.retiredAt == nil }) {
            let key = try SigningKey.generate(algorithm)
            _ = try await store.insertFirstKey(
                SigningKeyRecord(
                    kid: key.kid, algorithm: algorithm, privatePEM: key.pemRepresentation,
                    createdAt: clock.nowSeconds, deactivatedAt: nil, retiredAt: nil))
        }
        try await reload(from: store)
    }

    /// Rebuilds the snapshot from storage and retires keys whose tokens have all expired.
    @discardableResult
    public func reload(from store: any KeyStore) async throws -> Snapshot {
        let now = clock.nowSeconds
        // Recording our retention is a write; if it fails, still reload (with the largest value known).
        let retention: Int64
        do {
            retention = try await store.raiseKeyRetention(atLeast: self.retention)
        } catch {
            retention = max(self.retention, (try? await store.keyRetention()) ?? 0)
        }
        let records = try await store.listKeys()
        let revoked = Set(records.filter { $0.revokedAt != nil }.map(\.kid))
        let plan = KeyRing.plan(records, now: now, retention: retention)
        if !plan.toRetire.isEmpty {
            try await store.retireKeys(kids: plan.toRetire, at: now)
        }
        guard let signingRecord = plan.signing, let signingPEM = signingRecord.privatePEM else {
            throw KeyRingError.noSigningKey
        }
        // Reuse parsed keys from the previous snapshot (RSA parsing is not free).
        let previous = current.withLock { $0 }
        func load(_ r: SigningKeyRecord) throws -> SigningKey? {
            if let existing = previous?.key(kid: r.kid), existing.algorithm == r.algorithm { return existing }
            guard let pem = r.privatePEM else { return nil }
            return try SigningKey(kid: r.kid, algorithm: r.algorithm, pem: pem)
        }
        let signing = try load(signingRecord) ?? SigningKey(kid: signingRecord.kid, algorithm: signingRecord.algorithm, pem: signingPEM)
        var snapshot = try await Self.snapshot(signing: signing, published: try plan.published.compactMap(load), revoked: revoked)
        snapshot.signingSince = max(signingRecord.activeFrom, signingRecord.createdAt)
        current.withLock { $0 = snapshot }
        return snapshot
    }

    /// A snapshot over `published`: the jwt-kit collection and the JWKS document built from them.
    static func snapshot(signing: SigningKey, published: [SigningKey], revoked: Set<String>) async throws -> Snapshot {
        let collection = JWTKeyCollection()
        for key in published { await key.add(to: collection) }
        let jwks = try JSONEncoder.sortedWithoutEscapingSlashes.encode(["keys": try published.map { try $0.publicJWK() }])
        return Snapshot(
            signingKey: signing, publishedKeys: published, collection: collection, jwksJSON: Array(jwks), revoked: revoked)
    }

    /// Removes `kids` from the key set in memory at once (a revocation seen while a full reload fails): their
    /// tokens stop verifying and they leave the JWKS. If the signing key is among them, signing fails (the
    /// token endpoint answers server_error) until a reload finds a new key: closed, never signing with a
    /// revoked key.
    public func drop(_ kids: Set<String>) async throws {
        guard let s = current.withLock({ $0 }), !kids.isEmpty else { return }
        var snapshot = try await Self.snapshot(
            signing: s.signingKey, published: s.publishedKeys.filter { !kids.contains($0.kid) }, revoked: s.revoked.union(kids))
        snapshot.signingSince = s.signingSince
        current.withLock { $0 = snapshot }
    }

    /// Which key signs, which are published and which must be retired, given the stored keys.
    public static func plan(_ records: [SigningKeyRecord], now: Int64, retention: Int64)
        -> (signing: SigningKeyRecord?, published: [SigningKeyRecord], toRetire: [String])
    {
        let live = records.filter { $0.retiredAt == nil && $0.revokedAt == nil }
        // The newest key whose time has come signs (two instances racing on first start may both have made
        // one); a rotated-in key waits for its `activatesAt` while it is published.
        let started = live.filter { $0.activeFrom <= now }
        let newest: (SigningKeyRecord, SigningKeyRecord) -> Bool = { ($0.activeFrom, $0.createdAt, $0.kid) < ($1.activeFrom, $1.createdAt, $1.kid) }
        let signing = started.filter { $0.deactivatedAt.map { $0 > now } ?? true }.max(by: newest) ?? started.max(by: newest)
        var published: [SigningKeyRecord] = []
        var toRetire: [String] = []
        for r in live.sorted(by: { $0.createdAt > $1.createdAt }) {
            if let off = r.deactivatedAt, off + retention <= now {
                toRetire.append(r.kid)
            } else {
                published.append(r)
            }
        }
        return (signing, published, toRetire)
    }

    /// Generates a key of `algorithm` and makes it the signing key `activatesIn` seconds from now; it is
    /// published at once. Publish before sign: with `activatesIn` ≥ the key reload interval + 60 s, every
    /// instance and every verifier that refetches the JWKS has the key before a token signed with it exists.
    @discardableResult
    public static func rotate(
        store: any KeyStore, algorithm: SigningAlgorithm, activatesIn: Int64 = 0, clock: Clock = .system
    ) async throws -> SigningKeyRecord {
        let key = try SigningKey.generate(algorithm)
        let now = clock.nowSeconds
        let record = SigningKeyRecord(
            kid: key.kid, algorithm: algorithm, privatePEM: key.pemRepresentation, createdAt: now,
            deactivatedAt: nil, retiredAt: nil, activatesAt: activatesIn > 0 ? now + activatesIn : nil)
        try await store.activateKey(record)
        return record
    }

    /// How long a rotated-in key is published before it signs (`ServerSettings.keyReloadInterval` + 60 s).
    public static func publishLead(keyReloadInterval: Int64) -> Int64 { keyReloadInterval + 60 }

    /// Emergency revocation: the key leaves the key set on every instance within about a second; when it was
    /// the signing key (or no other key could sign), a new key of `algorithm` signs at once. Returns the
    /// replacement, if one was made.
    public static func revoke(kid: String, store: any KeyStore, algorithm: SigningAlgorithm, clock: Clock = .system)
        async throws -> SigningKeyRecord?
    {
        let now = clock.nowSeconds
        let before = try await store.listKeys()
        guard let target = before.first(where: { $0.kid == kid }), target.revokedAt == nil else {
            throw KeyRingError.unknownKey(kid)
        }
        let wasSigning = plan(before, now: now, retention: 0).signing?.kid == kid
        _ = try await store.revokeKey(kid: kid, at: now)
        let after = try await store.listKeys()
        let pending = after.contains { $0.retiredAt == nil && $0.revokedAt == nil && $0.deactivatedAt == nil }
        guard wasSigning || !pending else { return nil }
        return try await rotate(store: store, algorithm: algorithm, clock: clock)
    }
}

/// Why the key ring could not load or use its keys.
public enum KeyRingError: Error, CustomStringConvertible {
    case notLoaded
    case noSigningKey
    case unknownKey(String)
    public var description: String {
        switch self {
        case .unknownKey(let kid): return "no key '\(kid)' that is not revoked already"
        case .notLoaded: return "signing keys are not loaded"
        case .noSigningKey: return "no active signing key in the database (run `gatehouse keys rotate`)"
        }
    }
}

extension JSONEncoder {
    /// Stable output for documents we publish (JWKS, metadata).
    public static var sortedWithoutEscapingSlashes: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
