/// The terraform state a plan was made against (docs/CONTRACT.md §4, "Apply"): the lineage and
/// serial of the prior state recorded inside the saved plan. Apply goes ahead only while the
/// state still has both; terraform's own stale-plan check skips a plan made against no state at
/// all (terraform issue 24078), this one does not.
public struct StateBinding: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Terraform's lineage of the state; empty when there was no state.
    public var lineage: String
    /// The state's serial (0 when there was no state).
    public var serial: UInt64

    public init(lineage: String, serial: UInt64) {
        self.lineage = lineage
        self.serial = serial
    }

    /// No state existed (terraform writes an empty lineage and serial 0 for it).
    public static let none = StateBinding(lineage: "", serial: 0)

    public var isEmpty: Bool { lineage.isEmpty }

    public var description: String {
        isEmpty ? "no state" : "lineage \(lineage) serial \(serial)"
    }

    /// Why `current` is not the state this binding names, or nil when it is.
    public func mismatch(_ current: StateBinding) -> String? {
        if current == self { return nil }
        if isEmpty { return "the plan was made against no state, and the state now exists (\(current))" }
        if current.isEmpty { return "the plan was made against \(self), and the state is now gone" }
        if current.lineage != lineage { return "the plan was made against \(self), and the state is now another one (\(current))" }
        return "the plan was made against serial \(serial), and the state is now at serial \(current.serial)"
    }
}
