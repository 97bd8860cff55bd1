import ArgumentParser
import Foundation

/// One `lockstep serve` under measurement, its output in `lockstep.log` of its folder.
final class DaemonProcess {
    let process: Process
    let log: URL

    init(dir: URL, binary: String, logLevel: String) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--config", dir.appendingPathComponent("agent.yaml").path, "--log-level", logLevel]
        log = dir.appendingPathComponent("lockstep.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// Fails with the end of the daemon's log when it has exited.
    func checkAlive() throws {
        guard !process.isRunning else { return }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let tail = text.split(separator: "\n").suffix(15).joined(separator: "\n")
        throw ValidationError("the daemon exited (status \(process.terminationStatus)); the end of \(log.path):\n\(tail)")
    }

    /// Seconds from now until /readyz answers 200.
    func waitReady(_ server: String, timeout: Double) async throws -> Double {
        let start = ContinuousClock.now
        while DaemonBenchmark.seconds(ContinuousClock.now - start) < timeout {
            try checkAlive()
            if let (_, status) = try? await API.get("\(server)/readyz"), status == 200 {
                return DaemonBenchmark.seconds(ContinuousClock.now - start)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("\(server) not ready after \(timeout)s")
    }

    /// Polls the target's runs every 50 ms until the run of `tag` awaits approval; returns its
    /// id and the seconds since the call.
    func waitRun(_ server: String, target: String, tag: String, timeout: Double) async throws -> (id: String, seconds: Double) {
        let start = ContinuousClock.now
        while DaemonBenchmark.seconds(ContinuousClock.now - start) < timeout {
            try checkAlive()
            if let runs = await API.runs(server, query: "target=\(target)&limit=20"),
               let run = runs.first(where: { $0["tag"] as? String == tag }), let id = run["id"] as? String {
                switch run["state"] as? String {
                case "awaiting_approval":
                    return (id, DaemonBenchmark.seconds(ContinuousClock.now - start))
                case "failed", "no_changes", "superseded", "rejected", "expired", "interrupted":
                    throw ValidationError("the run of \(tag) ended \((run["state"] as? String) ?? "?") instead of awaiting approval (see \(log.path))")
                default:
                    break
                }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("no run of \(tag) awaited approval within \(timeout)s")
    }

    /// Polls the runs awaiting approval every 2 s (each list costs the daemon a store query)
    /// until every tag of `tags` is among them or `timeout` passes; returns how many were and the
    /// seconds since the call.
    func waitAll(_ server: String, tags: Set<String>, timeout: Double) async throws -> (count: Int, seconds: Double) {
        let start = ContinuousClock.now
        var found = 0
        var lastNote = ContinuousClock.now
        while DaemonBenchmark.seconds(ContinuousClock.now - start) < timeout {
            try checkAlive()
            if let runs = await API.runs(server, query: "state=awaiting_approval&limit=1000") {
                found = runs.filter { ($0["tag"] as? String).map(tags.contains) ?? false }.count
                if found >= tags.count { return (found, DaemonBenchmark.seconds(ContinuousClock.now - start)) }
            }
            if DaemonBenchmark.seconds(ContinuousClock.now - lastNote) > 60 {
                DaemonBenchmark.note("first pass: \(found)/\(tags.count) awaiting approval")
                lastNote = ContinuousClock.now
            }
            try await Task.sleep(for: .seconds(2))
        }
        DaemonBenchmark.note("first pass timed out with \(found)/\(tags.count) awaiting approval")
        return (found, DaemonBenchmark.seconds(ContinuousClock.now - start))
    }

    /// CPU ticks spent over `seconds` of idling, as a share of one core, and the pass
    /// durations the daemon logged meanwhile (`--log-level debug`).
    func idleCPU(seconds: Int) async throws -> (ticks: Int, share: Double, passes: String) {
        let offset = (try? FileManager.default.attributesOfItem(atPath: log.path)[.size] as? NSNumber)?.intValue ?? 0
        let before = ProcFS.cpuTicks(pid)
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let ticks = ProcFS.cpuTicks(pid) - before
        let elapsed = DaemonBenchmark.seconds(ContinuousClock.now - start)
        try checkAlive()
        var durations: [Double] = []
        if let handle = try? FileHandle(forReadingFrom: log) {
            try? handle.seek(toOffset: UInt64(offset))
            let data = (try? handle.readToEnd()) ?? Data()
            try? handle.close()
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let range = line.range(of: "pass.duration_ms=") else { continue }
                let digits = line[range.upperBound...].prefix { $0.isNumber }
                if let value = Double(digits) { durations.append(value) }
            }
        }
        let passes = durations.isEmpty ? "none logged"
            : "\(durations.count), \(String(format: "%.0f", DaemonBenchmark.median(durations))) / \(String(format: "%.0f", durations.max() ?? 0))"
        return (ticks, Double(ticks) / 100 / elapsed, passes)
    }

    /// `perf record -g` of the daemon for `seconds`, reported with `--no-children` into a file
    /// of `dir`; returns that file's path.
    func perf(seconds: Int, into dir: URL) async -> String? {
        let data = dir.appendingPathComponent("perf.data").path
        let report = dir.appendingPathComponent("perf-report.txt").path
        guard (try? await Child.run("/usr/bin/perf", ["record", "-g", "-p", "\(pid)", "-o", data, "--", "sleep", "\(seconds)"],
                                    output: dir.appendingPathComponent("perf-record.log").path, check: false)) == 0,
              (try? await Child.run("/usr/bin/perf", ["report", "-i", data, "--stdio", "--no-children"], output: report, check: false)) == 0
        else { return nil }
        return report
    }
}

/// How long the daemon itself took for one run, from the run detail of the API (or, when the
/// API's times are whole seconds, the same times in the store, kept in milliseconds).
struct RunTiming {
    /// Run creation → the transition to `awaiting_approval`.
    var ownWork: Double
    /// The time between consecutive steps: creation, then each transition up to `awaiting_approval`.
    var phases: [(String, Double)]
    /// Where the times came from.
    var source: String
    /// Seconds from run creation to the rendering's attachment, when the run detail says.
    var renderingAttached: Double?

    static func read(server: String, id: String, store: URL) async -> RunTiming? {
        guard let detail = await API.json("\(server)/api/v1/runs/\(id)"),
              let created = API.date(detail["created_at"]) else { return nil }
        let transitions = (detail["transitions"] as? [[String: Any]]) ?? []
        var events: [(String, Date)] = []
        var fractional = created.fractional
        for t in transitions {
            guard let to = t["to"] as? String, let time = API.date(t["time"]) else { continue }
            fractional = fractional && time.fractional
            events.append((to, time.date))
            if to == "awaiting_approval" { break }
        }
        // A field the daemon may add: when the text rendering was attached to the run.
        var attached: Double?
        if let key = detail.keys.sorted().first(where: { $0.contains("render") && $0.hasSuffix("_at") }),
           let time = API.date(detail[key]) {
            attached = time.date.timeIntervalSince(created.date)
        }
        var start = created.date
        var source = "times from `GET /api/v1/runs/{id}`"
        if !fractional {
            // The API writes whole seconds: read the store's millisecond times of the same run.
            guard id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }),
                  let text = await Child.capture("/usr/bin/sqlite3", [
                      "-readonly", store.path,
                      "select 'created', created_ms from runs where id = '\(id)'; "
                          + "select to_state, time_ms from transitions where run_id = '\(id)' order by sequence;"])
            else { return nil }
            var rows: [(String, Date)] = []
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "|")
                guard parts.count == 2, let ms = Double(parts[1]) else { continue }
                rows.append((String(parts[0]), Date(timeIntervalSince1970: ms / 1000)))
            }
            guard let first = rows.first, first.0 == "created" else { return nil }
            start = first.1
            events = []
            for row in rows.dropFirst() {
                events.append(row)
                if row.0 == "awaiting_approval" { break }
            }
            source = "times in ms from the store (the API's are whole seconds)"
        }
        guard let end = events.last, end.0 == "awaiting_approval" else { return nil }
        var phases: [(String, Double)] = []
        var previous = ("created", start)
        for event in events {
            phases.append(("\(previous.0) → \(event.0)", event.1.timeIntervalSince(previous.1)))
            previous = event
        }
        return RunTiming(ownWork: end.1.timeIntervalSince(start), phases: phases, source: source, renderingAttached: attached)
    }
}

