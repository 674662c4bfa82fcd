import Foundation
import GatehouseCore
import SQLKit

// MARK: UpstreamFlowStore

/// `UpstreamFlowStore` over SQL.
extension SQLStore {
    public func insertUpstreamFlow(_ f: UpstreamFlowRecord, limitPerAddress: Int, at time: Int64) async throws -> Bool {
        try await backend.transaction { db in
            if let address = f.addressKey {
                try await db.raw(
                    "DELETE FROM upstream_flows WHERE address_key = \(bind: address) AND expires_at <= \(bind: time)"
                ).run()
                let pending = try await db.raw(
                    "SELECT COUNT(*) AS n FROM upstream_flows WHERE address_key = \(bind: address)"
                ).first()?.decode(column: "n", as: Int.self) ?? 0
                guard pending < limitPerAddress else { return false }
            }
            try await db.raw(
                """
                INSERT INTO upstream_flows (state_hash, provider_id, browser_hash, code_verifier, nonce, return_to,
                    link_user_id, expires_at, address_key)
                VALUES (\(bind: f.stateHash), \(bind: f.providerID), \(bind: f.browserHash), \(bind: f.codeVerifier),
                    \(bind: f.nonce), \(bind: f.returnTo), \(bind: f.linkUserID), \(bind: f.expiresAt), \(bind: f.addressKey))
                """
            ).run()
            return true
        }
    }

    public func takeUpstreamFlow(stateHash: String) async throws -> UpstreamFlowRecord? {
        try await backend.transaction { db in
            try await db.raw("DELETE FROM upstream_flows WHERE state_hash = \(bind: stateHash) RETURNING *").first().map { row in
                UpstreamFlowRecord(
                    stateHash: try row.decode(column: "state_hash", as: String.self),
                    providerID: try row.decode(column: "provider_id", as: String.self),
                    browserHash: try row.decode(column: "browser_hash", as: String.self),
                    codeVerifier: try row.decode(column: "code_verifier", as: String.self),
                    nonce: try row.decode(column: "nonce", as: String.self),
                    returnTo: try row.decode(column: "return_to", as: String.self),
                    linkUserID: try row.decode(column: "link_user_id", as: String?.self),
                    expiresAt: try row.decode(column: "expires_at", as: Int64.self),
                    addressKey: try row.decode(column: "address_key", as: String?.self))
            }
        }
    }
}
