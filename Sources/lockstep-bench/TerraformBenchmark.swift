import ArgumentParser
import Foundation
import LockstepCore
import Logging
import TerraformRunner

/// init+plan+show through ``TerraformRunner`` versus the same terraform commands
/// run by a shell script, and the cost of parsing a large plan JSON into a
/// ``PlanModel``. Prints a Markdown table (medians).
struct TerraformBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terraform",
        abstract: "Benchmark the Terraform runner against a shell script doing the same commands."
    )

    @Option(help: "Terraform binary.")
    var terraform: String = ".tools/terraform/bin/terraform"

    @Option(help: "Provider mirror directory.")
    var mirror: String = ".tools/terraform/mirror"

    @Option(help: "Scratch directory.")
    var workDirectory: String = ".bench/terraform"

    @Option(help: "Comma-separated null_resource counts.")
    var sizes: String = "1,100,1000"

    @Option(help: "Repetitions per size and variant (median and minimum reported).")
    var repetitions: Int = 5

    @Option(help: "null_resources in the plan whose JSON is parsed.")
    var parseResources: Int = 5000

    @Option(help: "Also time init, plan and show one by one against the same command from /bin/sh, with this many null_resources (0: skip).")
    var phases: Int = 0

    mutating func run() async throws {
        try await benchmark()
    }

    /// The measurement itself (callable directly, e.g. from a plain `main.swift`).
    func benchmark() async throws {
        let fileManager = FileManager.default
        let work = URL(fileURLWithPath: workDirectory).standardizedFileURL
        try? fileManager.removeItem(at: work)
        try fileManager.createDirectory(at: work, withIntermediateDirectories: true)
        let executable = URL(fileURLWithPath: terraform).standardizedFileURL
        let runner = TerraformRunner(
            configuration: .init(
                executable: executable,
                toolsDirectory: work.appendingPathComponent("tools"),
                providerInstallation: .filesystemMirror(URL(fileURLWithPath: mirror).standardizedFileURL)),
            logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
        let version = try await runner.version()
        print("| resources | runner median (s) | shell median (s) | overhead of medians | runner min (s) | shell min (s) | overhead of minima |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizes.split(separator: ",").compactMap({ Int($0) }) {
            var runnerTimes: [Double] = [], shellTimes: [Double] = []
            for repetition in 0..<repetitions {
                // Alternate the order so cache warmth favours neither side.
                for variant in repetition % 2 == 0 ? [0, 1] : [1, 0] {
                    let run = try TerraformRunner.makeRunDirectory(under: work, name: "s\(size)-r\(repetition)-v\(variant)")
                    let project = try Self.project(in: run, resources: size)
                    if variant == 0 {
                        runnerTimes.append(try await timeRunner(runner, project: project, run: run))
                    } else {
                        shellTimes.append(try await timeShell(runner, executable: executable, project: project, run: run))
                    }
                    try? fileManager.removeItem(at: run)
                }
            }
            let runnerMedian = Self.median(runnerTimes), shellMedian = Self.median(shellTimes)
            let runnerMin = runnerTimes.min() ?? .nan, shellMin = shellTimes.min() ?? .nan
            print("| \(size) | \(Self.format(runnerMedian)) | \(Self.format(shellMedian)) | \(Self.percent(runnerMedian, shellMedian)) "
                + "| \(Self.format(runnerMin)) | \(Self.format(shellMin)) | \(Self.percent(runnerMin, shellMin)) |")
        }

        if phases > 0 {
            try await phaseBenchmark(runner, executable: executable, work: work)
        }

        // A large plan, produced by terraform once, parsed several times.
        let run = try TerraformRunner.makeRunDirectory(under: work, name: "parse")
        let project = try Self.project(in: run, resources: parseResources)
        let invocation = TerraformRunner.Invocation(directory: project)
        _ = try await runner.initialize(invocation)
        let planFile = run.appendingPathComponent("plan.tfplan")
        let clock = ContinuousClock()
        let planStart = clock.now
        _ = try await runner.plan(invocation, planFile: planFile)
        let planSeconds = Self.seconds(clock.now - planStart)
        let jsonFile = run.appendingPathComponent("plan.json")
        let showStart = clock.now
        try Self.runDirect(executable, ["show", "-json", planFile.path], in: project,
                           environment: try Self.environment(runner, home: run.appendingPathComponent("home")), stdout: jsonFile)
        let showSeconds = Self.seconds(clock.now - showStart)
        let json = try Data(contentsOf: jsonFile)
        var parseTimes: [Double] = []
        var summary: PlanModel?
        for _ in 0..<max(repetitions, 5) {
            let start = clock.now
            summary = try PlanModel(planJSON: json)
            parseTimes.append(Self.seconds(clock.now - start))
        }
        // Redaction of the same JSON as `show` does it, with ten credential
        // values to look for (none occurs: the whole document is searched).
        let credentials = Redactor(secrets: (0..<10).map { "credential-value-\($0)-\(UUID().uuidString)" })
        var redactionTimes: [Double] = []
        for _ in 0..<max(repetitions, 5) {
            let start = clock.now
            _ = try PlanJSONRedaction.redact(json, redactor: credentials)
            redactionTimes.append(Self.seconds(clock.now - start))
        }
        print("")
        print("| \(parseResources)-resource plan | seconds |")
        print("|---|---:|")
        print("| terraform plan -out | \(Self.format(planSeconds)) |")
        print("| terraform show -json (\(json.count / 1024) KiB) | \(Self.format(showSeconds)) |")
        print("| PlanModel(planJSON:) median of \(parseTimes.count) | \(Self.format(Self.median(parseTimes))) |")
        print("| PlanJSONRedaction.redact, 10 credentials, median of \(redactionTimes.count) | \(Self.format(Self.median(redactionTimes))) |")
        print("")
        print("terraform \(version.version); summary create=\(summary?.create ?? -1); repetitions=\(repetitions)")
        try? fileManager.removeItem(at: work)
    }

    /// Each command alone, runner and shell interleaved, so the machine's
    /// load drifts over both alike; also the CPU this process spends per
    /// runner command (what the runner adds on top of waiting for terraform).
    private func phaseBenchmark(_ runner: TerraformRunner, executable: URL, work: URL) async throws {
        let run = try TerraformRunner.makeRunDirectory(under: work, name: "phases")
        let project = try Self.project(in: run, resources: phases)
        let environment = try Self.environment(runner, home: run.appendingPathComponent("home"))
        let tf = "'\(executable.path)'"
        let planFile = run.appendingPathComponent("plan.tfplan")
        let invocation = TerraformRunner.Invocation(directory: project)
        var rows: [(String, [Double], [Double], [Double])] = []

        var runnerTimes: [Double] = [], shellTimes: [Double] = [], cpu: [Double] = []
        for index in 0..<repetitions {
            let ours = try Self.project(in: run.appendingPathComponent("init-\(index)-runner"), resources: phases)
            let theirs = try Self.project(in: run.appendingPathComponent("init-\(index)-shell"), resources: phases)
            let (seconds, spent) = try await Self.measure {
                guard try await runner.initialize(.init(directory: ours)).outcome == .succeeded else { throw ValidationError("init failed") }
            }
            runnerTimes.append(seconds)
            cpu.append(spent)
            shellTimes.append(try Self.timeShellCommand("\(tf) init -input=false -no-color -backend=true > init.log", in: theirs, environment))
        }
        rows.append(("init", runnerTimes, shellTimes, cpu))
        _ = try await runner.initialize(invocation)

        runnerTimes = []; shellTimes = []; cpu = []
        for _ in 0..<repetitions {
            let (seconds, spent) = try await Self.measure {
                guard try await runner.plan(invocation, planFile: planFile).plan != nil else { throw ValidationError("plan failed") }
            }
            runnerTimes.append(seconds)
            cpu.append(spent)
            shellTimes.append(try Self.timeShellCommand(
                "\(tf) plan -input=false -no-color -detailed-exitcode -lock-timeout=0s -out='\(run.path)/shell.tfplan' > plan.log || [ $? -eq 2 ]",
                in: project, environment))
        }
        rows.append(("plan -out", runnerTimes, shellTimes, cpu))

        runnerTimes = []; shellTimes = []; cpu = []
        for _ in 0..<repetitions {
            let (seconds, spent) = try await Self.measure { _ = try await runner.show(invocation, planFile: planFile) }
            runnerTimes.append(seconds)
            cpu.append(spent)
            shellTimes.append(try Self.timeShellCommand(
                "\(tf) show -json -no-color '\(planFile.path)' > show.json && \(tf) show -no-color '\(planFile.path)' > show.txt",
                in: project, environment))
        }
        rows.append(("show -json + show", runnerTimes, shellTimes, cpu))

        print("")
        print("| \(phases) null_resources | runner median (s) | shell median (s) | runner min (s) | shell min (s) | runner CPU median (s) |")
        print("|---|---:|---:|---:|---:|---:|")
        for (name, ours, theirs, spent) in rows {
            print("| \(name) | \(Self.format(Self.median(ours))) | \(Self.format(Self.median(theirs))) | \(Self.format(ours.min() ?? .nan)) "
                + "| \(Self.format(theirs.min() ?? .nan)) | \(Self.format(Self.median(spent))) |")
        }
    }

    /// Wall-clock seconds and this process's CPU seconds (user + system) spent in `body`.
    private static func measure(_ body: () async throws -> Void) async throws -> (Double, Double) {
        func cpuSeconds() -> Double {
            var usage = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }
        let clock = ContinuousClock()
        let start = clock.now, cpuStart = cpuSeconds()
        try await body()
        return (seconds(clock.now - start), cpuSeconds() - cpuStart)
    }

    private static func timeShellCommand(_ command: String, in directory: URL, _ environment: [String: String]) throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try runDirect(URL(fileURLWithPath: "/bin/sh"), ["-c", command], in: directory, environment: environment, stdout: nil)
        return seconds(clock.now - start)
    }

    private func timeRunner(_ runner: TerraformRunner, project: URL, run: URL) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        let invocation = TerraformRunner.Invocation(directory: project)
        guard try await runner.initialize(invocation).outcome == .succeeded else { throw ValidationError("init failed") }
        let plan = try await runner.plan(invocation, planFile: run.appendingPathComponent("plan.tfplan"))
        guard let saved = plan.plan else { throw ValidationError("plan failed: \(plan.command.outcome)") }
        _ = try await runner.show(invocation, planFile: saved.file)
        return Self.seconds(clock.now - start)
    }

    /// The baseline: one /bin/sh script with the same four terraform commands
    /// the runner issues (init, plan -out, show -json, show), same environment.
    private func timeShell(_ runner: TerraformRunner, executable: URL, project: URL, run: URL) async throws -> Double {
        let script = run.appendingPathComponent("bench.sh")
        let tf = executable.path
        try """
        set -e
        cd '\(project.path)'
        '\(tf)' init -input=false -no-color -backend=true > init.log
        '\(tf)' plan -input=false -no-color -detailed-exitcode -lock-timeout=0s -out='\(run.path)/plan.tfplan' > plan.log || [ $? -eq 2 ]
        '\(tf)' show -json -no-color '\(run.path)/plan.tfplan' > show.json
        '\(tf)' show -no-color '\(run.path)/plan.tfplan' > show.txt
        """.write(to: script, atomically: true, encoding: .utf8)
        let clock = ContinuousClock()
        let start = clock.now
        try Self.runDirect(URL(fileURLWithPath: "/bin/sh"), [script.path], in: project,
                           environment: try Self.environment(runner, home: run.appendingPathComponent("home")), stdout: nil)
        return Self.seconds(clock.now - start)
    }

    /// The runner's environment, with a fresh HOME as the runner gives each command.
    private static func environment(_ runner: TerraformRunner, home: URL) throws -> [String: String] {
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return ["PATH": "/usr/bin:/bin", "HOME": home.path, "TF_CLI_CONFIG_FILE": runner.cliConfigFile.path,
                "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"]
    }

    private static func runDirect(_ executable: URL, _ arguments: [String], in directory: URL, environment: [String: String], stdout: URL?) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = environment
        if let stdout {
            _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: stdout)
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("\(executable.lastPathComponent) failed") }
    }

    private static func project(in run: URL, resources: Int) throws -> URL {
        let project = run.appendingPathComponent("project")
        try FileManager.default.createDirectory(at: project, withIntermediateDirectories: true)
        try """
        resource "null_resource" "r" {
          count    = \(resources)
          triggers = { index = count.index }
        }
        """.write(to: project.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        return project
    }

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func format(_ value: Double) -> String { String(format: "%.3f", value) }

    private static func percent(_ value: Double, _ baseline: Double) -> String {
        String(format: "%+.1f%%", (value - baseline) / baseline * 100)
    }
}
