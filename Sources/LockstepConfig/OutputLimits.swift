import Yams

/// The `limits:` section of the agent config: how much of what terraform prints Lockstep
/// keeps in memory, in the store and in API responses. A release can print without bound
/// (a `count` of thousands of resources, long strings); without these caps one plan could
/// take the daemon's memory and the store's disk. Every key is optional.
///
/// The caps differ in what happens past them, because they guard different things:
/// * the plan's text rendering is for humans: past `plan_text_bytes` it is cut and the cut
///   is shown, and the run stays approvable, since the summary and every check come from the
///   plan's JSON, which is complete and bound to the digest;
/// * the plan's JSON is what the summary, the checks and the approval are computed from:
///   past `plan_json_bytes` the run fails (a plan nobody can check is never approvable);
/// * command output (init, plan, apply) is diagnostics: past `command_output_bytes` only
///   the last part is kept, and the run log says how much was not.
public struct OutputLimits: Sendable, Hashable {
    /// Smallest value any key accepts: a smaller cap would cut even an ordinary plan.
    public static let minimumBytes = 64 << 10
    /// Largest value any key accepts.
    public static let maximumBytes = 1 << 30

    /// Bytes of `terraform show` text kept and served per plan (`plan_text_bytes`). Default 4 MiB.
    public var planTextBytes: Int = 4 << 20
    /// Largest `terraform show -json` accepted (`plan_json_bytes`). Default 64 MiB.
    public var planJSONBytes: Int = 64 << 20
    /// Bytes of each command's output kept for the run log (`command_output_bytes`): the
    /// last ones. Default 1 MiB.
    public var commandOutputBytes: Int = 1 << 20

    public init() {}

    public init(planTextBytes: Int, planJSONBytes: Int, commandOutputBytes: Int) {
        self.planTextBytes = planTextBytes
        self.planJSONBytes = planJSONBytes
        self.commandOutputBytes = commandOutputBytes
    }

    /// Reads `4194304`, `512KiB`, `4MiB` or `1GiB` (binary units; a space before the unit
    /// is allowed). Nil for anything else.
    static func parseSize(_ text: String) -> Int? {
        var digits = Substring(text)
        var multiplier = 1
        for (suffix, factor) in [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)] where text.hasSuffix(suffix) {
            digits = text.dropLast(suffix.count)
            if digits.hasSuffix(" ") { digits = digits.dropLast() }
            multiplier = factor
        }
        guard !digits.isEmpty, digits.utf8.count <= 12, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = Int(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

extension AgentParser {
    static let limitsKeys = "plan_text_bytes, plan_json_bytes, command_output_bytes"

    func outputLimits(_ node: Node, _ at: KeyPath) -> OutputLimits? {
        guard let f = reader.mapping(node, at, "a mapping with any of \(Self.limitsKeys)") else { return nil }
        var limits = OutputLimits()
        var valid = true
        let what = "a size between 64KiB and 1GiB: a number of bytes or a number followed by KiB, MiB or GiB (e.g. 4MiB)"
        func size(_ key: String, _ set: (Int) -> Void) {
            guard let node = f.take(key) else { return }
            guard let text = reader.string(node, at.key(key), what) else {
                valid = false
                return
            }
            guard let value = OutputLimits.parseSize(text) else {
                reader.fail(at.key(key), .invalidValue, what, node)
                valid = false
                return
            }
            guard (OutputLimits.minimumBytes...OutputLimits.maximumBytes).contains(value) else {
                reader.fail(at.key(key), .invalidValue, what, node)
                valid = false
                return
            }
            set(value)
        }
        size("plan_text_bytes") { limits.planTextBytes = $0 }
        size("plan_json_bytes") { limits.planJSONBytes = $0 }
        size("command_output_bytes") { limits.commandOutputBytes = $0 }
        f.finish(known: Self.limitsKeys)
        return valid ? limits : nil
    }
}
