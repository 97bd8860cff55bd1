import Foundation
import Testing

/// The review UI in a real headless Chromium against the running daemon (docs/CONTRACT.md §5,
/// "Review UI"): Tests/Browser/review_ui.py signs in as a reviewer who may not approve dev and as
/// one who may, and goes board → pending run → approve → verified; the release's tag message
/// holds markup that must show as text. Screenshots are kept in
/// `.build/browser-artifacts/` (the README shows copies from docs/screenshots/).
@Suite("The review UI in a real browser", .serialized)
struct BrowserTests {
    @Test("sign-in → board → pending run → approve → verified; no approve button for a reviewer of another environment; a tag message with <script> is text")
    func approveInTheBrowser() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try await world.startReadyDaemon()
        // The tag's message is the repository's text: markup in it must be shown, never run.
        let hostile = "Release 1.0.0 <script>alert(1)</script><img src=x onerror=alert(2)>"
        try world.release("1.0.0", message: hostile)
        let id = try await world.waitForRun(in: ["awaiting_approval"])

        let artifacts = Paths.root.appendingPathComponent(".build/browser-artifacts")
        try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
        let profile = world.scratch.appendingPathComponent("chromium-profile")
        let python = Paths.root.appendingPathComponent(".tools/browser-venv/bin/python")
        try #require(FileManager.default.isExecutableFile(atPath: python.path), "run scripts/install-python-tools.sh")
        let result = try run(python.path, [Paths.root.appendingPathComponent("Tests/Browser/review_ui.py").path,
                                           "http://127.0.0.1:\(world.port)", id, artifacts.path],
                             environment: ["ALICE_TOKEN": world.tokens["alice"]!, "CAROL_TOKEN": world.tokens["carol"]!,
                                           "HOSTILE_MESSAGE": hostile, "BROWSER_PROFILE": profile.path, "HOME": world.scratch.path,
                                           "PATH": "/usr/bin:/bin"])
        #expect(result.status == 0, "\(result.out)\n\(result.err.suffix(3_000))")
        #expect(try world.runState(id) == "verified")
        let approvals = try world.http("GET", "/api/v1/runs/\(id)").json["approvals"] as? [[String: Any]] ?? []
        #expect(approvals.compactMap { $0["identity"] as? String } == ["alice"], "the approval came through the browser")
        for name in ["board.png", "run-awaiting-approval.png", "run-verified.png"] {
            let data = try Data(contentsOf: artifacts.appendingPathComponent(name))
            #expect(data.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(name) is a PNG")
        }
    }
}
