import Foundation
import LockstepCore
import LockstepValidate
import Logging
import Testing

enum Paths {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// The pinned Terraform 1.0.3 (`scripts/install-terraform.sh`).
    static func terraform() throws -> URL {
        let url = root.appendingPathComponent(".tools/terraform/bin/terraform")
        try #require(FileManager.default.isExecutableFile(atPath: url.path),
                     "Terraform 1.0.3 is not installed at \(url.path): run scripts/install-terraform.sh")
        return url
    }

    /// The null provider's filesystem mirror.
    static var mirror: URL { root.appendingPathComponent(".tools/terraform/mirror") }
}

/// A scratch folder for one test, removed when the value goes away.
final class Scratch: @unchecked Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-validate-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes `text` at `relative` (folders created).
    @discardableResult
    func write(_ relative: String, _ text: String) throws -> URL {
        let file = url.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
        return file
    }

    /// A CLI config that installs providers only from the pinned mirror, as CI would name its own.
    func cliConfig() throws -> URL {
        try write("cli.tfrc", "provider_installation {\n  filesystem_mirror {\n    path = \"\(Paths.mirror.path)\"\n  }\n}\n")
    }
}

/// A delivery repository checkout written by a test: project `app` in `app/`, environments
/// dev, staging and prod, each with `app/envs/ENV.tfvars`.
struct DeliveryRepo {
    let scratch: Scratch
    var root: URL { scratch.url.appendingPathComponent("checkout") }

    static let mainTF = """
    variable "region" {
      type = string
    }

    variable "enable_waf" {
      type    = bool
      default = false
    }

    resource "null_resource" "app" {
      triggers = { region = var.region }
    }

    resource "null_resource" "waf" {
      count = var.enable_waf ? 1 : 0 # a WAF where the environment asks for one
    }

    """

    /// - Parameters:
    ///   - vars: each environment's var file text (default: the same region, no WAF).
    ///   - parity: a `parity:` section for lockstep.yaml.
    init(scratch: Scratch, mainTF: String = DeliveryRepo.mainTF, vars: [String: String] = [:], parity: String = "",
         extraFiles: [String: String] = [:]) throws {
        self.scratch = scratch
        var yaml = "projects:\n  app:\n    dir: app\n    environments:\n"
        for env in ["dev", "staging", "prod"] {
            yaml += "      \(env):\n        var_files: [app/envs/\(env).tfvars]\n"
            try write("app/envs/\(env).tfvars", vars[env] ?? "region     = \"eu-west-1\"\nenable_waf = false\n")
        }
        try write("lockstep.yaml", yaml + parity)
        try write("app/main.tf", mainTF)
        for (path, text) in extraFiles { try write(path, text) }
    }

    func write(_ relative: String, _ text: String) throws {
        try scratch.write("checkout/" + relative, text)
    }

    /// Runs the validation with the pinned terraform and the mirror, its scratch folders under
    /// `scratch/work` so a test can see they are gone afterwards.
    func validate(project: ProjectName? = nil, terraform: String? = nil) async throws -> ValidationReport {
        var logger = Logger(label: "test.validate")
        logger.logLevel = .warning
        let options = ValidationOptions(terraform: try terraform ?? Paths.terraform().path, cliConfig: try scratch.cliConfig(), project: project,
                                        commandTimeout: .seconds(300), scratchParent: scratch.url.appendingPathComponent("work"))
        return await LockstepValidate.validate(checkout: root.path, options: options, logger: logger)
    }

    /// What is left in the validation's scratch parent (nothing, after a validation).
    var leftovers: [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: scratch.url.appendingPathComponent("work").path)) ?? []
    }
}

extension ValidationReport {
    /// Every finding of every environment, as `project/env check file:line message`.
    var findingLines: [String] {
        projects.flatMap { project in
            project.environments.flatMap { env in
                env.findings.map { "\(project.project)/\(env.environment) \($0.check.rawValue) \($0.file ?? "-"):\($0.line.map(String.init) ?? "-") \($0.message)" }
            }
        }
    }

    var differences: [ParityDifference] { projects.flatMap(\.parity.differences) }
    var unevaluated: [Unevaluated] { projects.flatMap(\.parity.unevaluated) }
}
