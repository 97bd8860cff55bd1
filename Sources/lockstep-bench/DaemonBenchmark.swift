import ArgumentParser
import Foundation

/// What every daemon benchmark runs: the lockstep binary, terraform, its provider mirror and the
/// example layout.
struct DaemonTools: ParsableArguments {
    @Option(help: "The built lockstep binary (a release build: .build-release/release/lockstep).")
    var lockstep: String

    @Option(help: "Terraform binary.")
    var terraform: String = ".tools/terraform/bin/terraform"

    @Option(help: "Provider mirror directory.")
    var mirror: String = ".tools/terraform/mirror"

    @Option(help: "The example delivery layout copied into the repo.")
    var example: String = "examples/delivery"
}

/// Issue 13's figures for `lockstep serve`, from one run:
/// 1. the example repo, tag → `awaiting_approval`: the daemon's own work (from the run's creation
///    to its `awaiting_approval` transition), end to end (poll wait included), terraform's floor
///    for the same revision (`plan -out` + `show -json` in an initialised working copy) and a
///    CI-style script, interleaved;
/// 2. 1,000 targets and 10,000 tags: readiness, the first pass, idle CPU, one project's new tag;
/// 3. resident memory and what holds it (/proc/PID/smaps grouped by mapping).
/// Prints Markdown tables.
struct DaemonBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Benchmark `lockstep serve`: tag → awaiting_approval against terraform's floor and a CI-style script, readiness, idle CPU and memory at 1,000 targets."
    )

    @OptionGroup var tools: DaemonTools
    var lockstep: String { tools.lockstep }
    var terraform: String { tools.terraform }
    var mirror: String { tools.mirror }
    var example: String { tools.example }

    @Option(help: "Repetitions of the example's tag → awaiting_approval measurement (medians reported).")
    var repetitions: Int = 9

    @Option(help: "Scratch directory (kept afterwards: each daemon's lockstep.log is there).")
    var workDirectory: String = ".bench/daemon"

    @Option(help: "The daemons' poll_interval in seconds.")
    var pollInterval: Int = 1

    @Option(help: "Projects of the large repo (each served in dev, staging and prod).")
    var projects: Int = 334

    @Option(help: "Merged releases of the large repo, each tagged for every project's dev.")
    var versions: Int = 30

    @Option(help: "Seconds of idle CPU measured.")
    var idleSeconds: Int = 30

    @Option(help: "Seconds the first pass of the large repo may take before the benchmark reports what it reached.")
    var largeTimeout: Int = 1_800

    @Option(help: "Seconds of `perf record -g` on the idle large daemon (0: none); the report is written to the scratch directory.")
    var perfSeconds: Int = 0

    @Option(help: "The daemons' --log-level (debug logs each pass's duration).")
    var daemonLogLevel: String = "debug"

    @Option(help: "First TCP port used by the daemons.")
    var port: Int = 18_420

    @Flag(help: "Run only the example part.")
    var skipLarge = false

    mutating func run() async throws {
        try await benchmark()
    }

    /// Progress on stderr, so stdout holds only the tables.
    /// How many lines of `file` contain `text`.
    static func count(_ text: String, in file: URL) -> Int {
        ((try? String(contentsOf: file, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1
    }

    static func note(_ text: String) {
        let time = ISO8601DateFormatter().string(from: Date())
        FileHandle.standardError.write(Data("[\(time)] \(text)\n".utf8))
    }

    /// The measurement itself (non-mutating, so its closures may capture `self`).
    func benchmark() async throws {
        let fm = FileManager.default
        let loadStart = ProcFS.loadAverage()
        let work = URL(fileURLWithPath: workDirectory).standardizedFileURL
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        let lockstepBin = URL(fileURLWithPath: lockstep).standardizedFileURL.resolvingSymlinksInPath().path
        let tf = URL(fileURLWithPath: terraform).standardizedFileURL.path
        let mirrorPath = URL(fileURLWithPath: mirror).standardizedFileURL.path
        let examplePath = URL(fileURLWithPath: example).standardizedFileURL.path
        let cliConfig = work.appendingPathComponent("ci.tfrc")
        try "provider_installation {\n  filesystem_mirror {\n    path = \"\(mirrorPath)\"\n  }\n}\ndisable_checkpoint = true\n"
            .write(to: cliConfig, atomically: true, encoding: .utf8)

        var out: [String] = []

        // 1. The example.
        let ex = work.appendingPathComponent("example")
        try await DaemonRepos.makeExample(ex, from: examplePath)
        try DaemonRepos.writeAgentConfig(ex, port: port, pollInterval: pollInterval, tf: tf, mirror: mirrorPath)
        let floor = try await Floor.prepare(work: work.appendingPathComponent("floor"), app: ex.appendingPathComponent("work/app"),
                                            tf: tf, mirror: mirrorPath)
        let daemon = try DaemonProcess(dir: ex, binary: lockstepBin, logLevel: daemonLogLevel)
        defer { daemon.stop() }
        let server = "http://127.0.0.1:\(port)"
        Self.note("example daemon started")
        let readyAfter = try await daemon.waitReady(server, timeout: 120)
        let rssReady = ProcFS.status(daemon.pid, "VmRSS")
        _ = try await daemon.waitRun(server, target: "app/dev", tag: "dev/v1.0.0", timeout: 300)
        try await Task.sleep(for: .seconds(3))
        let rssFirst = ProcFS.status(daemon.pid, "VmRSS")

        var own: [Double] = [], endToEnd: [Double] = [], floors: [Double] = [], cis: [Double] = [], ratios: [Double] = []
        var phases: [String: [Double]] = [:], phaseOrder: [String] = []
        var rendering: [Double] = []
        var timeSource = ""
        let reps = max(repetitions, 1)
        for n in 1...reps {
            let version = "1.0.\(n)"
            // Rotate the order so no side always runs right after another one.
            let sides = [0, 1, 2]
            let order = Array(sides[(n % 3)...] + sides[..<(n % 3)])
            var ownThis = Double.nan, floorThis = Double.nan
            for side in order {
                switch side {
                case 0:
                    // A random pause first: the loop is otherwise periodic, so every tag would
                    // reach the daemon at the same point of its poll cycle and the end-to-end
                    // figure would measure that phase rather than the poll interval's average.
                    try await Task.sleep(for: .milliseconds(Int.random(in: 0..<(pollInterval * 1_000))))
                    let tag = "dev/v\(version)"
                    try await Child.sh(DaemonRepos.releaseScript(repo: ex, file: "app/release.auto.tfvars", version: version, tag: tag))
                    let (id, elapsed) = try await daemon.waitRun(server, target: "app/dev", tag: tag, timeout: 300)
                    endToEnd.append(elapsed)
                    if let timing = await RunTiming.read(server: server, id: id, store: ex.appendingPathComponent("lockstep.sqlite")) {
                        own.append(timing.ownWork)
                        ownThis = timing.ownWork
                        timeSource = timing.source
                        for (name, seconds) in timing.phases {
                            if phases[name] == nil { phaseOrder.append(name) }
                            phases[name, default: []].append(seconds)
                        }
                        if let attached = timing.renderingAttached { rendering.append(attached) }
                    }
                case 1:
                    floorThis = try await floor.measure(version: version)
                    floors.append(floorThis)
                default:
                    let dir = ex.appendingPathComponent("ci-\(n)")
                    let start = ContinuousClock.now
                    try await Child.sh(DaemonRepos.ciScript(repo: ex, dir: dir, tf: tf, cliConfig: cliConfig))
                    cis.append(Self.seconds(ContinuousClock.now - start))
                    try? fm.removeItem(at: dir)
                }
            }
            if ownThis.isFinite, floorThis.isFinite, floorThis > 0 { ratios.append(ownThis / floorThis) }
            Self.note("example repetition \(n)/\(reps): own \(Self.format(ownThis)) s, floor \(Self.format(floorThis)) s")
        }
        try await Task.sleep(for: .seconds(3))
        let rssAfter = ProcFS.status(daemon.pid, "VmRSS"), hwmAfter = ProcFS.status(daemon.pid, "VmHWM")
        let exIdle = try await daemon.idleCPU(seconds: idleSeconds)
        let exGroups = ProcFS.memoryGroups(daemon.pid, binary: lockstepBin)
        let exThreads = ProcFS.status(daemon.pid, "Threads")
        let exRssIdle = ProcFS.status(daemon.pid, "VmRSS")
        daemon.stop()
        let loadMiddle = ProcFS.loadAverage()

        out.append("| example (1 project × 3 envs): tag → `awaiting_approval`, \(reps) repetitions interleaved (order rotated) | median (s) | min (s) | max (s) |")
        out.append("|---|---:|---:|---:|")
        out.append(Self.row("`lockstep serve`, the daemon's own work: run `created_at` (tag decided right after the fetch) → its `awaiting_approval` transition, \(timeSource)", own))
        out.append(Self.row("terraform's floor: `plan -out` + `show -json` in an initialised working copy (same binary, mirror, plugin cache; unconfined)", floors))
        out.append(Self.row("CI-style shell script (fresh clone, init, plan -out, show -json, show)", cis))
        out.append(Self.row("`lockstep serve` end to end: push returned → `GET /api/v1/runs` (polled every 50 ms) lists it awaiting approval; poll wait (poll_interval \(pollInterval) s) included", endToEnd))
        out.append(Self.row("ratio own work / floor, per repetition (target ≤ 1.1)", ratios))
        if !rendering.isEmpty {
            out.append(Self.row("text rendering attached, seconds after run creation (the run detail's rendering time)", rendering))
        }
        out.append("")
        out.append("| the daemon's own work by transition (\(timeSource)) | median (s) | min (s) | max (s) |")
        out.append("|---|---:|---:|---:|")
        for name in phaseOrder { out.append(Self.row(name, phases[name] ?? [])) }
        out.append("")

        var memoryRows: [String] = [
            "| example, at /readyz (\(Self.format(readyAfter)) s after start) | \(Self.mib(rssReady)) | |",
            "| example, idle after `dev/v1.0.0` awaits approval | \(Self.mib(rssFirst)) | |",
            "| example, idle after the \(reps) timed releases | \(Self.mib(rssAfter)) | \(Self.mib(hwmAfter)) |",
            "| example, after \(idleSeconds) s more idle | \(Self.mib(exRssIdle)) | |",
        ]
        var cpuRows: [String] = [
            "| example (3 targets, \(reps + 1) tags), idle after its releases | \(Self.format(Double(exIdle.ticks) / 100)) s | \(String(format: "%.2f", exIdle.share * 100)) % | \(exIdle.passes) |",
        ]
        var largeRows: [String] = []
        var breakdowns: [(String, [ProcFS.MemoryGroup], Int)] = [("example daemon, idle", exGroups, exThreads)]
        var perfReport: String?

        // 2. 1,000 targets and 10,000 tags.
        if !skipLarge {
            let big = work.appendingPathComponent("large")
            let buildStart = ContinuousClock.now
            try await DaemonRepos.makeLarge(big, projects: projects, versions: versions)
            let buildSeconds = Self.seconds(ContinuousClock.now - buildStart)
            Self.note("large repo built in \(Self.format(buildSeconds)) s")
            try DaemonRepos.writeAgentConfig(big, port: port + 1, pollInterval: pollInterval, tf: tf, mirror: mirrorPath)
            let large = try DaemonProcess(dir: big, binary: lockstepBin, logLevel: daemonLogLevel)
            defer { large.stop() }
            let bigServer = "http://127.0.0.1:\(port + 1)"
            let bigReady = try await large.waitReady(bigServer, timeout: Double(largeTimeout))
            let bigRssReady = ProcFS.status(large.pid, "VmRSS")
            Self.note("large daemon ready after \(Self.format(bigReady)) s")
            let newest = Set((0..<projects).map { "\(DaemonRepos.projectName($0))/dev/v1.0.\(versions)" })
            let (planned, passSeconds) = try await large.waitAll(bigServer, tags: newest,
                                                                 timeout: Double(largeTimeout) - bigReady)
            let settledSeconds = bigReady + passSeconds
            Self.note("large first pass: \(planned)/\(projects) awaiting approval \(Self.format(settledSeconds)) s after start")
            try await Task.sleep(for: .seconds(5))
            let bigRssSettled = ProcFS.status(large.pid, "VmRSS"), bigHwmSettled = ProcFS.status(large.pid, "VmHWM")
            let bigIdle = try await large.idleCPU(seconds: idleSeconds)
            if perfSeconds > 0 {
                perfReport = await large.perf(seconds: perfSeconds, into: big)
            }

            // One project's new release: the work should be that of one target.
            var oneOwn: [Double] = [], oneEnd: [Double] = [], oneFloor: [Double] = [], oneRatio: [Double] = []
            let picks = Array(Set([0, projects / 4, projects / 2, 3 * projects / 4, projects - 1])).sorted()
            for (i, p) in picks.enumerated() {
                let name = DaemonRepos.projectName(p)
                let version = "1.0.\(versions + 1 + i)"
                let tag = "\(name)/dev/v\(version)"
                try await Task.sleep(for: .milliseconds(Int.random(in: 0..<(pollInterval * 1_000))))
                try await Child.sh(DaemonRepos.releaseScript(repo: big, file: "\(name)/release.auto.tfvars", version: version, tag: tag))
                let (id, elapsed) = try await large.waitRun(bigServer, target: "\(name)/dev", tag: tag, timeout: 600)
                oneEnd.append(elapsed)
                if let timing = await RunTiming.read(server: bigServer, id: id, store: big.appendingPathComponent("lockstep.sqlite")) {
                    oneOwn.append(timing.ownWork)
                    // terraform's floor for this project and version, right after: the example's
                    // project is another configuration, so its floor is not this one's.
                    let projectFloor = try await Floor.prepare(work: work.appendingPathComponent("floor-\(name)"),
                                                               app: big.appendingPathComponent("work/\(name)"), tf: tf,
                                                               mirror: mirrorPath, varFile: nil, backend: false)
                    let floorSeconds = try await projectFloor.measure(version: version)
                    oneFloor.append(floorSeconds)
                    if floorSeconds > 0 { oneRatio.append(timing.ownWork / floorSeconds) }
                    Self.note("large release \(i + 1)/\(picks.count): own \(Self.format(timing.ownWork)) s, floor \(Self.format(floorSeconds)) s")
                }
            }
            try await Task.sleep(for: .seconds(3))
            let bigRssAfterReleases = ProcFS.status(large.pid, "VmRSS")
            // Idle: once the daemon has released what the releases left (its debug log says so).
            let releasesLogged = Self.count("idle memory released", in: large.log)
            for _ in 0..<90 where Self.count("idle memory released", in: large.log) == releasesLogged {
                try await Task.sleep(for: .milliseconds(500))
            }
            try await Task.sleep(for: .seconds(1))
            let bigGroups = ProcFS.memoryGroups(large.pid, binary: lockstepBin)
            let bigThreads = ProcFS.status(large.pid, "Threads")
            let bigRssIdle = ProcFS.status(large.pid, "VmRSS"), bigHwmIdle = ProcFS.status(large.pid, "VmHWM")
            large.stop()

            let targets = projects * 3, tags = projects * versions
            largeRows = [
                "| \(projects) projects × 3 envs = \(targets) targets, \(tags) annotated dev tags (\(versions) merged releases, each tagged for every project; repo built in \(Self.format(buildSeconds)) s with one `git fast-import`) | |",
                "|---|---:|",
                "| daemon start → `/readyz` 200 (store open, first fetch, \(tags) tags decided; plans follow) | \(Self.format(bigReady)) s |",
                "| daemon start → every project's newest dev tag (`v1.0.\(versions)`) awaits approval (\(planned) of \(projects) reached; `max_concurrent_plans` 2; `GET /api/v1/runs` polled every 2 s) | \(Self.format(settledSeconds)) s |",
                "| of which after readiness | \(Self.format(passSeconds)) s |",
                "| one project's new merged release and tag, the daemon's own work (run `created_at` → `awaiting_approval`, \(timeSource)), median of \(oneOwn.count) (\(oneOwn.map(Self.format).joined(separator: ", "))) | \(Self.format(Self.median(oneOwn))) s |",
                "| terraform's floor for the same project and version (`plan -out` + `show -json` in an initialised copy, measured right after each), median (\(oneFloor.map(Self.format).joined(separator: ", "))) | \(Self.format(Self.median(oneFloor))) s |",
                "| ratio own work / floor at \(targets) targets, median (\(oneRatio.map { String(format: "%.2f", $0) }.joined(separator: ", "))) | \(String(format: "%.2f", Self.median(oneRatio))) |",
                "| the same for the example (3 targets), median of \(ratios.count), from the table above | \(String(format: "%.2f", Self.median(ratios))) |",
                "| own work in the example (3 targets), median of \(own.count), from the table above (another project: its terraform floor differs) | \(Self.format(Self.median(own))) s |",
                "| one project's new tag end to end (push returned → listed awaiting approval; poll wait included), median (\(oneEnd.map(Self.format).joined(separator: ", "))) | \(Self.format(Self.median(oneEnd))) s |",
            ]
            memoryRows += [
                "| \(targets) targets, at /readyz | \(Self.mib(bigRssReady)) | |",
                "| \(targets) targets, 5 s after the first pass settled (\(planned) plans awaiting approval) | \(Self.mib(bigRssSettled)) | \(Self.mib(bigHwmSettled)) |",
                "| \(targets) targets, 3 s after \(oneOwn.count) one-project releases | \(Self.mib(bigRssAfterReleases)) | |",
                "| \(targets) targets, idle after them (the daemon's next idle release of memory) | \(Self.mib(bigRssIdle)) | \(Self.mib(bigHwmIdle)) |",
            ]
            cpuRows.append("| \(targets) targets, \(tags + picks.count) tags, idle once every dev target awaits approval | \(Self.format(Double(bigIdle.ticks) / 100)) s | \(String(format: "%.2f", bigIdle.share * 100)) % | \(bigIdle.passes) |")
            breakdowns.append(("\(targets) targets, idle", bigGroups, bigThreads))
        }

        // Print.
        if !largeRows.isEmpty {
            out += largeRows
            out.append("")
        }
        out.append("| idle CPU, poll_interval \(pollInterval) s, utime+stime from /proc/PID/stat over \(idleSeconds) s | CPU | share of one core (target < 2 % at 1,000 targets) | passes logged in the window, duration ms median / max |")
        out.append("|---|---:|---:|---|")
        out += cpuRows
        out.append("")
        out.append("| daemon resident memory | VmRSS MiB | VmHWM MiB |")
        out.append("|---|---:|---:|")
        out += memoryRows
        out.append("")
        for (title, groups, threads) in breakdowns {
            let total = groups.reduce(0) { $0 + $1.rssKiB }
            out.append("| what holds the memory: \(title) (/proc/PID/smaps Rss grouped by mapping; \(threads) threads; Rss total \(Self.mib(total)) MiB) | mappings | virtual MiB | Rss MiB | Pss MiB |")
            out.append("|---|---:|---:|---:|---:|")
            for group in groups.prefix(14) {
                out.append("| \(group.name) | \(group.mappings) | \(Self.mib(group.sizeKiB)) | \(Self.mib(group.rssKiB)) | \(Self.mib(group.pssKiB)) |")
            }
            let rest = groups.dropFirst(14)
            if !rest.isEmpty {
                out.append("| \(rest.count) smaller groups | \(rest.reduce(0) { $0 + $1.mappings }) | \(Self.mib(rest.reduce(0) { $0 + $1.sizeKiB })) | \(Self.mib(rest.reduce(0) { $0 + $1.rssKiB })) | \(Self.mib(rest.reduce(0) { $0 + $1.pssKiB })) |")
            }
            out.append("")
        }

        let attributes = try? fm.attributesOfItem(atPath: lockstepBin)
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
        let mtime = (attributes?[.modificationDate] as? Date).map { ISO8601DateFormatter().string(from: $0) } ?? "?"
        let kernel = await Child.capture("/bin/uname", ["-r"]) ?? "?"
        let head = await Child.capture("/usr/bin/git", ["rev-parse", "--short", "HEAD"]) ?? "?"
        let build = lockstepBin.contains("/release/") ? "release build (path contains /release/)" : "NOT a release build path: check it"
        out.append("Command: `lockstep-bench \(CommandLine.arguments.dropFirst().joined(separator: " "))`  ")
        out.append("lockstep binary: `\(lockstepBin)`, \(build), \(String(format: "%.1f", Double(size) / 1_048_576)) MiB, modified \(mtime); source HEAD \(head)  ")
        out.append("Kernel \(kernel), \(ProcessInfo.processInfo.activeProcessorCount) CPUs; load average (1, 5, 15 min) at start \(loadStart), after the example \(loadMiddle), at the end \(ProcFS.loadAverage())  ")
        out.append("Scratch directory (daemon logs: */lockstep.log): `\(work.path)`")
        if let perfReport { out.append("perf report of the idle large daemon: `\(perfReport)`") }
        print(out.joined(separator: "\n"))
    }

    // MARK: Formatting

    static func row(_ label: String, _ values: [Double]) -> String {
        "| \(label) | \(format(median(values))) | \(format(values.min() ?? .nan)) | \(format(values.max() ?? .nan)) |"
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func format(_ v: Double) -> String { v.isFinite ? String(format: "%.2f", v) : "–" }
    static func mib(_ kib: Int) -> String { kib < 0 ? "–" : String(format: "%.1f", Double(kib) / 1024) }
}
