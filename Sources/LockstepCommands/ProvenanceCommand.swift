import ArgumentParser
import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import Logging
import RunStore

/// `lockstep provenance RUN|ENV@VERSION --store FILE --repo PATH`: offline, prints and checks the
/// chain of one run from the merged commit to the verified apply (docs/CONTRACT.md §5).
///
/// Exit status: 0 every link holds, 1 a link is broken (the first is named), 2 the inputs could
/// not be read.
public struct ProvenanceCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "provenance",
        abstract: "Check, offline, how a run came to be: merge, tag, signer, plan, state, approvals, apply, verify.",
        discussion: """
            Reads the store read-only and a copy of the delivery repository (the daemon's mirror or \
            any clone), and checks every link against the hash-chained audit log: the merge commit on \
            the protected branch's first-parent chain, the tag object by id, its signer (verified \
            again with --config), the plan digest (recomputed when the plan file is still kept), the \
            state the plan was bound to, each approval and the digest it quoted, apply and verify.
            Exit status: 0 every link holds, 1 a link is broken, 2 the inputs could not be read.
            """
    )

    @Argument(help: "A run id, or ENV@VERSION (the newest run of that version; --project when there are several projects).")
    var run: String

    @Option(help: "The store file (SQLite). Opened read-only.")
    var store: String

    @Option(help: "The delivery repository: the daemon's mirror or a clone (a path or URL git can fetch from).")
    var repo: String

    @Option(help: "The protected branch (default: the agent config's, else main).")
    var branch: String?

    @Option(help: "The project, for ENV@VERSION when the store has runs of several projects.")
    var project: String?

    @Option(help: "The agent config: verifies the tag's signature again and checks the approval count.")
    var config: String?

    @Option(name: .customLong("expect-head"), help: "The audit head hash (64 hex characters) kept outside the store.")
    var expectHead: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: .customLong("in-toto"), help: "Print an (unsigned) in-toto statement with a SLSA provenance predicate instead, when every link holds.")
    var inToto = false

    public init() {}

    public func validate() throws {
        if json && inToto { throw ValidationError("--json and --in-toto print different documents: choose one") }
        if let expectHead, (try? AuditHash(hex: expectHead)) == nil {
            throw ValidationError("--expect-head must be 64 hexadecimal characters")
        }
    }

    public func run() async throws {
        let report: ProvenanceReport
        let inputs: ProvenanceInputs
        do {
            (report, inputs) = try await makeReport()
        } catch let error as ProvenanceInputError {
            printError("error: \(error.message)")
            throw ExitCode(2)
        }
        if inToto {
            guard let broken = report.firstBroken else {
                let statement = Provenance.statement(inputs, report: report, repo: repo)
                let data = try JSONSerialization.data(withJSONObject: statement, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                FileHandle.standardOutput.write(data + Data("\n".utf8))
                return
            }
            printError("chain BROKEN at \(broken.name): \(broken.detail); no statement is made of a broken chain")
            throw ExitCode(1)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            FileHandle.standardOutput.write(try encoder.encode(report) + Data("\n".utf8))
        } else {
            print("provenance of run \(report.run) (\(report.target) \(report.version))")
            for link in report.links {
                print("  \(link.ok ? "ok    " : "BROKEN") \(link.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(link.detail)")
            }
            if let broken = report.firstBroken {
                print("chain BROKEN at \(broken.name): \(broken.detail)")
            } else {
                print("chain verified: every link holds")
            }
        }
        if report.firstBroken != nil { throw ExitCode(1) }
    }

    struct ProvenanceInputError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private func makeReport() async throws -> (ProvenanceReport, ProvenanceInputs) {
        var agent: AgentConfig?
        if let config {
            do { agent = try AgentConfig.load(path: config) } catch {
                throw ProvenanceInputError(error.errors.map(\.description).joined(separator: "\n"))
            }
        }
        let runStore: SQLiteRunStore
        do { runStore = try SQLiteRunStore.openReadOnly(path: store) } catch { throw ProvenanceInputError("\(error)") }
        defer { try? runStore.close() }
        let stored = try await resolveRun(runStore)
        let entries: [AuditEntry]
        let approvals: [Approval]
        do {
            entries = try await runStore.auditEntries()
            approvals = try await runStore.approvals(of: stored.id)
        } catch {
            throw ProvenanceInputError("the store could not be read: \(error)")
        }

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-provenance-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let mirror = GitMirror(remote: Remote(url: repo), path: scratch.appendingPathComponent("mirror").path,
                               logger: Logger(label: "lockstep"))
        do {
            _ = try await mirror.sync()
        } catch {
            throw ProvenanceInputError("the delivery repository \(repo) could not be read: \(error.description)")
        }
        let policy = agent?.environments[stored.target.environment]
        let inputs = ProvenanceInputs(
            run: stored, approvals: approvals, entries: entries,
            expectedHead: try expectHead.map { hex throws(CoreError) in try AuditHash(hex: hex) },
            branch: branch ?? agent?.repository.branch ?? "main",
            runsDirectory: URL(fileURLWithPath: store).deletingLastPathComponent().appendingPathComponent("runs"),
            policy: policy, otherPolicies: agent.map { Array($0.environments.values) } ?? [])
        return (await Provenance.check(inputs, mirror: mirror, scratch: scratch.appendingPathComponent("signatures")), inputs)
    }

    /// The run named by id, or the newest run of ENV@VERSION.
    private func resolveRun(_ runStore: SQLiteRunStore) async throws -> StoredRun {
        do {
            if let at = run.firstIndex(of: "@") {
                let environment = try EnvironmentName(String(run[..<at]))
                let version = try SemanticVersion(String(run[run.index(after: at)...]))
                let projectName = try project.map { text throws(CoreError) in try ProjectName(text) }
                let candidates = try await runStore.runs(target: nil, states: nil).filter {
                    $0.target.environment == environment && $0.run.version == version
                        && (projectName == nil || $0.target.project == projectName)
                }
                let projects = Set(candidates.map(\.target.project))
                guard projects.count <= 1 else {
                    throw ProvenanceInputError("\(run) has runs in several projects (\(projects.map(\.rawValue).sorted().joined(separator: ", "))): pass --project")
                }
                // Newest first: the run that applied, if any, else the latest.
                guard let chosen = candidates.first(where: { [.verified, .applied, .verifying].contains($0.state) }) ?? candidates.first else {
                    throw ProvenanceInputError("the store has no run of \(run)")
                }
                return chosen
            }
            guard let found = try await runStore.run(try RunID(run)) else { throw ProvenanceInputError("the store has no run \(run)") }
            return found
        } catch let error as ProvenanceInputError {
            throw error
        } catch let error as CoreError {
            throw ProvenanceInputError("\(displaySafe(run)) is neither a run id nor ENV@VERSION: \(error.description)")
        } catch {
            throw ProvenanceInputError("the store could not be read: \(error)")
        }
    }
}
