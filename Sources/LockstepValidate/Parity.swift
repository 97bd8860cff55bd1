import LockstepConfig
import LockstepCore

/// Compares a project's environments: the variables their var files set, and the instances
/// their `count` and `for_each` expressions make. A difference that a `parity.ignore` entry of
/// `lockstep.yaml` covers is reported as intended and does not fail the step.
enum Parity {
    static func compare(project: ProjectName, policy: ParityPolicy, dir: String, environments layout: ProjectLayout,
                        variables: [EnvironmentName: [String: VarFileNames.Name]],
                        variableFiles: [EnvironmentName: [String: String]],
                        expansions: [InstanceProbe.Expansion], instances: [EnvironmentName: [Int: InstanceProbe.Value]],
                        unevaluated: [Unevaluated]) -> ParityReport {
        var report = ParityReport(unevaluated: unevaluated)

        // (a) Variables: only environments whose var files were all read take part.
        let readable = Set(variables.keys)
        if readable.count > 1 {
            let names = Set(variables.values.flatMap(\.keys)).sorted()
            for name in names {
                let present = readable.filter { variables[$0]?[name] != nil }
                let missing = readable.subtracting(present)
                guard !missing.isEmpty else { continue }
                // Point at the line that sets it (in the first environment that does): the
                // line exists, and the message names the environments that lack it.
                let setting = present.sorted().first
                let file = setting.flatMap { variableFiles[$0]?[name] }
                let line = setting.flatMap { variables[$0]?[name]?.line }
                report.differences.append(difference(.variable, name, .variable(name), present, missing,
                                                     project: project, policy: policy, file: file, line: line))
            }
        }

        // (b) Instances: per expansion, only environments where it evaluated take part.
        for (index, expansion) in expansions.enumerated() {
            var known: [EnvironmentName: [String]] = [:]
            var unknown: [(EnvironmentName, String)] = []
            for env in layout.environments.keys.sorted() {
                switch instances[env]?[index] {
                case .instances(let keys)?: known[env] = keys
                case .unknown(let reason)?: unknown.append((env, reason))
                case nil: continue
                }
            }
            for (env, reason) in unknown {
                report.unevaluated.append(Unevaluated(address: expansion.address, environment: env.rawValue, reason: reason,
                                                      file: joined(dir, expansion.file), line: expansion.line))
            }
            guard known.count > 1 else { continue }
            let considered = Set(known.keys)
            let addresses = Set(known.values.flatMap { $0 }).sorted { a, b in
                // [2] before [10]: numeric keys by value, string keys as text.
                let (x, y) = (Int(a.dropFirst().dropLast()), Int(b.dropFirst().dropLast()))
                if let x, let y { return x < y }
                return a < b
            }
            for key in addresses {
                let present = considered.filter { known[$0]?.contains(key) == true }
                let missing = considered.subtracting(present)
                guard !missing.isEmpty else { continue }
                let address = expansion.address + key
                report.differences.append(difference(expansion.kind == .module ? .module : .resource, address, .address(address),
                                                     present, missing, project: project, policy: policy,
                                                     file: joined(dir, expansion.file), line: expansion.line))
            }
        }
        return report
    }

    private static func difference(_ kind: ParityDifference.Kind, _ name: String, _ item: ParityItem,
                                   _ present: Set<EnvironmentName>, _ missing: Set<EnvironmentName>,
                                   project: ProjectName, policy: ParityPolicy, file: String?, line: Int?) -> ParityDifference {
        let rule = policy.rule(project: project, item: item, present: present, missing: missing)
        return ParityDifference(kind: kind, name: name, presentIn: present.map(\.rawValue).sorted(),
                                missingFrom: missing.map(\.rawValue).sorted(), intended: rule != nil,
                                reason: rule?.reason, file: file, line: line)
    }
}
