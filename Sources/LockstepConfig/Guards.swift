import Foundation
public import LockstepCore

// The guards around an environment's applies besides approvals (docs/CONTRACT.md §4): freeze
// periods, the break-glass group that may apply through them, and external policy checks.

/// A period during which nothing applies to the environment (`freezes:`), in a named time zone.
/// `from` is inclusive; `to` is exclusive (a date alone as `to` means the end of that day).
public struct FreezePeriod: Hashable, Sendable, CustomStringConvertible {
    public var start: Date
    public var end: Date
    /// As written in the agent config, for status lines (`2026-12-20 → 2027-01-03 Europe/Berlin`).
    public var label: String
    public var reason: String?

    public init(start: Date, end: Date, label: String, reason: String?) {
        self.start = start
        self.end = end
        self.label = label
        self.reason = reason
    }

    public func contains(_ date: Date) -> Bool { date >= start && date < end }

    public var description: String { reason.map { "\(label): \($0)" } ?? label }
}

/// The environment's emergency path (`break_glass:`): two distinct members, each approving with
/// `--break-glass` and a reason, let an approved run apply inside a freeze or outside the apply
/// windows. Such an apply raises an alert and is marked in the audit log and notifications.
public struct BreakGlassGroup: Hashable, Sendable {
    public var name: String
    /// At least two identities (checked at parse).
    public var members: [IdentityName]

    public init(name: String, members: [IdentityName]) {
        self.name = name
        self.members = members
    }
}

/// An external policy check (`checks:`): a trusted program from the agent config that reads the
/// plan JSON and passes or fails by its exit code.
public struct ExternalCheck: Hashable, Sendable {
    /// Placeholders an argument may be: replaced by the redacted plan JSON's path, the run's
    /// tree (a fresh export, read-only), and (expanding to one argument per file) the policy files.
    public static let planJSON = "{plan_json}"
    public static let tree = "{tree}"
    public static let policyFiles = "{policy_files}"

    public var name: String
    /// argv; `command[0]` is an absolute path.
    public var command: [String]
    public var timeout: Duration
    /// Whether an approver may override a failure (`approve --override-check NAME --reason R`,
    /// one approval more than usual). Default false: a failure fails the run.
    public var mayOverride: Bool
    /// The agent's own policy files for `{policy_files}`.
    public var policyFiles: [String]
    /// Also run the check a second time, as `NAME/repo`, with the `policy_files` of the run's
    /// `lockstep.yaml` in place of the agent's: a repository can add checks this way, never
    /// remove or weaken the agent's (its files are never evaluated together with them).
    public var repoPolicies: Bool

    public init(name: String, command: [String], timeout: Duration = .seconds(300), mayOverride: Bool = false,
                policyFiles: [String] = [], repoPolicies: Bool = false) {
        self.name = name
        self.command = command
        self.timeout = timeout
        self.mayOverride = mayOverride
        self.policyFiles = policyFiles
        self.repoPolicies = repoPolicies
    }

    /// The name under which the repository's run of this check is reported.
    public var repoName: String { name + "/repo" }
}

extension EnvironmentPolicy {
    /// The freeze period in force at `date`, if any.
    public func freeze(at date: Date) -> FreezePeriod? {
        freezes.first { $0.contains(date) }
    }

    /// Whether an apply may start at `date` without the break-glass path: a window is open and
    /// no freeze is in force.
    public func applyAllowed(at date: Date) -> Bool {
        applyWindowOpen(at: date) && freeze(at: date) == nil
    }

    /// The first moment at or after `date` when an apply may start, searched minute by minute
    /// over window starts and freeze ends for `horizon` (nil: none within it, e.g. a window
    /// that only opens inside a longer freeze).
    public func nextApplyTime(after date: Date, horizon: TimeInterval = 400 * 86_400) -> Date? {
        if applyAllowed(at: date) { return date }
        var candidates = freezes.map(\.end).filter { $0 > date }
        let limit = date.addingTimeInterval(horizon)
        for window in applyWindows {
            candidates += window.starts(after: date, until: limit)
        }
        return candidates.filter { $0 <= limit }.sorted().first { applyAllowed(at: $0) }
    }
}

extension ApplyWindow {
    /// The moments this window opens in (`date`, `limit`].
    func starts(after date: Date, until limit: Date) -> [Date] {
        guard let zone = TimeZone(identifier: timeZone) else { return [] }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        var starts: [Date] = []
        var day = calendar.startOfDay(for: date)
        while day <= limit {
            let weekday = calendar.component(.weekday, from: day)
            let iso = weekday == 1 ? 7 : weekday - 1
            if let d = Weekday(isoNumber: iso), days.contains(d),
               let start = calendar.date(bySettingHour: from.minutes / 60, minute: from.minutes % 60, second: 0, of: day),
               start > date, start <= limit {
                starts.append(start)
            }
            guard let next = calendar.date(byAdding: .day, value: 1, to: day) else { break }
            day = next
        }
        return starts
    }
}
