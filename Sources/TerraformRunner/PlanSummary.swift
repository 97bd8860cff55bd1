import Foundation

/// What a saved plan would do, read from `terraform show -json`.
///
/// Holds no attribute values at all (only addresses, types, names and
/// actions), so it can be stored and shown without redaction.
public struct PlanSummary: Codable, Sendable, Equatable {
    /// One output whose value would change.
    public struct OutputChange: Codable, Sendable, Equatable {
        public var name: String
        /// `create`, `update`, `delete`, `replace` or `no-op`.
        public var action: String

        public init(name: String, action: String) {
            self.name = name
            self.action = action
        }
    }

    /// Plan JSON format (`0.2` from terraform 1.0, `1.2` from 1.11).
    public var formatVersion: String
    public var terraformVersion: String?
    public var create: Int
    public var update: Int
    public var delete: Int
    public var replace: Int
    public var noOp: Int
    /// Data sources read during apply.
    public var read: Int
    /// Every managed resource that would be destroyed (sorted).
    public var deletedAddresses: [String]
    /// Every managed resource that would be destroyed and re-created (sorted).
    public var replacedAddresses: [String]
    /// Resource types with a change other than no-op (sorted, unique).
    public var resourceTypes: [String]
    /// Outputs with a change other than no-op (sorted by name).
    public var outputChanges: [OutputChange]

    public init(
        formatVersion: String, terraformVersion: String?, create: Int, update: Int, delete: Int, replace: Int,
        noOp: Int, read: Int, deletedAddresses: [String], replacedAddresses: [String], resourceTypes: [String],
        outputChanges: [OutputChange]
    ) {
        self.formatVersion = formatVersion
        self.terraformVersion = terraformVersion
        self.create = create
        self.update = update
        self.delete = delete
        self.replace = replace
        self.noOp = noOp
        self.read = read
        self.deletedAddresses = deletedAddresses
        self.replacedAddresses = replacedAddresses
        self.resourceTypes = resourceTypes
        self.outputChanges = outputChanges
    }

    /// True when applying would change infrastructure or outputs.
    public var hasChanges: Bool {
        create + update + delete + replace > 0 || !outputChanges.isEmpty
    }

    /// Parses the output of `terraform show -json PLANFILE`.
    public init(planJSON: Data) throws {
        let raw: RawPlan
        do {
            raw = try JSONDecoder().decode(RawPlan.self, from: planJSON)
        } catch {
            throw TerraformRunnerError(.malformedOutput, "terraform plan JSON could not be decoded")
        }
        var create = 0, update = 0, delete = 0, replace = 0, noOp = 0, read = 0
        var deleted: [String] = [], replaced: [String] = []
        var types = Set<String>()
        for change in raw.resourceChanges ?? [] {
            let managed = change.mode != "data"
            switch Self.action(change.change.actions) {
            case "create": create += 1
            case "update": update += 1
            case "delete":
                delete += 1
                if managed { deleted.append(change.address) }
            case "replace":
                replace += 1
                if managed { replaced.append(change.address) }
            case "read": read += 1
            default: noOp += 1; continue
            }
            if let type = change.type { types.insert(type) }
        }
        let outputs = (raw.outputChanges ?? [:]).compactMap { name, change -> OutputChange? in
            let action = Self.action(change.actions)
            return action == "no-op" ? nil : OutputChange(name: name, action: action)
        }
        self.init(
            formatVersion: raw.formatVersion ?? "unknown", terraformVersion: raw.terraformVersion,
            create: create, update: update, delete: delete, replace: replace, noOp: noOp, read: read,
            deletedAddresses: deleted.sorted(), replacedAddresses: replaced.sorted(), resourceTypes: types.sorted(),
            outputChanges: outputs.sorted { $0.name < $1.name }
        )
    }

    private static func action(_ actions: [String]) -> String {
        switch actions {
        case ["create"]: "create"
        case ["update"]: "update"
        case ["delete"]: "delete"
        case ["read"]: "read"
        case ["delete", "create"], ["create", "delete"]: "replace"
        default: "no-op"
        }
    }
}

/// Only the keys the summary needs; everything else (values) is skipped.
private struct RawPlan: Decodable {
    struct Change: Decodable {
        var actions: [String]
    }

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
