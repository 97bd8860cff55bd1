import Foundation
import LockstepCore
import NameLiterals
import Testing
@testable import LockstepValidate

/// `lockstep validate` against delivery checkouts written by each test, with the real
/// Terraform 1.0.3 and null provider: what CI sees on a pull request.
@Suite("lockstep validate with terraform 1.0.3")
struct ValidateTests {
    @Test("a clean three-environment repo passes, and the scratch copies are gone afterwards")
    func cleanRepoPasses() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch())
        let report = try await repo.validate()
        #expect(report.inputErrors == [])
        #expect(report.tool == "terraform 1.0.3")
        #expect(report.validatePerEnvironment == false)
        #expect(report.projects.map(\.project) == ["app"])
        #expect(report.projects.first?.environments.map(\.environment) == ["dev", "prod", "staging"])
        #expect(report.findingLines == [])
        #expect(report.differences == [])
        #expect(report.unevaluated == [])
        #expect(report.exitStatus == 0)
        #expect(repo.leftovers == [])
    }

    @Test("a validation error is reported with its file and line in every environment, and fails")
    func validationError() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), mainTF: DeliveryRepo.mainTF + """
        resource "null_resource" "broken" {
          no_such_argument = 1
        }

        """)
        let report = try await repo.validate()
        #expect(report.exitStatus == 1)
        let line = DeliveryRepo.mainTF.split(separator: "\n", omittingEmptySubsequences: false).count + 1
        for env in ["dev", "prod", "staging"] {
            #expect(report.findingLines.contains {
                $0.hasPrefix("app/\(env) validate app/main.tf:\(line) Unsupported argument: An argument named \"no_such_argument\" is not expected here.")
            }, "\(report.findingLines)")
        }
        // The probe does not run on a configuration that does not validate: nothing is compared.
        #expect(report.differences == [])
    }

    @Test("a syntax error names the file and line terraform found it at")
    func syntaxError() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), extraFiles: ["app/broken.tf": "locals {\n  a = 1\n  b = \"open\n}\n"])
        let report = try await repo.validate()
        #expect(report.exitStatus == 1)
        let finding = try #require(report.projects.first?.environments.first?.findings.first)
        #expect(finding.severity == .error)
        #expect(finding.check == .validate)
        #expect(finding.file == "app/broken.tf")
        #expect(finding.line == 3)
        // The probe's own scanner says which file it skipped, once, without calling it a difference.
        let skipped = report.unevaluated.filter { $0.address == Unevaluated.everything }
        #expect(skipped.map(\.message) == [
            "the count and for_each expressions of this file are not compared: a quoted string is not closed on its line (the probe could not read this file)",
        ])
        #expect(skipped.first?.file == "app/broken.tf")
        #expect(skipped.first?.line == 3)
        #expect(report.differences == [])
    }

    @Test("a module whose source is missing fails init; the finding still names the module call's file and line")
    func missingModule() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), extraFiles: ["app/modules.tf": "\nmodule \"gone\" {\n  source = \"./modules/gone\"\n}\n"])
        let report = try await repo.validate()
        #expect(report.exitStatus == 1)
        let finding = try #require(report.projects.first?.environments.first?.findings.first)
        #expect(finding.check == .validate)
        #expect(finding.file == "app/modules.tf")
        #expect(finding.line == 2)
    }

    @Test("an environment whose var files miss a variable the others set is a parity difference")
    func missingVariable() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["prod": "enable_waf = false\n"])
        let report = try await repo.validate()
        #expect(report.findingLines == [])
        #expect(report.differences == [
            ParityDifference(kind: .variable, name: "region", presentIn: ["dev", "staging"], missingFrom: ["prod"],
                             file: "app/envs/dev.tfvars", line: 1),
        ])
        #expect(report.exitStatus == 1)
    }

    @Test("a misspelt variable is a warning on its line, and the parity report shows both names")
    func misspeltVariable() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["prod": "region     = \"eu-west-1\"\nenable_wfa = true\n"])
        let report = try await repo.validate()
        #expect(report.findingLines == [
            "app/prod var_file app/envs/prod.tfvars:2 variable enable_wfa is set here but the project declares no such variable (terraform ignores the value)",
        ])
        #expect(report.projects.first?.environments.first { $0.environment == "prod" }?.findings.first?.severity == .warning)
        #expect(report.differences.map { "\($0.name): \($0.presentIn) \($0.missingFrom)" } == [
            "enable_waf: [\"dev\", \"staging\"] [\"prod\"]", "enable_wfa: [\"prod\"] [\"dev\", \"staging\"]",
        ])
        #expect(report.exitStatus == 1)
    }

    @Test("a resource whose count a variable turns on in prod only is reported, with the block's line")
    func countOnlyInProd() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["prod": "region = \"eu-west-1\"\nenable_waf = true\n"])
        let report = try await repo.validate()
        #expect(report.findingLines == [])
        #expect(report.differences == [
            ParityDifference(kind: .resource, name: "null_resource.waf[0]", presentIn: ["prod"], missingFrom: ["dev", "staging"],
                             file: "app/main.tf", line: 14),
        ])
        #expect(report.exitStatus == 1)
        #expect(report.human().contains("app/main.tf:14: error: resource null_resource.waf[0] exists in prod but not in dev, staging"))
    }

    /// A terraform on PATH other than the pinned one (1.11.4 on some machines): the probe reads
    /// console's printing, which must parse the same way in later versions.
    static let otherTerraform: URL? = {
        guard let found = ValidationOptions.resolveExecutable("terraform", searchPath: ProcessInfo.processInfo.environment["PATH"]),
              found.resolvingSymlinksInPath().path != Paths.root.appendingPathComponent(".tools/terraform/bin/terraform").resolvingSymlinksInPath().path
        else { return nil }
        return found
    }()

    @Test("a later terraform from PATH finds the same prod-only count", .enabled(if: otherTerraform != nil, "no other terraform on PATH"))
    func laterTerraform() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["prod": "region = \"eu-west-1\"\nenable_waf = true\n"])
        let report = try await repo.validate(terraform: try #require(Self.otherTerraform).path)
        #expect(report.tool?.hasPrefix("terraform ") == true)
        #expect(report.findingLines == [])
        #expect(report.differences.map(\.name) == ["null_resource.waf[0]"])
        #expect(report.exitStatus == 1)
    }

    @Test("the same difference declared intended in lockstep.yaml passes, and says so")
    func declaredDifferencePasses() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["prod": "region = \"eu-west-1\"\nenable_waf = true\ndebug = 0\n"], parity: """
        parity:
          ignore:
            - project: app
              environments: [prod]
              resources: [null_resource.waf]
              variables: [debug]
              reason: the WAF is paid for in prod only

        """)
        let report = try await repo.validate()
        #expect(report.differences.map(\.name) == ["debug", "null_resource.waf[0]"])
        #expect(report.differences.allSatisfy { $0.intended && $0.reason == "the WAF is paid for in prod only" })
        #expect(report.exitStatus == 0)
        #expect(report.github().contains("::notice file=app/main.tf,line=14,title=lockstep validate%3A parity_resource::app: resource null_resource.waf[0] exists in prod but not in dev, staging (declared intended in lockstep.yaml: the WAF is paid for in prod only)"))
    }

    @Test("module calls with for_each are compared by instance; expressions known only after apply are noted, never differences")
    func modulesAndUnknowns() async throws {
        let main = DeliveryRepo.mainTF + """
        variable "regions" {
          type    = list(string)
          default = []
        }

        module "regional" {
          source   = "./modules/regional"
          for_each = toset(var.regions)
        }

        resource "null_resource" "after" {
          count = null_resource.app.id == "" ? 0 : 1
        }

        """
        let repo = try DeliveryRepo(scratch: try Scratch(), mainTF: main, vars: [
            "dev": "region = \"eu\"\nregions = [\"eu\"]\n",
            "staging": "region = \"eu\"\nregions = [\"eu\"]\n",
            "prod": "region = \"eu\"\nregions = [\"eu\", \"us\"]\n",
        ], extraFiles: ["app/modules/regional/main.tf": "resource \"null_resource\" \"here\" {}\n"])
        let report = try await repo.validate()
        #expect(report.findingLines == [])
        #expect(report.differences.map(\.name) == ["module.regional[\"us\"]"])
        #expect(report.differences.first?.kind == .module)
        #expect(report.differences.first?.presentIn == ["prod"])
        #expect(report.unevaluated.map(\.address) == ["null_resource.after", "null_resource.after", "null_resource.after"])
        #expect(report.unevaluated.first?.reason == "its value is known only after apply")
        #expect(report.exitStatus == 1)
    }

    /// The pinned terraform, and a later one from PATH when there is one.
    static var tools: [String?] { [nil] + (otherTerraform.map { [$0.path] } ?? []) }

    @Test("a tool whose validate takes -var-file validates each environment with its own var files")
    func perEnvironmentValidation() async throws {
        let scratch = try Scratch()
        let repo = try DeliveryRepo(scratch: scratch)
        // A stand-in for OpenTofu >= 1.8: terraform 1.0.3 behind a script whose `validate -help`
        // offers -var-file, which logs each validate and drops the option terraform lacks.
        let log = scratch.url.appendingPathComponent("validate.log")
        let wrapper = try scratch.write("tofu-like", """
        #!/bin/bash
        if [ "$1" = validate ] && [ "$2" = -help ]; then echo "  -var-file=filename  Load variable values from the given file."; exit 0; fi
        if [ "$1" = validate ]; then
          args=()
          for a in "$@"; do case "$a" in -var-file=*) echo "${a##*/}" >> '\(log.path)' ;; *) args+=("$a") ;; esac; done
          exec '\(try Paths.terraform().path)' "${args[@]}"
        fi
        exec '\(try Paths.terraform().path)' "$@"

        """)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
        let report = try await repo.validate(terraform: wrapper.path)
        #expect(report.validatePerEnvironment)
        #expect(report.exitStatus == 0, "\(report.findingLines) \(report.inputErrors)")
        let logged = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").sorted()
        #expect(logged == ["dev.tfvars", "prod.tfvars", "staging.tfvars"])
    }

    @Test("an expression that fails to evaluate in one environment leaves only itself unevaluated there, with terraform's error",
          arguments: tools)
    func failingExpression(terraform: String?) async throws {
        let main = DeliveryRepo.mainTF + """
        variable "names" {
          type    = list(string)
          default = []
        }

        resource "null_resource" "named" {
          count = length(var.names)
        }

        """
        let repo = try DeliveryRepo(scratch: try Scratch(), mainTF: main, vars: [
            "dev": "region = \"eu\"\nnames = null\n",
            "staging": "region = \"eu\"\nnames = [\"a\"]\n",
            "prod": "region = \"eu\"\nnames = [\"a\"]\nenable_waf = true\n",
        ])
        let report = try await repo.validate(terraform: terraform)
        #expect(report.findingLines == [])
        #expect(report.unevaluated.map { "\($0.environment) \($0.address)" } == ["dev null_resource.named"])
        let reason = try #require(report.unevaluated.first?.reason)
        #expect(reason.hasPrefix("terraform console could not evaluate it: Invalid function argument: "), "\(reason)")
        #expect(reason.contains("argument must not be null"), "\(reason)")
        // The other expression still evaluated in dev: the WAF difference is found.
        #expect(report.differences.map(\.name) == ["enable_waf", "null_resource.waf[0]"])
    }

    @Test("an override file's count replaces the original's, as in terraform")
    func overrideFiles() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["prod": "region = \"eu-west-1\"\nenable_waf = true\n"],
                                    extraFiles: ["app/waf_override.tf": "resource \"null_resource\" \"waf\" {\n  count = 1\n}\n"])
        let report = try await repo.validate()
        #expect(report.findingLines == [])
        #expect(report.differences == [])
        #expect(report.exitStatus == 0)
    }

    @Test("a symbolic link leaving the checkout is not followed, and is an error in every environment",
          arguments: [DeliveryRepo.mainTF, "resource \"null_resource\" \"only\" {}\n"])
    func escapingSymlink(mainTF: String) async throws {
        // With no count or for_each, only the first environment is copied and run; the others share its findings.
        let repo = try DeliveryRepo(scratch: try Scratch(), mainTF: mainTF)
        try FileManager.default.createSymbolicLink(atPath: repo.root.appendingPathComponent("app/leak.tf").path, withDestinationPath: "/etc/hostname")
        let report = try await repo.validate()
        for env in ["dev", "prod", "staging"] {
            #expect(report.findingLines.filter { $0.hasPrefix("app/\(env) copy") }
                == ["app/\(env) copy app/leak.tf:- a symbolic link that leads outside the checkout (or nowhere) is not followed"])
        }
        #expect(report.exitStatus == 1)
        #expect(repo.leftovers == [])
    }

    @Test("a broken var file is an error at its line, and that environment's variables are not compared")
    func brokenVarFile() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch(), vars: ["staging": "region = \"eu\"\nenable_waf = [\n"])
        let report = try await repo.validate()
        #expect(report.findingLines.contains("app/staging var_file app/envs/staging.tfvars:2 a `[` is never closed"))
        #expect(report.differences == [])
        #expect(report.exitStatus == 1)
    }

    @Test("--project validates that project only")
    func oneProject() async throws {
        let repo = try DeliveryRepo(scratch: try Scratch())
        try repo.write("lockstep.yaml", "projects:\n  app:\n    dir: app\n    environments:\n      dev:\n        var_files: [app/envs/dev.tfvars]\n"
                       + "  other:\n    dir: other\n    environments:\n      dev:\n")
        try repo.write("other/main.tf", "resource \"null_resource\" \"x\" {\n  nope = 1\n}\n")
        let report = try await repo.validate(project: "app")
        #expect(report.projects.map(\.project) == ["app"])
        #expect(report.exitStatus == 0)
        let all = try await repo.validate()
        #expect(all.projects.map(\.project) == ["app", "other"])
        #expect(all.exitStatus == 1)
    }

    struct BadInput: Sendable, CustomTestStringConvertible {
        var name: String
        var change: @Sendable (DeliveryRepo) throws -> Void
        var project: ProjectName?
        var terraform: String?
        var expected: String
        var testDescription: String { name }
    }

    static let badInputs: [BadInput] = [
        BadInput(name: "no such folder", change: { try FileManager.default.removeItem(at: $0.root) },
                 expected: "checkout: no such directory"),
        BadInput(name: "no lockstep.yaml", change: { try FileManager.default.removeItem(at: $0.root.appendingPathComponent("lockstep.yaml")) },
                 expected: "checkout: no lockstep.yaml at its root"),
        BadInput(name: "an invalid lockstep.yaml", change: { try $0.write("lockstep.yaml", "projects:\n  app:\n    dir: app\n    environments:\n      dev:\n        approvals: 0\n") },
                 expected: "lockstep.yaml: projects.app.environments.dev.approvals: expected no `approvals` here"),
        BadInput(name: "an invalid parity declaration", change: { try $0.write("lockstep.yaml", "projects:\n  app:\n    dir: app\n    environments:\n      dev:\nparity:\n  ignore:\n    - {project: web, variables: [x]}\n") },
                 expected: "lockstep.yaml: parity.ignore[0].project: expected the name of a project under `projects` (app)"),
        BadInput(name: "a var file that is not there", change: { try FileManager.default.removeItem(at: $0.root.appendingPathComponent("app/envs/prod.tfvars")) },
                 expected: "lockstep.yaml: projects.app.environments.prod.var_files[0]: expected a path that exists"),
        BadInput(name: "an unknown project", change: { _ in }, project: "web", expected: "--project web: no such project in lockstep.yaml (app)"),
        BadInput(name: "no terraform binary", change: { _ in }, terraform: "/nonexistent/terraform",
                 expected: "--terraform /nonexistent/terraform: no executable terraform or tofu binary at that path"),
    ]

    @Test("bad input exits 2 and names what was wrong", arguments: badInputs)
    func badInput(input: BadInput) async throws {
        let repo = try DeliveryRepo(scratch: try Scratch())
        try input.change(repo)
        let report = try await repo.validate(project: input.project, terraform: input.terraform)
        #expect(report.exitStatus == 2)
        #expect(report.inputErrors.contains { $0.contains(input.expected) }, "\(report.inputErrors)")
        #expect(report.projects == [])
        #expect(report.human().hasSuffix("bad input\n"))
    }
}
