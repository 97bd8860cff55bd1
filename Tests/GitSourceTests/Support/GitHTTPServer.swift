import Foundation

/// Serves a directory of bare repositories over smart HTTP on 127.0.0.1.
///
/// `scripts/git-http-server.py` runs `git http-backend` as CGI; it binds a
/// kernel-chosen free port and reports it through a file, so no fixed port and
/// no guessing. Readiness is a connect poll with a deadline. With `basicAuth`
/// every request needs those credentials; others get 401 with
/// `WWW-Authenticate: Basic`, and `unauthorizedCount` tells how many 401s went
/// out, so a test can prove a wrong password is retried only a bounded number
/// of times. Each test starts its own server and calls `stop()` (in a `defer`).
final class GitHTTPServer {
    /// Directory whose bare repositories are served (`GIT_PROJECT_ROOT`).
    let root: URL
    let port: UInt16
    /// The user name the server requires, if any.
    let user: String?
    private let child: BackgroundProcess
    private let stateDir: URL
    private let statsURL: URL

    /// Starts the server for `root`; `basicAuth` makes it require those credentials.
    init(root: URL, basicAuth: (user: String, password: String)? = nil) throws {
        self.root = root
        self.user = basicAuth?.user
        guard let python = FixtureProcess.findExecutable(["/usr/bin/python3", "/usr/local/bin/python3"]) else {
            throw FixtureError(code: .missingTool, context: "python3 not found (run scripts/install-test-deps.sh)", detail: "")
        }
        let script = Self.scriptPath
        guard FileManager.default.fileExists(atPath: script) else {
            throw FixtureError(code: .missingTool, context: "missing \(script)", detail: "")
        }
        stateDir = FileManager.default.temporaryDirectory
            .appendingPathComponent("lockstep-http-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: stateDir, withIntermediateDirectories: true)
        let portURL = stateDir.appendingPathComponent("port")
        statsURL = stateDir.appendingPathComponent("stats.json")

        var arguments = [script, "--root", root.path, "--port-file", portURL.path, "--stats-file", statsURL.path]
        // The password goes through the environment, never argv (visible in ps).
        var environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"]
        if let basicAuth {
            arguments += ["--user", basicAuth.user]
            environment["LOCKSTEP_TEST_HTTP_PASSWORD"] = basicAuth.password
        }
        let child: BackgroundProcess
        do {
            child = try BackgroundProcess(python, arguments, environment: environment, logURL: stateDir.appendingPathComponent("server.log"))
        } catch {
            try? FileManager.default.removeItem(at: stateDir)
            throw error
        }
        self.child = child
        do {
            port = try Self.waitForPortFile(portURL, child: child)
            try LoopbackTCP.waitUntilReady(port: port, bannerPrefix: nil, child: child, what: "git HTTP server")
        } catch {
            child.stop()
            try? FileManager.default.removeItem(at: stateDir)
            throw error
        }
    }

    /// The server process id (gone once `stop()` returned).
    var pid: Int32 { child.pid }
    var isRunning: Bool { child.isRunning }

    /// `http://127.0.0.1:PORT/<repo>`; `repo` is relative to `root`, e.g. `repo.git`.
    func url(for repo: String) -> String {
        "http://127.0.0.1:\(port)/\(repo)"
    }

    /// The same URL with credentials embedded (for the git CLI in tests only).
    func url(for repo: String, user: String, password: String) -> String {
        "http://\(user):\(password)@127.0.0.1:\(port)/\(repo)"
    }

    /// Requests answered with 401 so far (each counted before it was sent).
    var unauthorizedCount: Int { stats["unauthorized"] ?? 0 }
    /// All requests received so far.
    var requestCount: Int { stats["requests"] ?? 0 }
    /// The server's request/error log (no headers, no credentials).
    var log: String { child.log }

    /// Kills the server, waits for it to exit, removes its state directory.
    func stop() {
        child.stop()
        try? FileManager.default.removeItem(at: stateDir)
    }

    private var stats: [String: Int] {
        guard let data = try? Data(contentsOf: statsURL),
              let decoded = try? JSONDecoder().decode([String: Int].self, from: data) else { return [:] }
        return decoded
    }

    /// `Tests/GitSourceTests/Support/GitHTTPServer.swift` → `<package>/scripts/git-http-server.py`.
    static var scriptPath: String {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/git-http-server.py").path
    }

    private static func waitForPortFile(_ url: URL, child: BackgroundProcess) throws -> UInt16 {
        let deadline = ContinuousClock.now.advanced(by: .seconds(15))
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOf: url, encoding: .utf8), let port = UInt16(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return port
            }
            guard child.isRunning else {
                throw FixtureError(code: .serverExited, context: "git HTTP server exited before reporting its port", detail: child.log)
            }
            usleep(10_000)
        }
        throw FixtureError(code: .serverNotReady, context: "git HTTP server did not report its port within 15 s", detail: child.log)
    }
}
