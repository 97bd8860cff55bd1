import Foundation
import LockstepCore
import Yams

/// `freezes:`, `break_glass:` and `checks:` of an environment (see Guards.swift).
extension AgentParser {
    func freezes(_ node: Node, _ at: KeyPath) -> [FreezePeriod]? {
        reader.list(node, at, "a list of freezes `{from: \"2026-12-20\", to: \"2027-01-03\", timezone: Europe/Berlin, reason: …}`",
                    freeze)
    }

    /// One freeze: `from`/`to` as `YYYY-MM-DD` or `YYYY-MM-DD HH:MM` in `timezone` (default UTC).
    /// A date alone as `to` includes that whole day.
    func freeze(_ node: Node, _ at: KeyPath) -> FreezePeriod? {
        guard let f = reader.mapping(node, at, "a mapping with `from`, `to`, optionally `timezone` and `reason`") else { return nil }
        let before = reader.errors.count
        var zone = TimeZone(identifier: "UTC")!
        var zoneName = "UTC"
        if let znode = f.take("timezone"), let text = reader.string(znode, at.key("timezone"), "an IANA time zone such as `UTC` or `Europe/Paris`") {
            if let found = TimeZone(identifier: text), text.utf8.count <= 64 {
                zone = found
                zoneName = text
            } else {
                reader.fail(at.key("timezone"), .invalidValue, "an IANA time zone such as `UTC` or `Europe/Paris`", znode)
            }
        }
        let what = "a quoted date \"YYYY-MM-DD\" or date and time \"YYYY-MM-DD HH:MM\""
        func moment(_ key: String, endOfDay: Bool) -> (Date, String)? {
            guard let n = require(f, key, at, what), let text = reader.string(n, at.key(key), what) else { return nil }
            guard let date = parseMoment(text, zone: zone, endOfDay: endOfDay) else {
                reader.fail(at.key(key), .invalidValue, what, n)
                return nil
            }
            return (date, text)
        }
        let from = moment("from", endOfDay: false)
        let to = moment("to", endOfDay: true)
        var reason: String?
        if let rnode = f.take("reason"), let text = reader.string(rnode, at.key("reason"), "a short text shown in status") {
            if text.utf8.count <= 200, !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                reason = text
            } else {
                reader.fail(at.key("reason"), .invalidValue, "one line of at most 200 bytes", rnode)
            }
        }
        f.finish(known: "from, to, timezone, reason")
        if let from, let to, from.0 >= to.0 {
            reader.fail(at.key("to"), .invalidValue, "a moment after `from`", node)
        }
        guard reader.errors.count == before, let from, let to else { return nil }
        return FreezePeriod(start: from.0, end: to.0, label: "\(from.1) → \(to.1) \(zoneName)", reason: reason)
    }

    /// `break_glass: {group: sre-oncall, members: [alice, bob]}`: at least two known identities.
    func breakGlass(_ node: Node, _ at: KeyPath, identities: [String: Identity]?) -> BreakGlassGroup? {
        guard let f = reader.mapping(node, at, "a mapping with `group` (a name) and `members` (at least two identity names)") else { return nil }
        let before = reader.errors.count
        var name: String?
        if let gnode = require(f, "group", at, "the group's name, shown in the audit log and notifications"),
           let text = reader.string(gnode, at.key("group"), "a group name") {
            if isSimpleName(text) { name = text } else {
                reader.fail(at.key("group"), .invalidValue, "a group name (lowercase letters, digits, `-`, `_`)", gnode)
            }
        }
        var members: [IdentityName] = []
        if let mnode = require(f, "members", at, "at least two identity names"),
           let list = reader.stringList(mnode, at.key("members"), "identity names") {
            for (i, member) in list.enumerated() {
                if members.contains(where: { $0.rawValue == member }) {
                    reader.fail(at.key("members").index(i), .duplicateKey, "each member listed once", mnode)
                } else if let identities, identities[member] == nil {
                    reader.fail(at.key("members").index(i), .unknownReference, "the name of an identity defined under `identities`", mnode)
                } else if let identity = reader.name(IdentityName.self, member, at.key("members").index(i), mnode) {
                    members.append(identity)
                }
            }
            if list.count < 2 {
                reader.fail(at.key("members"), .invalidValue, "at least two members (two of them must approve a break-glass apply)", mnode)
            }
        }
        f.finish(known: "group, members")
        guard reader.errors.count == before, let name else { return nil }
        return BreakGlassGroup(name: name, members: members)
    }

    /// `drift: {interval: 6h}`: between 5 minutes and 30 days.
    func driftInterval(_ node: Node, _ at: KeyPath) -> Duration? {
        guard let f = reader.mapping(node, at, "a mapping with `interval`, such as `{interval: 6h}`") else { return nil }
        let interval = require(f, "interval", at, "how often the applied revision is planned again, such as `6h`").flatMap {
            duration($0, at.key("interval"), 300...(30 * 86_400), "between 5m and 30d")
        }
        f.finish(known: "interval")
        return interval
    }

    func externalChecks(_ node: Node, _ at: KeyPath) -> [ExternalCheck]? {
        guard let checks = reader.list(node, at, "a list of checks `{name: checkov, command: [/path/to/checkov, -f, \"{plan_json}\"]}`",
                                       externalCheck) else { return nil }
        var seen: Set<String> = []
        for (i, check) in checks.enumerated() where !seen.insert(check.name).inserted {
            reader.fail(at.index(i).key("name"), .duplicateKey, "each check name used once", node)
            return nil
        }
        return checks
    }

    func externalCheck(_ node: Node, _ at: KeyPath) -> ExternalCheck? {
        guard let f = reader.mapping(node, at, "a mapping with `name`, `command` and optionally `timeout`, `may_override`, `policy_files`, `repo_policies`")
        else { return nil }
        let before = reader.errors.count
        var name: String?
        if let nnode = require(f, "name", at, "the check's name, used by `approve --override-check`"),
           let text = reader.string(nnode, at.key("name"), "a check name") {
            if isSimpleName(text) { name = text } else {
                reader.fail(at.key("name"), .invalidValue, "a check name (lowercase letters, digits, `-`, `_`)", nnode)
            }
        }
        var command: [String] = []
        if let cnode = require(f, "command", at, "an argv list whose first item is an absolute path"),
           let list = reader.stringList(cnode, at.key("command"), "an argv list (never a shell string)") {
            if let program = list.first, program.hasPrefix("/") {
                command = list
            } else {
                reader.fail(at.key("command"), .invalidValue, "an argv list whose first item is an absolute path to the program", cnode)
            }
            if list.contains(where: { $0.unicodeScalars.contains { $0.value == 0 } }) {
                reader.fail(at.key("command"), .invalidValue, "arguments without NUL bytes", cnode)
            }
        }
        let timeout = f.take("timeout").map { duration($0, at.key("timeout"), 1...3_600, "between 1s and 1h") } ?? .seconds(300)
        let mayOverride = f.take("may_override").map { reader.bool($0, at.key("may_override")) } ?? false
        let policyNode = f.take("policy_files")
        let policies = policyNode.map {
            reader.list($0, at.key("policy_files"), "a list of the agent's policy files for `{policy_files}`") { item, itemAt in
                path(item, itemAt, "a policy file")
            }
        } ?? []
        let repoNode = f.take("repo_policies")
        let repo = repoNode.map { reader.bool($0, at.key("repo_policies")) } ?? false
        f.finish(known: "name, command, timeout, may_override, policy_files, repo_policies")
        // Policy files the command never receives would look like protection and are not.
        if !command.isEmpty, !command.contains(ExternalCheck.policyFiles) {
            if let policyNode, policies?.isEmpty == false {
                reader.fail(at.key("policy_files"), .conflict, "a command with a `{policy_files}` argument (the files are otherwise never read)", policyNode)
            }
            if let repoNode, repo == true {
                reader.fail(at.key("repo_policies"), .conflict, "a command with a `{policy_files}` argument (the repository's files are otherwise never read)", repoNode)
            }
        }
        guard reader.errors.count == before, let name, let timeout, let mayOverride, let policies, let repo else { return nil }
        return ExternalCheck(name: name, command: command, timeout: timeout, mayOverride: mayOverride,
                             policyFiles: policies, repoPolicies: repo)
    }
}

