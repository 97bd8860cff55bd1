import Foundation

/// What a saved plan would do, parsed once from `terraform show -json` (docs/ARCHITECTURE.md,
/// "One pass per run"). The summary shown to reviewers, the built-in checks
/// (``PlanChecks``) and the approval policy all read this one value; nothing decodes the
/// plan JSON a second time.
///
/// It holds no attribute values at all, only addresses, modes, types and actions, so it is
/// stored and shown without redaction.
public struct PlanModel: Sendable, Hashable {
    /// What terraform would do to one resource or output.
    public enum Action: String, Sendable, Hashable, Codable, CaseIterable {
        case create, update, delete, replace, read
        case noOp = "no-op"

        /// Terraform's action list (`["delete", "create"]` is a replacement); anything this
        /// model does not know is `no-op`, which no check treats as harmless: an unknown
        /// action list on a managed resource still counts as a change for the allow-list.
        init(terraformActions actions: [String]) {
            switch actions {
            case ["create"]: self = .create
            case ["update"]: self = .update
            case ["delete"]: self = .delete
            case ["read"]: self = .read
            case ["delete", "create"], ["create", "delete"]: self = .replace
            default: self = .noOp
            }
        }
    }

    /// One entry of `resource_changes`.
    public struct ResourceChange: Sendable, Hashable, Codable {
        public var address: String
        /// False for a data source (`mode: data`).
        public var managed: Bool
        /// The resource type, empty when the plan did not name one.
        public var type: String
        public var action: Action
        /// The raw action list, kept when it is not one terraform documents (so a check can
        /// fail closed on it rather than read it as no change).
        public var unrecognised: [String]?

        public init(address: String, managed: Bool, type: String, action: Action, unrecognised: [String]? = nil) {
            self.address = address
            self.managed = managed
            self.type = type
            self.action = action
            self.unrecognised = unrecognised
        }

        /// Whether this entry changes infrastructure: a managed resource with any action other
        /// than no-op, or with an action list this model does not recognise.
        public var changesInfrastructure: Bool {
            managed && (action != .noOp && action != .read || unrecognised != nil)
        }

        /// Whether applying destroys the resource (deleted or replaced, or an action list
        /// this model does not recognise that contains a delete).
        public var destroys: Bool {
            managed && (action == .delete || action == .replace || unrecognised?.contains("delete") == true)
        }
    }

    /// One output whose value would change.
    public struct OutputChange: Sendable, Hashable, Codable {
        public var name: String
        public var action: Action

        public init(name: String, action: Action) {
            self.name = name
            self.action = action
        }
    }

    /// Plan JSON format (`0.2` from terraform 1.0, `1.2` from 1.11).
    public var formatVersion: String
    public var terraformVersion: String?
    /// In the plan's order.
    public var resourceChanges: [ResourceChange]
    /// Outputs with a change other than no-op, sorted by name.
    public var outputChanges: [OutputChange]

    public init(formatVersion: String, terraformVersion: String?, resourceChanges: [ResourceChange],
                outputChanges: [OutputChange]) {
        self.formatVersion = formatVersion
        self.terraformVersion = terraformVersion
        self.resourceChanges = resourceChanges
        self.outputChanges = outputChanges.filter { $0.action != .noOp }.sorted { $0.name < $1.name }
    }

    /// Parses the output of `terraform show -json PLANFILE` (redacted or not: only the keys
    /// named above are read, every value is skipped).
    public init(planJSON: Data) throws(CoreError) {
        let raw: RawPlan
        do {
            raw = try JSONDecoder().decode(RawPlan.self, from: planJSON)
        } catch {
            throw CoreError(.planUnreadable, "the plan JSON could not be read: it is not terraform's show -json shape")
        }
        let changes = (raw.resourceChanges ?? []).map { change in
            let action = Action(terraformActions: change.change.actions)
            let known = action != .noOp || change.change.actions == ["no-op"] || change.change.actions.isEmpty
            return ResourceChange(address: change.address, managed: change.mode != "data", type: change.type ?? "",
                                  action: action, unrecognised: known ? nil : change.change.actions)
        }
        let outputs = (raw.outputChanges ?? [:]).map { OutputChange(name: $0.key, action: Action(terraformActions: $0.value.actions)) }
        self.init(formatVersion: raw.formatVersion ?? "unknown", terraformVersion: raw.terraformVersion,
                  resourceChanges: changes, outputChanges: outputs)
    }

