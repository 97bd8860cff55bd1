import Foundation
import LockstepConfig
import LockstepCore
import RunStore

/// The backend terraform resolved in a project folder after `init`: what `.terraform/terraform.tfstate`
/// records (type and the merged config, backend block and `-backend-config` files together) and
/// the selected workspace.
struct ResolvedBackend: Sendable, Hashable {
    var type: String
    /// Each setting as text (`true`/`false` for booleans, numbers as written); null settings absent.
    var settings: [String: String]
    var workspace: String

    /// Reads what `init` wrote in `directory`. `credentials` are the environment the command
    /// ran with: a `TF_WORKSPACE` there selects the workspace before `.terraform/environment`.
    static func read(_ directory: URL, credentials: [String: String]) throws(RunFailure) -> ResolvedBackend {
        let data = directory.appendingPathComponent(".terraform", isDirectory: true)
        let workspace: String
        if let selected = credentials["TF_WORKSPACE"] {
            workspace = selected
        } else if let text = try regularFile(data.appendingPathComponent("environment"), maxBytes: 1_024) {
            workspace = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            workspace = "default"
        }
        guard let stateFile = try regularFile(data.appendingPathComponent("terraform.tfstate"), maxBytes: 1 << 20) else {
            // No backend block: terraform's default local backend.
            return ResolvedBackend(type: "local", settings: ["path": "terraform.tfstate"], workspace: workspace)
        }
        guard let file = try? JSONDecoder().decode(BackendFile.self, from: stateFile), let backend = file.backend else {
            throw RunFailure("the backend terraform init resolved (.terraform/terraform.tfstate) could not be read")
        }
        let type = backend.type
        let settings = (backend.config ?? [:]).compactMapValues(\.text)
        return ResolvedBackend(type: type, settings: settings, workspace: workspace)
    }

    /// `.terraform/terraform.tfstate` as far as it is read here.
    private struct BackendFile: Decodable {
        struct Backend: Decodable {
            var type: String
            var config: [String: Setting]?
        }
        var backend: Backend?
    }

    /// One setting's value: a scalar as text, anything else (null, a list, a map) as nil.
    private struct Setting: Decodable {
        var text: String?

        init(from decoder: any Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let flag = try? value.decode(Bool.self) {
                text = flag ? "true" : "false"
            } else if let whole = try? value.decode(Int64.self) {
                text = String(whole)
            } else if let number = try? value.decode(Double.self) {
                text = String(number)
            } else {
                text = try? value.decode(String.self)
            }
        }
    }

    /// The bytes of a regular file (never through a symlink), nil when there is none.
    private static func regularFile(_ url: URL, maxBytes: Int) throws(RunFailure) -> Data? {
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return nil }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw RunFailure("\(url.lastPathComponent) in the run's .terraform folder is not a regular file")
        }
        guard info.st_size <= maxBytes, let data = FileManager.default.contents(atPath: url.path), data.count <= maxBytes else {
            throw RunFailure("\(url.lastPathComponent) in the run's .terraform folder is larger than expected")
        }
        return data
    }

    /// Every way this backend differs from `pin` (for `project`), or empty when it matches.
    func differences(from pin: BackendPin, project: String) -> [String] {
        func shown(_ text: String) -> String { "\"\(displaySafe(text, limit: 200))\"" }
        var differences: [String] = []
        if type != pin.type { differences.append("type is \(shown(type)), pinned \(shown(pin.type))") }
        for (key, expected) in pin.settings(for: project).sorted(by: { $0.key < $1.key }) {
            switch settings[key] {
            case expected?: continue
            case let actual?: differences.append("\(key) is \(shown(actual)), pinned \(shown(expected))")
            case nil: differences.append("\(key) is not set, pinned \(shown(expected))")
            }
        }
        for (key, actual) in settings.sorted(by: { $0.key < $1.key }) where pin.settings[key] == nil && !pin.unpinned.contains(key) {
            let value = BackendPin.isCredentialSetting(key) ? "(value not shown)" : shown(actual)
            differences.append("\(key) is set to \(value), which the pin neither names nor lists as unpinned")
        }
        if workspace != pin.workspace { differences.append("workspace is \(shown(workspace)), pinned \(shown(pin.workspace))") }
        return differences
    }
}

extension Gate {
    /// docs/CONTRACT.md §2 `backend:`: refuses the run when the backend terraform resolved in
    /// `directory` is not the one the agent pins for the environment. Called after `init` and
    /// before any command that reads or writes state (plan; the state check and apply).
    nonisolated func checkBackendPin(_ run: StoredRun, directory: URL, credentials: [String: String],
                                     before command: String) throws(RunFailure) {
        guard let pin = agent.environments[run.target.environment]?.backendPin else { return }
        let resolved = try ResolvedBackend.read(directory, credentials: credentials)
        let differences = resolved.differences(from: pin, project: run.target.project.rawValue)
        guard !differences.isEmpty else { return }
        throw RunFailure("the backend terraform resolved is not the one the agent config pins for \(run.target.environment): "
                         + differences.joined(separator: "; ") + "; \(command) was not started")
    }
}
