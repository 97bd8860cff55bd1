public import LockstepCore
import Yams

/// `parity:` in `lockstep.yaml`: the differences between a project's environments that the
/// repository declares intended, so `lockstep validate` reports them without failing.
///
/// Why it may live in the repo config: a parity declaration only decides whether a CI step
/// complains about a difference that is visible in the pull request anyway. It grants nothing,
/// loosens no approval and never reaches the gate, so it is layout, not trust (docs/CONTRACT.md §2).
///
/// ```yaml
/// parity:
///   ignore:
///     - project: app
///       environments: [dev]            # optional: the environments that are meant to differ
///       resources: [null_resource.debug]
///       variables: [debug_level]
///       reason: debugging aids exist in dev only   # optional, shown in the report
/// ```
public struct ParityPolicy: Sendable, Hashable {
    public var ignore: [ParityIgnore]

    public init(ignore: [ParityIgnore] = []) { self.ignore = ignore }

    /// The first rule that declares `item` of `project` intended, where the item is present in
    /// `present` and missing from `missing`; nil when the difference is not declared.
    public func rule(project: ProjectName, item: ParityItem, present: Set<EnvironmentName>,
                     missing: Set<EnvironmentName>) -> ParityIgnore? {
        ignore.first { $0.covers(project: project, item: item, present: present, missing: missing) }
    }
}

/// What a parity difference is about.
public enum ParityItem: Sendable, Hashable {
    /// A variable set in some environments' var files.
    case variable(String)
    /// A resource or module instance address (`null_resource.waf[0]`, `module.cdn`).
    case address(String)
}

/// One `parity.ignore` entry.
public struct ParityIgnore: Sendable, Hashable {
    public var project: ProjectName
    /// The environments in which the item is meant to be unlike the rest of the project's
    /// environments; nil: any. A difference is covered when every environment that has the item
    /// is listed, or every environment that lacks it is: `environments: [prod]` with a WAF that
    /// only prod has is covered, and stops being covered the day staging gets the WAF too.
    public var environments: Set<EnvironmentName>?
    /// Resource or module addresses. `null_resource.debug` covers every instance of it
    /// (`null_resource.debug[0]`, `["a"]`); an instance address covers that instance only.
    public var resources: [String]
    /// Variable names.
    public var variables: [String]
    /// Why the difference is intended, for the report.
    public var reason: String?

    public init(project: ProjectName, environments: Set<EnvironmentName>? = nil, resources: [String] = [],
                variables: [String] = [], reason: String? = nil) {
        self.project = project
        self.environments = environments
        self.resources = resources
        self.variables = variables
        self.reason = reason
    }

    func covers(project: ProjectName, item: ParityItem, present: Set<EnvironmentName>, missing: Set<EnvironmentName>) -> Bool {
        guard project == self.project else { return false }
        switch item {
        case .variable(let name):
            guard variables.contains(name) else { return false }
        case .address(let address):
            let resource = ParityIgnore.withoutInstanceKey(address)
            guard resources.contains(where: { $0 == address || $0 == resource }) else { return false }
        }
        guard let environments else { return true }
        return present.isSubset(of: environments) || missing.isSubset(of: environments)
    }

    /// `null_resource.x["a"]` → `null_resource.x`; `module.m[1]` → `module.m`.
    public static func withoutInstanceKey(_ address: String) -> String {
        guard address.hasSuffix("]"), let open = address.firstIndex(of: "[") else { return address }
        return String(address[..<open])
    }

    /// Why `text` is not a resource or module address (phrased to follow "expected"), or nil.
    static func addressProblem(_ text: String) -> String? {
        let what = "a resource or module address such as `null_resource.debug`, `data.aws_ami.base`, `module.cdn` or `null_resource.x[\"a\"]`"
        guard !text.isEmpty, text.utf8.count <= 512,
              !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return what }
        let base = withoutInstanceKey(text)
        let parts = base.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.allSatisfy({ isIdentifier(String($0)) }) else { return what }
        switch parts.first {
        case "module": return parts.count == 2 ? nil : what + " (child modules' resources are not compared)"
        case "data": return parts.count == 3 ? nil : what
        default: return parts.count == 2 ? nil : what
        }
    }

    /// An HCL identifier: a letter or `_`, then letters, digits, `_` or `-`.
    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first.isASCII,
              first.properties.isAlphabetic || first == "_" else { return false }
        return text.utf8.count <= 128 && text.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-")
        }
    }
}

