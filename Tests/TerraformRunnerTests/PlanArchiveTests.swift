import Foundation
import LockstepCore
import Testing
@testable import TerraformRunner

@Suite("Reading the prior state from a saved plan")
struct PlanArchiveTests {
    /// A zip with one entry, stored or deflated, written by Python's zipfile: the reader meets
    /// what another zip writer makes, not only terraform's.
    private func zip(_ name: String, _ contents: String, deflate: Bool) throws -> Data {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lsz-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(contents.utf8).write(to: folder.appendingPathComponent(name))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", """
            import sys, zipfile
            with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED if sys.argv[3] == "1" else zipfile.ZIP_STORED) as z:
                z.write(sys.argv[2], sys.argv[4])
            """, folder.appendingPathComponent("out.zip").path, folder.appendingPathComponent(name).path,
            deflate ? "1" : "0", name]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        return try Data(contentsOf: folder.appendingPathComponent("out.zip"))
    }

    private let state = """
        {
          "version": 4,
          "terraform_version": "1.0.3",
          "serial": 7,
          "lineage": "0b6b7c3e-1d2f-4e3a-9f00-6a1e2b3c4d5e",
          "outputs": {"fake": {"value": "\\"serial\\": 99, \\"lineage\\": \\"evil\\""}},
          "resources": []
        }
        """

    @Test("the lineage and serial come from the tfstate entry, stored or deflated; values after them cannot forge them")
    func readsPriorState() throws {
        for deflate in [false, true] {
            let plan = try zip("tfstate", state + String(repeating: " ", count: 200_000), deflate: deflate)
            let prior = try PlanArchive.priorState(of: plan)
            #expect(prior == StateBinding(lineage: "0b6b7c3e-1d2f-4e3a-9f00-6a1e2b3c4d5e", serial: 7))
        }
    }

    @Test("no state is an empty lineage and serial 0; empty state pull output is no state")
    func noState() throws {
        let empty = #"{"version": 4, "terraform_version": "1.0.3", "serial": 0, "lineage": "", "outputs": {}, "resources": []}"#
        #expect(try PlanArchive.priorState(of: zip("tfstate", empty, deflate: true)) == .none)
        #expect(try PlanArchive.stateHead(Data(), what: "x") == .none)
        #expect(try PlanArchive.stateHead(Data("\n".utf8), what: "x") == .none)
    }

    @Test("what is not a plan is refused with a reason", arguments: [
        ("not a zip", "no end of central directory"),
        ("no tfstate", "no tfstate entry"),
        ("no lineage", "has no lineage"),
        ("odd lineage", "not terraform's"),
    ])
    func refusals(name: String, reason: String) throws {
        let plan: Data
        switch name {
        case "not a zip": plan = Data(String(repeating: "x", count: 100).utf8)
        case "no tfstate": plan = try zip("tfplan", state, deflate: true)
        case "no lineage": plan = try zip("tfstate", #"{"version": 4, "serial": 3, "outputs": {}}"#, deflate: false)
        default: plan = try zip("tfstate", #"{"serial": 3, "lineage": "a\"b<script>", "outputs": {}}"#, deflate: false)
        }
        let error = try #require(throws: TerraformRunnerError.self) { try PlanArchive.priorState(of: plan) }
        #expect(error.description.contains(reason), "\(error.description)")
    }
}
