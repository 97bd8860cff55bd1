import Testing
@testable import LockstepValidate

/// The var-file and configuration scanner: only the outline of a file is read, and every
/// construct that can hide a `=`, a newline or a brace is stepped over, never misread as a
/// new variable.
@Suite("HCL scanner: var file names and count/for_each expressions")
struct ScannerTests {
    private func names(_ text: String, file: String = "x.tfvars") throws -> [String] {
        try VarFileNames.names(in: text, file: file).map(\.name)
    }

    @Test("strings holding `=`, `#`, `//`, braces and escaped quotes set one variable each")
    func stringsHideSyntax() throws {
        let text = #"""
        a = "x = y # not a comment // nor this { [ ("
        b = "she said \"c = 1\""
        c = "${lookup(var.m, "k = v", "}")} and %{ if true }d = 2%{ endif }"
        d = "$${e = 3} %%{f = 4}"
        """#
        #expect(try names(text) == ["a", "b", "c", "d"])
    }

    @Test("heredocs (plain and indented) hide every line up to their delimiter")
    func heredocs() throws {
        let text = """
        policy = <<EOT
        not_a_variable = 1
          EOT_IS_NOT_THE_END = 2
        EOT
        indented = <<-JSON
            {"x = 1": "}"}
            JSON
        after = true
        """
        #expect(try VarFileNames.names(in: text, file: "x.tfvars") == [
            VarFileNames.Name(name: "policy", line: 1), VarFileNames.Name(name: "indented", line: 5), VarFileNames.Name(name: "after", line: 8),
        ])
    }

    @Test("nested maps and lists over many lines are one value; comments of all three kinds are skipped")
    func nestingAndComments() throws {
        let text = """
        # leading = comment
        // another = comment
        /* block
           hidden = 1 */
        tags = {
          Name  = "web" # trailing = comment
          inner = { deep = [1, { deeper = "]" }] }
          "quoted key" = 2
        }
        list = [
          "a", // x = 1
          /* y = 2 */ "b",
        ]
        last = 1 /* inline */
        """
        #expect(try names(text) == ["tags", "list", "last"])
    }

    @Test("a tfvars.json file's top-level keys are its variable names")
    func jsonVarFile() throws {
        #expect(try names(#"{"b": {"nested": 1}, "a": "x = 1"}"#, file: "prod.tfvars.json") == ["a", "b"])
        #expect(throws: HCLScanner.Failure.self) { try names("[1, 2]", file: "prod.tfvars.json") }
    }

    @Test("broken var files are errors with the line where they went wrong", arguments: [
        ("a = 1\nb = \"open\n", 2),
        ("a = 1\nb = [1,\n2\n", 2),
        ("a = 1\nb = <<EOT\nnever closed\n", 2),
        ("a = 1\n\nb = 2 )\n", 3),
        ("a = 1\nblock {\n}\n", 2),
        ("a = 1\na = 2\n", 2),
        ("a = \n", 1),
        ("= 1\n", 1),
    ])
    func brokenFiles(text: String, line: Int) throws {
        let failure = #expect(throws: HCLScanner.Failure.self) { try VarFileNames.names(in: text, file: "x.tfvars") }
        #expect(failure?.line == line, "\(failure?.message ?? "")")
    }

    @Test("count and for_each of root resources, data sources and module calls are found, override files last")
    func expansions() throws {
        let scanner = HCLScanner("""
        resource "null_resource" "waf" {
          count = var.enable_waf ? 1 : 0 # trailing comment
          triggers = { a = "count = 9" }
        }
        resource "null_resource" "plain" {}
        data "null_data_source" "d" { for_each = toset(["a"]) }
        module "cdn" {
          source   = "./cdn"
          for_each = {
            eu = 1
            us = 2
          }
          nested { count = 3 }
        }
        """)
        var found: [(String, String, String)] = []
        for item in try scanner.items() {
            guard case let .block(labels, body) = item.kind else { continue }
            for attribute in try scanner.items(in: body) {
                if case let .attribute(value) = attribute.kind, ["count", "for_each"].contains(attribute.name) {
                    found.append((([item.name] + labels).joined(separator: "."), attribute.name, scanner.text(value)))
                }
            }
        }
        #expect(found.map(\.0) == ["resource.null_resource.waf", "data.null_data_source.d", "module.cdn"])
        #expect(found.map(\.2) == ["var.enable_waf ? 1 : 0 # trailing comment", "toset([\"a\"])", "{\n    eu = 1\n    us = 2\n  }"])
    }

    @Test("the probe evaluates what console prints: base64 JSON values, unknowns and sensitives")
    func probeParsing() {
        let expansions = [
            InstanceProbe.Expansion(address: "null_resource.a", kind: .resource, meta: .count, expression: "1", file: "main.tf", line: 1),
            InstanceProbe.Expansion(address: "module.b", kind: .module, meta: .forEach, expression: "x", file: "main.tf", line: 2),
            InstanceProbe.Expansion(address: "null_resource.c", kind: .resource, meta: .count, expression: "x", file: "main.tf", line: 3),
            InstanceProbe.Expansion(address: "null_resource.d", kind: .resource, meta: .count, expression: "x", file: "main.tf", line: 4),
        ]
        // base64 of `2` and of `["eu","q\"x"]`.
        let output = """
        {
          "e0" = "Mg=="
          "e1" = "WyJldSIsInFcIngiXQ=="
          "e2" = (known after apply)
          "e3" = (sensitive)
        }
        """
        #expect(InstanceProbe.parse(output, expansions: expansions) == [
            .instances(["[0]", "[1]"]), .instances(["[\"eu\"]", "[\"q\\\"x\"]"]),
            .unknown("its value is known only after apply"), .unknown("its value is sensitive"),
        ])
    }
}