/// `YYYY-MM-DD` (midnight, or the next midnight with `endOfDay`) or `YYYY-MM-DD HH:MM` in `zone`.
func parseMoment(_ text: String, zone: TimeZone, endOfDay: Bool) -> Date? {
    let parts = text.split(separator: " ", omittingEmptySubsequences: false)
    guard parts.count == 1 || parts.count == 2 else { return nil }
    let dateParts = parts[0].split(separator: "-", omittingEmptySubsequences: false)
    guard dateParts.count == 3, dateParts[0].count == 4, dateParts[1].count == 2, dateParts[2].count == 2,
          dateParts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
          let year = Int(dateParts[0]), let month = Int(dateParts[1]), let day = Int(dateParts[2]),
          (1...12).contains(month), (1...31).contains(day) else { return nil }
    var time = TimeOfDay(minutes: 0)!
    if parts.count == 2 {
        guard let parsed = TimeOfDay(text: String(parts[1])), parsed.minutes < 1440 else { return nil }
        time = parsed
    }
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    let components = DateComponents(year: year, month: month, day: day, hour: time.minutes / 60, minute: time.minutes % 60)
    guard let date = calendar.date(from: components),
          calendar.component(.day, from: date) == day, calendar.component(.month, from: date) == month else { return nil }
    if parts.count == 1 && endOfDay { return calendar.date(byAdding: .day, value: 1, to: date) }
    return date
}
