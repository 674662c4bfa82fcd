import Crypto
import Foundation

/// Encryption at rest for the secrets Gatehouse must keep in clear to use them (private signing keys,
/// upstream client secrets): AES-256-GCM under an operator-held key-encryption key (`secrets_key`).
///
/// A sealed value reads `gatehouse-enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id is
/// derived from the key (no key material), so several keys can be configured for rotation: the first
/// seals, any of them opens. The associated data names the row's table, column and id, so a sealed value
/// copied into another row does not open there.
public struct SecretBox: Sendable {
    /// One 256-bit key with its id (the id is stored with every sealed value).
    public struct Key: Sendable {
        public let id: String
        let key: SymmetricKey
    }

    public static let prefix = "gatehouse-enc:v1:"
    /// The configured keys; the first one seals.
    public let keys: [Key]

    /// Why a value could not be sealed or opened (a wrong or missing key, a damaged value).
    public enum Failure: Error, Sendable, CustomStringConvertible, Equatable {
        /// A configured key is not 32 bytes of standard base64 (the index is 1-based, never the key itself).
        case malformedKey(index: Int)
        /// A stored value is sealed but no key is configured.
        case noKey(what: String)
        /// A stored value is sealed with a key that is not configured.
        case unknownKey(id: String, what: String)
        /// The value does not open with the key of its id (wrong key material or a tampered value).
        case undecryptable(what: String)

        public var description: String {
            switch self {
            case .malformedKey(let i):
                return "key \(i) is not 32 random bytes in standard base64 (make one with `openssl rand -base64 32`)"
            case .noKey(let what):
                return "the database holds encrypted secrets (\(what)) but no secrets_key is configured"
            case .unknownKey(let id, let what):
                return "\(what) is encrypted with key id \(id), which is not among the configured keys"
            case .undecryptable(let what):
                return "\(what) cannot be decrypted with the configured key of its id (wrong key or damaged value)"
            }
        }
    }

    /// Keys as their standard-base64 text, first one sealing.
    public init(base64Keys: [String]) throws {
        var keys: [Key] = []
        for (i, text) in base64Keys.enumerated() {
            guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)), data.count == 32 else {
                throw Failure.malformedKey(index: i + 1)
            }
            let key = SymmetricKey(data: data)
            keys.append(Key(id: Self.keyID(key), key: key))
        }
        self.keys = keys
    }

    /// `a,b` or one key per line (blank lines and `#` comments skipped).
    public static func parseKeyList(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == "," || $0 == "\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// 8 hex digits of HMAC-SHA256(key, "gatehouse key id"): names the key without revealing it.
    static func keyID(_ key: SymmetricKey) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("gatehouse key id".utf8), using: key)
        return String(Data(mac).hexString.prefix(8))
    }

    public static func isSealed(_ value: String) -> Bool { value.hasPrefix(prefix) }

    /// The key id a sealed value names, `nil` for plaintext.
    public static func keyID(of value: String) -> String? {
        guard isSealed(value) else { return nil }
        return value.dropFirst(prefix.count).split(separator: ":", maxSplits: 1).first.map(String.init)
    }

    /// Seals with the first key. `context` names the row (`table.column:id`).
    public func seal(_ plaintext: String, context: String) throws -> String {
        guard let key = keys.first else { return plaintext }
        let box = try AES.GCM.seal(Data(plaintext.utf8), using: key.key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw Failure.undecryptable(what: context) }
        return Self.prefix + key.id + ":" + Base64URL.encode(Array(combined))
    }

    /// Opens a sealed value; plaintext (a row written before a key was configured) is returned as it is.
    public func open(_ stored: String, context: String) throws -> String {
        try Self.open(stored, context: context, keys: keys)
    }

    /// `open` for a store that may have no box at all (then sealed values are an error).
    public static func open(_ stored: String, context: String, keys: [Key]) throws -> String {
        guard isSealed(stored) else { return stored }
        let rest = stored.dropFirst(prefix.count)
        let parts = rest.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw Failure.undecryptable(what: context) }
        guard !keys.isEmpty else { throw Failure.noKey(what: context) }
        guard let key = keys.first(where: { $0.id == parts[0] }) else {
            throw Failure.unknownKey(id: parts[0], what: context)
        }
        guard let bytes = Base64URL.decode(parts[1]), let box = try? AES.GCM.SealedBox(combined: bytes),
            let plain = try? AES.GCM.open(box, using: key.key, authenticating: Data(context.utf8))
        else { throw Failure.undecryptable(what: context) }
        return String(decoding: plain, as: UTF8.self)
    }

    /// Whether a stored value is already sealed with the first key (nothing to re-encrypt).
    public func isCurrent(_ stored: String) -> Bool {
        guard let first = keys.first else { return !Self.isSealed(stored) }
        return Self.keyID(of: stored) == first.id
    }
}
