import Foundation
import LockstepCore
import Logging
import Synchronization
import Testing
@testable import TerraformRunner

/// Shared fixtures: the pinned terraform from `.tools/`, scratch directories,
/// and sinks/log handlers that record everything so tests can look for leaks.
enum Fixtures {
    static let repositoryRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    static let toolsRoot = repositoryRoot.appendingPathComponent(".tools/terraform")
    static let mirror = toolsRoot.appendingPathComponent("mirror")

    /// The pinned Terraform 1.0.3. Missing is a failure, never a skip.
    static func pinnedTerraform() throws -> URL {
        let url = toolsRoot.appendingPathComponent("bin/terraform")
        try #require(
            FileManager.default.isExecutableFile(atPath: url.path),
            "Terraform 1.0.3 is not installed at \(url.path): run scripts/install-terraform.sh"
        )
        return url
    }

    /// A `terraform` >= 1.1 on PATH (1.11.4 on these machines), if any.
    static let modernTerraform: URL? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent("terraform")
            guard FileManager.default.isExecutableFile(atPath: candidate.path),
                  candidate.standardizedFileURL.path != toolsRoot.appendingPathComponent("bin/terraform").path
            else { continue }
            let process = Process()
            process.executableURL = candidate
            process.arguments = ["version", "-json"]
            process.environment = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { continue }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            struct Raw: Decodable { var terraform_version: String }
            guard let raw = try? JSONDecoder().decode(Raw.self, from: data) else { continue }
            guard let parsed = try? SemanticVersion(raw.terraform_version) else { continue }
            let version = TerraformVersion(tool: "terraform", version: parsed)
            if version.isAtLeast(1, 1) { return candidate }
        }
        return nil
    }()

    static func scratch(_ name: String = #function) throws -> URL {
        let base = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("lockstep-tf-tests")
        let safe = name.filter { $0.isLetter || $0.isNumber }
        return try TerraformRunner.makeRunDirectory(under: base, name: "\(safe)-\(UUID().uuidString.prefix(8))")
    }

    /// A runner on the pinned terraform with its own tools directory.
    static func runner(
        scratch: URL, executable: URL? = nil, logs: LogRecorder = LogRecorder(),
        retainedOutputBytes: Int = 256 * 1024, gracePeriod: Duration = .seconds(10)
    ) throws -> TerraformRunner {
        var logger = Logger(label: "test") { _ in logs }
        logger.logLevel = .trace
        return TerraformRunner(
            configuration: .init(
                executable: try executable ?? pinnedTerraform(),
                toolsDirectory: scratch.appendingPathComponent("tools"),
                providerInstallation: .filesystemMirror(mirror),
                gracePeriod: gracePeriod,
                retainedOutputBytes: retainedOutputBytes
            ),
            logger: logger
        )
    }

    /// Writes `files` into a new project directory under `scratch`.
    static func project(_ scratch: URL, _ name: String = "project", files: [String: String]) throws -> URL {
        let directory = scratch.appendingPathComponent(name)
        for (path, text) in files {
            let url = directory.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return directory
    }

    static func nullResources(_ count: Int) -> String {
        """
        resource "null_resource" "r" {
          count    = \(count)
          triggers = { index = count.index }
        }
        """
    }
}

/// Records every line a sink receives.
final class LineRecorder: TerraformOutputSink {
    private let lines = Mutex<[OutputLine]>([])
    func receive(_ line: OutputLine) { lines.withLock { $0.append(line) } }
    var all: [OutputLine] { lines.withLock { $0 } }
    var text: String { all.map(\.text).joined(separator: "\n") }
}

/// A log handler that keeps every message and its metadata as text.
final class LogRecorder: LogHandler, @unchecked Sendable {
    private let storage = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    /// Every message as it is logged (so a test can wait for one instead of sleeping).
    let messages: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation

    init() {
        (messages, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1000))
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        storage.withLock { $0.append("\(event.level) \(event.message) \(merged)") }
        continuation.yield("\(event.message)")
    }

    var text: String { storage.withLock { $0.joined(separator: "\n") } }
}

/// Processes whose command line contains `marker` (scanned from /proc).
func processes(containing marker: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> Int32? in
        guard let pid = Int32(entry),
              let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
        let cmdline = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        return cmdline.contains(marker) ? pid : nil
    }
}

func mode(of url: URL) -> Int {
    let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
    return ((attributes?[.posixPermissions] as? NSNumber)?.intValue ?? -1) & 0o777
}
