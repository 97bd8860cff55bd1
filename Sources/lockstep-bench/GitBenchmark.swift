import ArgumentParser
import Foundation
import GitSource
import Logging

/// Issue 3's figures: listing and peeling 10,000 tags, and a no-op fetch with 100 and 10,000
/// tags over file://, side by side with `git ls-remote` and `git fetch` of the same remote.
struct GitBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "git", abstract: "Benchmark GitSource against the git CLI.")

    @Option(help: "Repetitions per measurement (the median is reported).")
    var repetitions = 7

    func run() async throws {
        print("| tags | lockstep no-op fetch (ms) | git ls-remote (ms) | git fetch (ms) | list+peel all tags (ms) |")
        print("|---:|---:|---:|---:|---:|")
        for count in [100, 10_000] {
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bench-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: scratch) }
            let source = scratch.appendingPathComponent("source.git").path
            try git(["init", "-q", "--bare", source])
            let work = scratch.appendingPathComponent("work").path
            try git(["init", "-q", "-b", "main", work])
            try git(["-C", work, "commit", "-q", "--allow-empty", "-m", "base"])
            let head = try git(["-C", work, "rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let updates = (0..<count).map { "create refs/tags/dev/v1.0.\($0) \(head)\n" }.joined()
            try git(["-C", work, "update-ref", "--stdin"], input: updates)
            try git(["-C", work, "push", "-q", source, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
            let url = "file://" + source
            let mirror = GitMirror(remote: Remote(url: url), path: scratch.appendingPathComponent("mirror.git").path, logger: Logger(label: "bench"))
            _ = try await mirror.sync()
            let cliMirror = scratch.appendingPathComponent("cli.git").path
            try git(["clone", "-q", "--mirror", url, cliMirror])

            let fetch = try await median { _ = try await mirror.sync() }
            let lsRemote = try await median { try git(["ls-remote", url]) }
            let cliFetch = try await median { try git(["-C", cliMirror, "fetch", "-q", "--prune", "origin"]) }
            let list = try await median { _ = try await mirror.tags(matching: "*", components: 2) }
            print("| \(count) | \(fmt(fetch)) | \(fmt(lsRemote)) | \(fmt(cliFetch)) | \(fmt(list)) |")
        }
    }

    private func fmt(_ duration: Duration) -> String {
        String(format: "%.1f", Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000)
    }

    private func median(_ body: () async throws -> Void) async throws -> Duration {
        var samples: [Duration] = []
        for _ in 0..<repetitions {
            let start = ContinuousClock.now
            try await body()
            samples.append(ContinuousClock.now - start)
        }
        return samples.sorted()[samples.count / 2]
    }

    @discardableResult
    private func git(_ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = arguments
        process.environment = ["PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": NSTemporaryDirectory(),
                               "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
                               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.test"]
        let output = Pipe()
        process.standardOutput = output
        let inputPipe = Pipe()
        if input != nil { process.standardInput = inputPipe }
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("git \(arguments.first ?? "") failed") }
        return String(decoding: data, as: UTF8.self)
    }
}
