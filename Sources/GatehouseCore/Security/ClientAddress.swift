import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address as bytes: 4 for IPv4, 16 for IPv6 (IPv4-mapped IPv6 addresses are read as IPv4).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Parses `203.0.113.7`, `2001:db8::1` (optionally in brackets, with a zone or port removed by the caller).
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let raw = withUnsafeBytes(of: &v6) { Array($0) }
        if raw[0..<10].allSatisfy({ $0 == 0 }) && raw[10] == 0xff && raw[11] == 0xff {
            bytes = Array(raw[12...])
        } else {
            bytes = raw
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// Canonical text: dotted quad, or RFC 5952 IPv6 as the system prints it.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        var copy = bytes
        let family = isIPv4 ? AF_INET : AF_INET6
        guard inet_ntop(family, &copy, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(cString: buffer)
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a plain address is a /32 or /128.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let base: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let address = IPAddress(first) else { return nil }
        let maxLength = address.bytes.count * 8
        var length = maxLength
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...maxLength).contains(n) else { return nil }
            // An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) is read as the IPv4 network it maps.
            length = first.contains(":") && address.isIPv4 ? n - 96 : n
            guard length >= 0 else { return nil }
        }
        base = address
        prefixLength = length
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.bytes.count == base.bytes.count else { return false }
        var remaining = prefixLength
        for i in 0..<base.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xff : ~(0xff >> UInt8(bits))
            if address.bytes[i] & mask != base.bytes[i] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(base)/\(prefixLength)" }
}

/// Which header the trusted proxies write the client's address into (`forwarded_header`). Only that one is
/// read: a proxy that appends to `X-Forwarded-For` usually passes a client's own `Forwarded` through
/// untouched, so reading both would let the client choose its address.
public enum ForwardedHeader: String, Sendable, CaseIterable {
    case xForwardedFor = "x-forwarded-for"
    /// RFC 7239 `Forwarded: for=…`.
    case forwarded
}

/// Finds the client's address behind trusted reverse proxies.
///
/// Only when the TCP peer is one of `trusted` is the proxies' header (`X-Forwarded-For` by default, or
/// RFC 7239 `Forwarded`) read, from the right: each hop a trusted proxy added is skipped, and the first
/// address no trusted proxy vouches for is the client. Without trusted proxies (the default) the headers
/// are ignored, so a client cannot choose the address its failures are counted against.
public struct ClientAddressResolver: Sendable {
    public let trusted: [IPNetwork]
    public let header: ForwardedHeader

    public init(trusted: [IPNetwork] = [], header: ForwardedHeader = .xForwardedFor) {
        self.trusted = trusted
        self.header = header
    }

    func isTrusted(_ address: IPAddress) -> Bool { trusted.contains { $0.contains(address) } }

    /// `peer`: the socket's remote address; `forwarded` / `xForwardedFor`: every value of those headers,
    /// in order. Returns the canonical text of the client's address, or `nil` when the peer is unknown.
    public func resolve(peer: String?, forwarded: [String], xForwardedFor: [String]) -> String? {
        guard let peer, let peerAddress = IPAddress(peer) else { return peer }
        guard !trusted.isEmpty, isTrusted(peerAddress) else { return peerAddress.description }
        let hops: [String]
        switch header {
        case .forwarded: hops = forwarded.flatMap { Self.forwardedFor($0) }
        case .xForwardedFor:
            hops = xForwardedFor.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        }
        var client = peerAddress
        for hop in hops.reversed() {
            // An obfuscated or malformed hop (`unknown`, `_hidden`): the proxy that reported it is the client.
            guard let address = IPAddress(Self.stripPort(hop)) else { break }
            client = address
            if !isTrusted(address) { break }
        }
        return client.description
    }

    /// The `for=` values of one `Forwarded` header value, in order (RFC 7239 §4, §6).
    static func forwardedFor(_ value: String) -> [String] {
        var out: [String] = []
        for element in value.split(separator: ",") {
            for pair in element.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2, kv[0].lowercased() == "for" else { continue }
                var v = kv[1]
                if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
                out.append(v)
            }
        }
        return out
    }

    /// `[2001:db8::1]:4711` → `2001:db8::1`; `192.0.2.43:47011` → `192.0.2.43`; others unchanged.
    static func stripPort(_ hop: String) -> String {
        if hop.hasPrefix("["), let close = hop.firstIndex(of: "]") {
            return String(hop[hop.index(after: hop.startIndex)..<close])
        }
        if hop.filter({ $0 == ":" }).count == 1, let colon = hop.firstIndex(of: ":") {
            return String(hop[..<colon])
        }
        return hop
    }
}