extension RepoParser {
    func parity(_ node: Node, _ at: KeyPath, projects: [ProjectName: ProjectLayout]) -> ParityPolicy? {
        if Reader.isNull(node) { return ParityPolicy() }
        guard let f = reader.mapping(node, at, "a mapping with `ignore`: a list of intended differences") else { return nil }
        var rules: [ParityIgnore]? = []
        if let inode = f.take("ignore") {
            rules = reader.list(inode, at.key("ignore"),
                                "a list of intended differences, each `{project: NAME, environments: [...], resources: [...], variables: [...]}`") {
                ignoreRule($0, $1, projects: projects)
            }
        }
        f.finish(known: "ignore", classify: classify(environmentsAtTop: false))
        return rules.map(ParityPolicy.init(ignore:))
    }

    private func ignoreRule(_ node: Node, _ at: KeyPath, projects: [ProjectName: ProjectLayout]) -> ParityIgnore? {
        guard let f = reader.mapping(node, at, "a mapping with `project` and `resources` and/or `variables` (optionally `environments`, `reason`)") else { return nil }
        var ok = true
        var layout: ProjectLayout?
        if let pnode = f.take("project") {
            if let raw = reader.string(pnode, at.key("project"), "the name of a project under `projects`") {
                if let name = try? ProjectName(raw), let found = projects[name] {
                    layout = found
                } else {
                    let known = projects.keys.map(\.rawValue).sorted().joined(separator: ", ")
                    reader.fail(at.key("project"), .unknownReference, "the name of a project under `projects` (\(known))", pnode)
                    ok = false
                }
            } else { ok = false }
        } else {
            reader.fail(at.key("project"), .missingKey, "the project whose environments differ on purpose", node)
            ok = false
        }
        var environments: Set<EnvironmentName>?
        if let enode = f.take("environments") {
            if let names = reader.stringList(enode, at.key("environments"), "environment names") {
                if names.isEmpty {
                    reader.fail(at.key("environments"), .invalidValue, "at least one environment (leave the key out to mean any)", enode)
                    ok = false
                }
                var set = Set<EnvironmentName>()
                for (i, raw) in names.enumerated() {
                    if let layout, let name = try? EnvironmentName(raw), layout.environments[name] != nil {
                        set.insert(name)
                    } else if let layout {
                        let known = layout.environments.keys.map(\.rawValue).sorted().joined(separator: ", ")
                        reader.fail(at.key("environments").index(i), .unknownReference,
                                    "an environment of project `\(layout.name.rawValue)` (\(known))", enode)
                        ok = false
                    }
                }
                environments = set
            } else { ok = false }
        }
        let resources = f.take("resources").map { rnode in
            reader.list(rnode, at.key("resources"), "a list of resource or module addresses") { item, here -> String? in
                guard let text = reader.string(item, here, "a resource or module address") else { return nil }
                if let problem = ParityIgnore.addressProblem(text) {
                    reader.fail(here, .invalidValue, problem, item)
                    return nil
                }
                return text
            }
        } ?? []
        let variables = f.take("variables").map { vnode in
            reader.list(vnode, at.key("variables"), "a list of variable names") { item, here -> String? in
                guard let text = reader.string(item, here, "a variable name") else { return nil }
                guard ParityIgnore.isIdentifier(text) else {
                    reader.fail(here, .invalidValue, "a variable name (a letter or `_`, then letters, digits, `_`, `-`)", item)
                    return nil
                }
                return text
            }
        } ?? []
        var reason: String?
        if let rnode = f.take("reason") {
            reason = reader.string(rnode, at.key("reason"), "a short text saying why the difference is intended")
            if let text = reason, text.utf8.count > 1_024 || text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                reader.fail(at.key("reason"), .invalidValue, "one line of at most 1024 bytes without control characters", rnode)
                reason = nil
                ok = false
            }
            if reason == nil { ok = false }
        }
        f.finish(known: "project, environments, resources, variables, reason", classify: classify(environmentsAtTop: false))
        guard let resources, let variables else { return nil }
        if resources.isEmpty && variables.isEmpty {
            reader.fail(at, .missingKey, "`resources` and/or `variables`: what differs on purpose (an entry that names nothing declares nothing)", node)
            return nil
        }
        guard ok, let layout else { return nil }
        return ParityIgnore(project: layout.name, environments: environments, resources: resources, variables: variables, reason: reason)
    }
}
