import APITestSupport
import Foundation
import Hummingbird
import LockstepCore
import LockstepHTTP
import Logging
import Testing

// MARK: - A real API server on 127.0.0.1

/// Runs the real APIServer (the application the daemon runs) over `backend` on 127.0.0.1,
/// port chosen by the kernel, for the duration of `body`.
func withServer<T: Sendable>(_ backend: CannedBackend = CannedBackend(),
                             _ body: (_ url: String) async throws -> T) async throws -> T {
    let tokens = try APITokenTable(Fixture.credentials)
    var logger = Logger(label: "lockstep.cli.test")
    // Cancelling the server at the end of a test logs an error; nothing here asserts on logs.
    logger.logLevel = .critical
    let server = APIServer(backend: backend, tokens: tokens,
                           readiness: { APIReadiness(ready: true, status: "test") },
                           onRefusal: { _ in }, logger: logger)
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let application = server.makeApplication(address: .hostname("127.0.0.1", port: 0), onListening: { port in
        if let port { continuation.yield(port) }
    })
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { continuation.finish() }
            try await application.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            group.cancelAll()
            throw TestFailure("the API server did not start listening")
        }
        do {
            let result = try await body("http://127.0.0.1:\(port)")
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - The built binary, as a subprocess

struct CLIResult: Sendable {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs `.build/debug/lockstep` the way an operator does, with an environment built from
/// nothing (no inherited LOCKSTEP_* variables, HOME in a scratch folder so no real client
/// config is read).
enum CLI {
    static let binary: URL = {
        // The test bundle sits next to the products of the same build.
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let sibling = executable.deletingLastPathComponent().appendingPathComponent("lockstep")
        if FileManager.default.isExecutableFile(atPath: sibling.path) { return sibling }
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root.appendingPathComponent(".build/debug/lockstep")
    }()

    /// Longest a command may take before the test kills it and fails: a safety net for a
    /// hung client, never a wait for something to happen.
    static let limit: Duration = .seconds(400)

    /// The verbs that talk to the daemon and take `--timeout`.
    static let clientVerbs: Set<String> = ["status", "runs", "show", "approve", "reject", "rollback", "resolve", "tags"]

    /// `arguments` with `--timeout 300` added to a client verb that names none. The API server
    /// of these tests runs in the test process: while other tests hold the cooperative pool's
    /// threads (two on a two-core machine) it can answer late, and the client's 30 s default
    /// would turn that into a failure that says nothing about the client.
    static func patient(_ arguments: [String]) -> [String] {
        guard let verb = arguments.first, clientVerbs.contains(verb), !arguments.contains("--timeout"),
              !arguments.contains("--offline"), !arguments.contains("--help") else { return arguments }
        return arguments + ["--timeout", "300"]
    }

    /// - Parameter stdin: a file to connect to standard input (default: /dev/null).
    static func run(_ arguments: [String], home: Scratch, environment: [String: String] = [:], stdin: String? = nil,
                    sourceLocation: SourceLocation = #_sourceLocation) async throws -> CLIResult {
        try #require(FileManager.default.isExecutableFile(atPath: binary.path),
                     "no lockstep binary at \(binary.path): run swift build --build-tests first")
        let environment = ["PATH": "/usr/bin:/bin", "HOME": home.url.path, "COLUMNS": "100", "LINES": "50",
                           "LANG": "C.UTF-8"].merging(environment) { $1 }
        return try await Subprocess.run(binary, patient(arguments), environment: environment, home: home, stdin: stdin,
                                        sourceLocation: sourceLocation)
    }
}

/// Runs a program to completion without blocking a thread: output goes to files and the
/// exit arrives through the termination handler. (Blocking reads on the cooperative pool
/// would starve the in-process API server the program is talking to.)
enum Subprocess {
    static func run(_ executable: URL, _ arguments: [String], environment: [String: String], home: Scratch,
                    stdin: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws -> CLIResult {
        let out = home.url.appendingPathComponent("stdout-\(UUID().uuidString)")
        let err = home.url.appendingPathComponent("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let outHandle = try FileHandle(forWritingTo: out)
        let errHandle = try FileHandle(forWritingTo: err)
        defer {
            try? outHandle.close()
            try? errHandle.close()
        }

        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        let inHandle = try stdin.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) }
        defer { try? inHandle?.close() }
        process.standardInput = inHandle ?? FileHandle.nullDevice
        process.standardOutput = outHandle
        process.standardError = errHandle
        let (exits, exited) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { finished in
            exited.yield(finished.terminationStatus)
            exited.finish()
        }
        try process.run()
        let watchdog = Task {
            try await Task.sleep(for: CLI.limit)
            process.terminate()
        }
        var iterator = exits.makeAsyncIterator()
        let status = await iterator.next() ?? -1
        watchdog.cancel()
        let shown = ([executable.lastPathComponent] + arguments).joined(separator: " ")
        #expect(process.terminationReason == .exit, "\(shown) was killed (it hung)", sourceLocation: sourceLocation)
        let result = CLIResult(status: status,
                               stdout: String(decoding: try Data(contentsOf: out), as: UTF8.self),
                               stderr: String(decoding: try Data(contentsOf: err), as: UTF8.self))
        // Whatever ran, no token may appear in anything it printed.
        for token in Fixture.allTokens {
            #expect(!result.stdout.contains(token) && !result.stderr.contains(token),
                    "a token leaked into the output of \(shown)", sourceLocation: sourceLocation)
        }
        return result
    }
}

// MARK: - Scratch folders and token files

/// A fresh folder used as HOME and for token files and client configs.
final class Scratch: Sendable {
    let url: URL

    init() throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("lockstep-cli-tests")
            .appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes a file (mode 0600 unless told) and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String, mode: Int = 0o600) throws -> String {
        let file = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file.path)
        return file.path
    }

    /// A token file for `token` (with the trailing newline `echo` leaves).
    func tokenFile(_ token: String, name: String? = nil) throws -> String {
        try write(name ?? "token-\(UUID().uuidString)", token + "\n")
    }
}

/// Decodes a command's stdout as the API's `T`.
func decodeJSON<T: Decodable>(_ type: T.Type, _ result: CLIResult) throws -> T {
    try APIJSON.makeDecoder().decode(T.self, from: Data(result.stdout.utf8))
}

/// Whether `text` is exactly what the API's encoder writes for `T` (keys sorted), plus a newline.
func isCanonicalJSON<T: Codable>(_ type: T.Type, _ text: String) throws -> Bool {
    let value = try APIJSON.makeDecoder().decode(T.self, from: Data(text.utf8))
    let again = String(decoding: try APIJSON.makeEncoder().encode(value), as: UTF8.self)
    return text == again + "\n"
}
