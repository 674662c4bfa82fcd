import Foundation
import GatehouseCore

/// One row of the settings table: everything about one setting, in one place.
///
/// The config-file key is `snake_case`; the flag (`--kebab-case`) and the environment variable
/// (`GATEHOUSE_UPPER_SNAKE`) are derived from it. The row also holds the documented default, the accepted
/// values, a one-line description, how a value is parsed and range-checked into `GatehouseConfiguration`,
/// and how the effective value is shown (`gatehouse config show`). The CLI flags of `serve`, the loader
/// (`GatehouseConfiguration.load`), `config show` and the settings tables of README.md and
/// docs/configuration.md all come from `GatehouseConfiguration.settingsTable`.
public struct Setting: Sendable {
    /// The config-file key (`access_token_ttl`).
    public let key: String
    /// The command-line flag (`--access-token-ttl`).
    public let flag: String
    /// The environment variable (`GATEHOUSE_ACCESS_TOKEN_TTL`).
    public var environment: String { "GATEHOUSE_" + key.uppercased() }
    /// The default, as documented (`10m`, `none`).
    public let defaultDescription: String
    /// What values are accepted (docs/configuration.md's column).
    public let accepts: String
    /// What the setting does (README.md's column, `serve --help`).
    public let help: String
    /// Its value is a secret: `config show` masks it.
    public let isSecret: Bool
    /// Parses `value` into the configuration; throws `Setting.Invalid` with the reason.
    let apply: @Sendable (_ value: String, _ config: inout GatehouseConfiguration) throws -> Void
    /// The effective value, as `config show` prints it (nil: not set).
    let effective: @Sendable (_ config: GatehouseConfiguration) -> String?

    public init(
        _ key: String, flag: String? = nil, default defaultDescription: String, accepts: String, help: String,
        secret: Bool = false,
        apply: @escaping @Sendable (String, inout GatehouseConfiguration) throws -> Void,
        effective: @escaping @Sendable (GatehouseConfiguration) -> String?
    ) {
        self.key = key
        self.flag = flag ?? "--" + key.replacingOccurrences(of: "_", with: "-")
        self.defaultDescription = defaultDescription
        self.accepts = accepts
        self.help = help
        self.isSecret = secret
        self.apply = apply
        self.effective = effective
    }

    /// Why a value was refused (`'2d' is not a duration between 1s and 24h`); the loader adds where it came from.
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }
}

// MARK: row builders for the common shapes

extension Setting {
    /// The value a fresh configuration holds (where every default is declared).
    static var defaults: GatehouseConfiguration { GatehouseConfiguration() }

    /// A duration in seconds within `range` (`nil` upper bound: at least the lower one). `0` is allowed when
    /// the range starts at 0.
    static func duration(
        _ key: String, _ path: any WritableKeyPath<GatehouseConfiguration, Int64> & Sendable, range: ClosedRange<Int64>?,
        atLeast: Int64? = nil, help: String, accepts: String? = nil
    ) -> Setting {
        let lower = range?.lowerBound ?? atLeast ?? 1
        let upper = range?.upperBound
        let what = upper.map { "between \(formatDuration(lower)) and \(formatDuration($0))" }
            ?? "of at least \(formatDuration(lower))"
        return Setting(
            key, default: formatDuration(defaults[keyPath: path]),
            accepts: accepts ?? (upper.map { "\(formatDuration(lower))–\(formatDuration($0))" } ?? "at least \(formatDuration(lower))"),
            help: help,
            apply: { value, config in
                guard let d = parseDuration(value, allowZero: lower == 0), d >= lower, d <= (upper ?? .max) else {
                    throw Invalid("'\(value)' is not a duration \(what)")
                }
                config[keyPath: path] = d
            },
            effective: { formatDuration($0[keyPath: path]) })
    }

    /// A whole number within `range`.
    static func integer(
        _ key: String, _ path: any WritableKeyPath<GatehouseConfiguration, Int> & Sendable, range: ClosedRange<Int>,
        help: String, refusal: String? = nil
    ) -> Setting {
        Setting(
            key, default: "\(defaults[keyPath: path])", accepts: "\(range.lowerBound)–\(range.upperBound)", help: help,
            apply: { value, config in
                guard let n = Int(value), range.contains(n) else {
                    throw Invalid(refusal.map { "'\(value)' is not \($0)" } ?? "'\(value)' is not a number between \(range.lowerBound) and \(range.upperBound)")
                }
                config[keyPath: path] = n
            },
            effective: { "\($0[keyPath: path])" })
    }

    /// A comma-separated list; `check` validates and transforms one item (throws `Invalid`).
    static func list(
        _ key: String, _ path: any WritableKeyPath<GatehouseConfiguration, [String]> & Sendable, default defaultDescription: String = "none",
        accepts: String, help: String, item check: @escaping @Sendable (String) throws -> String = { $0 }
    ) -> Setting {
        Setting(
            key, default: defaultDescription, accepts: accepts, help: help,
            apply: { value, config in config[keyPath: path] = try commaList(value).map(check) },
            effective: { $0[keyPath: path].isEmpty ? nil : $0[keyPath: path].joined(separator: ",") })
    }

    /// On or off: `true`/`false` (also `on`/`off`, `yes`/`no`, `1`/`0`; any case).
    static func boolean(
        _ key: String, _ path: any WritableKeyPath<GatehouseConfiguration, Bool> & Sendable, help: String
    ) -> Setting {
        Setting(
            key, default: "`\(defaults[keyPath: path])`", accepts: "`true` or `false` (also `on`/`off`, `yes`/`no`, `1`/`0`)",
            help: help,
            apply: { value, config in
                switch value.lowercased() {
                case "true", "on", "yes", "1": config[keyPath: path] = true
                case "false", "off", "no", "0": config[keyPath: path] = false
                default: throw Invalid("'\(value)' is not true or false")
                }
            },
            effective: { "\($0[keyPath: path])" })
    }

    /// An optional string, stored as given.
    static func text(
        _ key: String, _ path: any WritableKeyPath<GatehouseConfiguration, String?> & Sendable, flag: String? = nil,
        default defaultDescription: String = "none", accepts: String, help: String, secret: Bool = false,
        check: @escaping @Sendable (String) throws -> Void = { _ in }
    ) -> Setting {
        Setting(
            key, flag: flag, default: defaultDescription, accepts: accepts, help: help, secret: secret,
            apply: { value, config in
                try check(value)
                config[keyPath: path] = value
            },
            effective: { $0[keyPath: path] })
    }
}

// MARK: value syntax shared by the rows

extension Setting {
    /// `90`, `90s`, `10m`, `1h`, `30d` → seconds.
    public static func parseDuration(_ s: String, allowZero: Bool = false) -> Int64? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var number = t
        var unit: Int64 = 1
        if let last = t.last, let u = units[last] { number = String(t.dropLast()); unit = u }
        guard let n = Int64(number), n >= (allowZero ? 0 : 1), n <= 10 * 365 * 86_400 / unit else { return nil }
        return n * unit
    }

    /// Seconds in the largest unit that divides them (`60` → `60s`, `600` → `10m`, `86400` → `24h`, `2592000` → `30d`).
    public static func formatDuration(_ seconds: Int64) -> String {
        if seconds == 0 { return "0" }
        if seconds % 86_400 == 0, seconds > 86_400 { return "\(seconds / 86_400)d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0, seconds >= 120 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }

    /// `a, b,c` → `["a", "b", "c"]` (trimmed, empty items dropped).
    public static func commaList(_ value: String) -> [String] {
        value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