    // MARK: - The summary reviewers see

    /// How many resource entries (managed and data) have `action`.
    public func count(_ action: Action) -> Int { resourceChanges.count { $0.action == action } }

    /// Every managed resource that would be destroyed, sorted.
    public var deletedAddresses: [String] {
        resourceChanges.filter { $0.managed && $0.action == .delete }.map(\.address).sorted()
    }

    /// Every managed resource that would be destroyed and re-created, sorted.
    public var replacedAddresses: [String] {
        resourceChanges.filter { $0.managed && $0.action == .replace }.map(\.address).sorted()
    }

    /// Resource types with a change other than no-op, sorted and unique.
    public var resourceTypes: [String] {
        Set(resourceChanges.filter { $0.action != .noOp && !$0.type.isEmpty }.map(\.type)).sorted()
    }

    public var create: Int { count(.create) }
    public var update: Int { count(.update) }
    public var delete: Int { count(.delete) }
    public var replace: Int { count(.replace) }
    public var noOp: Int { count(.noOp) }
    /// Data sources read during apply.
    public var read: Int { count(.read) }

    /// True when applying would change infrastructure or outputs.
    public var hasChanges: Bool {
        count(.create) + count(.update) + count(.delete) + count(.replace) > 0 || !outputChanges.isEmpty
    }
}

// MARK: - Stored form

/// The stored form carries the counts reviewers see next to the changes, so a reader that
/// wants only the summary (the API's run list) reads the counts without this type.
extension PlanModel: Codable {
    enum CodingKeys: String, CodingKey {
        case formatVersion, terraformVersion, resourceChanges, outputChanges
        case create, update, delete, replace, noOp, read, deletedAddresses, replacedAddresses, resourceTypes
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(formatVersion: try c.decode(String.self, forKey: .formatVersion),
                  terraformVersion: try c.decodeIfPresent(String.self, forKey: .terraformVersion),
                  resourceChanges: try c.decode([ResourceChange].self, forKey: .resourceChanges),
                  outputChanges: try c.decode([OutputChange].self, forKey: .outputChanges))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encodeIfPresent(terraformVersion, forKey: .terraformVersion)
        try c.encode(resourceChanges, forKey: .resourceChanges)
        try c.encode(outputChanges, forKey: .outputChanges)
        try c.encode(count(.create), forKey: .create)
        try c.encode(count(.update), forKey: .update)
        try c.encode(count(.delete), forKey: .delete)
        try c.encode(count(.replace), forKey: .replace)
        try c.encode(count(.noOp), forKey: .noOp)
        try c.encode(count(.read), forKey: .read)
        try c.encode(deletedAddresses, forKey: .deletedAddresses)
        try c.encode(replacedAddresses, forKey: .replacedAddresses)
        try c.encode(resourceTypes, forKey: .resourceTypes)
    }

    /// The model of a stored plan: its stored form, or, for a plan stored before the model
    /// existed (only counts were kept), the stored redacted plan JSON parsed once.
    public static func stored(modelJSON: Data, planJSON: Data) throws(CoreError) -> PlanModel {
        if let model = try? JSONDecoder().decode(PlanModel.self, from: modelJSON) { return model }
        return try PlanModel(planJSON: planJSON)
    }
}

/// Only the keys the model reads; every value in the plan is skipped by the decoder.
private struct RawPlan: Decodable {
    struct Change: Decodable { var actions: [String] }
    struct ResourceChange: Decodable {
        var address: String
        var mode: String?
        var type: String?
        var change: Change
    }

    var formatVersion: String?
    var terraformVersion: String?
    var resourceChanges: [ResourceChange]?
    var outputChanges: [String: Change]?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case terraformVersion = "terraform_version"
        case resourceChanges = "resource_changes"
        case outputChanges = "output_changes"
    }
}
