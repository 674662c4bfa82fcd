/// application/x-www-form-urlencoded (WHATWG URL §5.1), as the OAuth endpoints and HTTP Basic client
/// credentials (RFC 6749 §2.3.1) use it.
public enum FormEncoding {
    /// Form decoding of one name or value: `+` is a space, `%XX` a byte; the result must be UTF-8.
    public static func decode(_ s: Substring) -> String? {
        let utf8 = s.utf8
        guard utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") }) else { return String(s) }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count)
        var i = utf8.startIndex
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        while i != utf8.endIndex {
            let b = utf8[i]
            if b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%") {
                let h = utf8.index(after: i)
                guard h != utf8.endIndex, utf8.index(after: h) != utf8.endIndex,
                    let hi = hex(utf8[h]), let lo = hex(utf8[utf8.index(after: h)])
                else { return nil }
                out.append(hi << 4 | lo)
                i = utf8.index(after: h)
            } else {
                out.append(b)
            }
            i = utf8.index(after: i)
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Form encoding of one name or value: unreserved characters (RFC 3986 §2.3) stay, everything else is
    /// `%XX` (spaces too, so the result reads the same as a URI query or a form).
    public static func encode(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(b >> 4)])
                out.unicodeScalars.append(hex[Int(b & 0x0F)])
            }
        }
        return out
    }

    /// A whole form or query string from ordered pairs.
    public static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}
