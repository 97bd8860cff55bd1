import Crypto
import Foundation
import Testing
@testable import LockstepValidate

/// The CI formats, byte for byte: what GitHub and GitLab parse must not be broken by a file
/// name or a message from the repository.
@Suite("lockstep validate output formats")
struct FormatTests {
    /// A report with a validation error whose text holds every character the formats escape,
    /// a file name with `:` and `,`, an undeclared and a declared difference, and a note.
    static let report = ValidationReport(checkout: ".", tool: "terraform 1.0.3", projects: [
        ProjectReport(project: "app", dir: "app", environments: [
            EnvironmentReport(environment: "dev", varFiles: ["app/envs/dev.tfvars"], findings: [
                Finding(severity: .error, check: .validate, file: "app/a:b,c.tf", line: 3, message: "100% wrong"),
            ]),
            EnvironmentReport(environment: "prod", varFiles: ["app/envs/prod.tfvars"]),
        ], parity: ParityReport(differences: [
            ParityDifference(kind: .variable, name: "region", presentIn: ["dev"], missingFrom: ["prod"], file: "app/envs/dev.tfvars", line: 1),
            ParityDifference(kind: .resource, name: "null_resource.waf[0]", presentIn: ["prod"], missingFrom: ["dev"], intended: true,
                             reason: "paid for in prod", file: "app/main.tf", line: 14),
        ], unevaluated: [
            Unevaluated(address: "null_resource.after", environment: "dev", reason: "its value is known only after apply", file: "app/main.tf", line: 20),
        ])),
    ])

    @Test("a message can hold no newline: it is made one line before any format sees it")
    func oneLine() {
        #expect(Finding.oneLine("a\r\nb\n\n\tc\u{1B}[31m") == "a b c\u{FFFD}[31m")
        #expect(Finding(severity: .error, check: .validate, message: "x\ny").message == "x y")
    }

    @Test("GitHub workflow commands: data escapes %, CR and LF; properties also : and ,")
    func github() {
        #expect(ValidationReport.githubData("100% done\r\nnext") == "100%25 done%0D%0Anext")
        #expect(ValidationReport.githubProperty("a:b,c%\n") == "a%3Ab%2Cc%25%0A")
        #expect(Self.report.github() == """
        ::error file=app/a%3Ab%2Cc.tf,line=3,title=lockstep validate%3A validate::app/dev: 100%25 wrong
        ::error file=app/envs/dev.tfvars,line=1,title=lockstep validate%3A parity_variable::app: variable region is set in dev but not in prod
        ::notice file=app/main.tf,line=14,title=lockstep validate%3A parity_resource::app: resource null_resource.waf[0] exists in prod but not in dev (declared intended in lockstep.yaml: paid for in prod)
        ::warning file=app/main.tf,line=20,title=lockstep validate%3A parity_unevaluated::app: the instances of null_resource.after in dev are not compared: its value is known only after apply
        lockstep validate: failed

        """)
    }

    @Test("GitLab Code Quality: an array of issues with the documented fields and stable fingerprints")
    func gitlab() throws {
        func fingerprint(_ parts: String...) -> String {
            SHA256.hash(data: Data(parts.joined(separator: "\u{0}").utf8)).map { String(format: "%02x", $0) }.joined()
        }
        let expected = """
        [
          {
            "check_name" : "lockstep-validate/validate",
            "description" : "app/dev: 100% wrong",
            "fingerprint" : "\(fingerprint("validate", "app/a:b,c.tf", "3", "app/dev: 100% wrong"))",
            "location" : {
              "lines" : {
                "begin" : 3
              },
              "path" : "app/a:b,c.tf"
            },
            "severity" : "critical"
          },
          {
            "check_name" : "lockstep-validate/parity_variable",
            "description" : "app: variable region is set in dev but not in prod",
            "fingerprint" : "\(fingerprint("parity_variable", "app/envs/dev.tfvars", "1", "app: variable region is set in dev but not in prod"))",
            "location" : {
              "lines" : {
                "begin" : 1
              },
              "path" : "app/envs/dev.tfvars"
            },
            "severity" : "major"
          },
          {
            "check_name" : "lockstep-validate/parity_resource",
            "description" : "app: resource null_resource.waf[0] exists in prod but not in dev (declared intended in lockstep.yaml: paid for in prod)",
            "fingerprint" : "\(fingerprint("parity_resource", "app/main.tf", "14", "app: resource null_resource.waf[0] exists in prod but not in dev (declared intended in lockstep.yaml: paid for in prod)"))",
            "location" : {
              "lines" : {
                "begin" : 14
              },
              "path" : "app/main.tf"
            },
            "severity" : "info"
          },
          {
            "check_name" : "lockstep-validate/parity_unevaluated",
            "description" : "app: the instances of null_resource.after in dev are not compared: its value is known only after apply",
            "fingerprint" : "\(fingerprint("parity_unevaluated", "app/main.tf", "20", "app: the instances of null_resource.after in dev are not compared: its value is known only after apply"))",
            "location" : {
              "lines" : {
                "begin" : 20
              },
              "path" : "app/main.tf"
            },
            "severity" : "minor"
          }
        ]

        """
        #expect(Self.report.gitlab() == expected)
        // And it is JSON GitLab can read: every issue has the five fields.
        let issues = try #require(try JSONSerialization.jsonObject(with: Data(Self.report.gitlab().utf8)) as? [[String: Any]])
        #expect(issues.allSatisfy { Set($0.keys) == ["check_name", "description", "fingerprint", "location", "severity"] })
    }

    @Test("a problem with no file is placed on lockstep.yaml, line 1, in GitLab; without file= in GitHub")
    func noFile() {
        let report = ValidationReport(checkout: "x", inputErrors: ["x: no such directory"])
        #expect(report.github() == "::error title=lockstep validate%3A input::x: no such directory\nlockstep validate: bad input\n")
        #expect(report.gitlab().contains("\"path\" : \"lockstep.yaml\""))
    }

    @Test("the JSON report has a stable shape with the exit status in it")
    func json() throws {
        let text = Self.report.json()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(Set(object.keys) == ["checkout", "exit_status", "input_errors", "projects", "tool", "validate_per_environment"])
        #expect(object["exit_status"] as? Int == 1)
        let project = try #require((object["projects"] as? [[String: Any]])?.first)
        #expect(Set(project.keys) == ["dir", "environments", "parity", "project"])
        let env = try #require((project["environments"] as? [[String: Any]])?.first)
        #expect(Set(env.keys) == ["environment", "findings", "var_files"])
        let parity = try #require(project["parity"] as? [String: Any])
        let difference = try #require((parity["differences"] as? [[String: Any]])?.last)
        #expect(Set(difference.keys) == ["file", "intended", "kind", "line", "missing_from", "name", "present_in", "reason"])
        #expect(try JSONDecoder().decode(ValidationReport.self, from: Data(text.utf8)) == Self.report)
    }
}
