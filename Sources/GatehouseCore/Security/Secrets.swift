import Crypto
import Foundation

/// Random secrets, their stored hashes, and constant-time comparison.
///
/// Client secrets and refresh tokens are 256-bit random values, so a fast cryptographic hash (SHA-256) is
/// the right way to store them: a slow password hash adds nothing against brute force of 2^256 values and
/// would cap throughput. Rows are keyed by the hash, never by the raw value.
public enum Secrets {
    /// `byteCount` bytes from the system CSPRNG, base64url-encoded (32 bytes → 43 characters).
    public static func generate(byteCount: Int = 32) -> String {
        Base64URL.encode(randomBytes(byteCount))
    }

    /// Bytes from BoringSSL's CSPRNG (seeded from the OS), without a system call per call.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        SymmetricKey(size: SymmetricKeySize(bitCount: count * 8)).withUnsafeBytes { Array($0) }
    }

    /// A random identifier (128 bits, base64url) for clients, rows, `jti` and families. It never starts
    /// with `-` or `_`, so a client id is never mistaken for a command-line option.
    public static func identifier() -> String {
        while true {
            let id = generate(byteCount: 16)
            if let first = id.unicodeScalars.first, first != "-", first != "_" { return id }
        }
    }

    /// SHA-256 of the value, hex-encoded: what is stored in place of a secret or token.
    public static func hash(_ value: String) -> String {
        SHA256.hash(data: Data(value.utf8)).hexString
    }

    /// Compares two strings in time that depends only on their lengths.
    public static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// Checks `presented` against a stored SHA-256 hex hash in constant time.
    public static func verify(_ presented: String, hash stored: String) -> Bool {
        constantTimeEquals(hash(presented), stored)
    }
}
