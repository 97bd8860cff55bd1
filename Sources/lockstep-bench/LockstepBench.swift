import ArgumentParser

/// Lockstep's benchmarks: a program, never timed unit tests. Results go to BENCHMARKS.md.
@main
struct LockstepBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep-bench",
        abstract: "Measure Lockstep against the tools it replaces.",
        subcommands: [GitBenchmark.self, TerraformBenchmark.self, DaemonBenchmark.self, WebhookBenchmark.self, SignatureBenchmark.self]
    )
}

