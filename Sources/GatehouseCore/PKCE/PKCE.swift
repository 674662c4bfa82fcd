import Crypto
import Foundation

/// Proof Key for Code Exchange (RFC 7636), S256 only (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1: `plain` is refused).
public enum PKCE {
    public static let s256 = "S256"

    /// §4.1: 43–128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
    public static func isValidVerifier(_ verifier: String) -> Bool {
        (43...128).contains(verifier.utf8.count) && verifier.utf8.allSatisfy(isUnreserved)
    }

    /// §4.2: an S256 challenge is BASE64URL(SHA256(verifier)) without padding: exactly 43 characters.
    public static func isValidChallenge(_ challenge: String) -> Bool {
        challenge.utf8.count == 43 && challenge.utf8.allSatisfy { isUnreserved($0) && $0 != UInt8(ascii: ".") && $0 != UInt8(ascii: "~") }
    }

    /// §4.6: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) compared with the stored challenge, in constant time.
    public static func verify(verifier: String, challenge: String) -> Bool {
        Secrets.constantTimeEquals(Self.challenge(for: verifier), challenge)
    }

    public static func challenge(for verifier: String) -> String {
        Base64URL.encode(Array(SHA256.hash(data: Data(verifier.utf8))))
    }

    private static func isUnreserved(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x2E
            || b == 0x5F || b == 0x7E
    }
}