/// Terraform's floor for the example's dev plan: a working copy of `app/` initialised once with
/// the daemon's CLI config (filesystem mirror, plugin cache) and its state in a scratch file; each
/// measurement sets the release version and times `plan -out` then `show -json`, unconfined.
struct Floor {
    var dir: URL
    var tf: String
    var environment: [String: String]
    /// The plan's `-var-file` (the example's environment file), relative to the project folder.
    var varFile: String?

    /// - Parameters:
    ///   - varFile: the example's `envs/dev.tfvars`; nil for a project without one.
    ///   - backend: whether the project has a `backend "local" {}` block to point at a state file.
    static func prepare(work: URL, app: URL, tf: String, mirror: String, varFile: String? = "envs/dev.tfvars",
                        backend: Bool = true) async throws -> Floor {
        let fm = FileManager.default
        try fm.createDirectory(at: work.appendingPathComponent("home"), withIntermediateDirectories: true)
        try fm.createDirectory(at: work.appendingPathComponent("plugin-cache"), withIntermediateDirectories: true)
        let dir = work.appendingPathComponent("app")
        try fm.copyItem(at: app, to: dir)
        let rc = work.appendingPathComponent("floor.tfrc")
        try """
            provider_installation {
              filesystem_mirror {
                path = "\(mirror)"
              }
            }
            plugin_cache_dir = "\(work.appendingPathComponent("plugin-cache").path)"
            disable_checkpoint = true

            """.write(to: rc, atomically: true, encoding: .utf8)
        let floor = Floor(dir: dir, tf: tf, environment: [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work.appendingPathComponent("home").path,
            "TF_CLI_CONFIG_FILE": rc.path, "TF_IN_AUTOMATION": "1",
        ], varFile: varFile)
        let backendArguments = backend ? ["-backend-config=path=\(work.appendingPathComponent("floor.tfstate").path)"] : []
        try await Child.run(tf, ["init", "-input=false", "-no-color"] + backendArguments,
                            environment: floor.environment, directory: dir)
        // One untimed round, as the daemon's first plan (dev/v1.0.0) is untimed too.
        _ = try await floor.measure(version: "1.0.0")
        return floor
    }

    /// Seconds of `plan -out` + `show -json` for `app_version = version`.
    func measure(version: String) async throws -> Double {
        try "app_version = \"\(version)\"\n".write(to: dir.appendingPathComponent("release.auto.tfvars"), atomically: true, encoding: .utf8)
        let plan = dir.deletingLastPathComponent().appendingPathComponent("floor.tfplan").path
        let json = dir.deletingLastPathComponent().appendingPathComponent("floor-plan.json").path
        let start = ContinuousClock.now
        try await Child.run(tf, ["plan", "-input=false", "-no-color"] + (varFile.map { ["-var-file=\($0)"] } ?? []) + ["-out=\(plan)"],
                            environment: environment, directory: dir)
        try await Child.run(tf, ["show", "-json", plan], environment: environment, directory: dir, output: json)
        return DaemonBenchmark.seconds(ContinuousClock.now - start)
    }
}
