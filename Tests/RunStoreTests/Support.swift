import Foundation
import Testing
import LockstepCore
@testable import RunStore

// Fixture constructors; they crash on invalid literals, which is a test bug, never input.
func env(_ name: String) -> EnvironmentName { try! EnvironmentName(name) }
func project(_ name: String) -> ProjectName { try! ProjectName(name) }
func identity(_ name: String) -> IdentityName { try! IdentityName(name) }
func runID(_ name: String) -> RunID { try! RunID(name) }
func version(_ text: String) -> SemanticVersion { try! SemanticVersion(text) }
func digest(_ fill: Character) -> Digest { try! Digest(String(repeating: fill, count: 64)) }
func object(_ fill: Character) -> GitObjectID { try! GitObjectID(String(repeating: fill, count: 40)) }
func target(_ environment: String, _ projectName: String = "network") -> TargetID {
    TargetID(project: project(projectName), environment: env(environment))
}

/// The controllable clock of these tests: a fixed start, moved by hand.
let t0 = Date(timeIntervalSince1970: 1_800_000_000)
func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

func newRun(_ id: String, _ environment: String = "prod", version text: String = "1.0.0", pin: RollbackPin? = nil,
            commit: Character = "c", tagger: String? = "alice@example.com", verify: Bool = true) -> NewRun {
    NewRun(id: runID(id), target: target(environment), tagName: "\(environment)/v\(text)", tagObject: object("a"),
           version: version(text), commit: object(commit), tree: object("e"), taggerEmail: tagger, rollbackPin: pin,
           hasVerifyCommands: verify)
}

func step(_ from: RunState, _ to: RunState, _ code: TransitionReason.Code = .planStarted,
          detail: String? = nil) -> RunTransition {
    RunTransition(from: from, to: to, reason: TransitionReason(code, detail: detail))
}

/// The implementations of the port. Behavioural tests take one as their argument and run
/// against each, so both keep one contract; SQLite-only facts (files, migrations, integrity,
/// crashes, several processes) are tested on SQLite alone.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case memory

    var testDescription: String { self == .sqlite ? "SQLite" : "in memory" }

    /// A new empty store (for SQLite, a new file in `scratch`).
    func make(_ scratch: Scratch, maxLogBytesPerRun: Int = 1 << 20) throws -> any RunStore {
        switch self {
        case .sqlite: try SQLiteRunStore(path: scratch.store, maxLogBytesPerRun: maxLogBytesPerRun)
        case .memory: InMemoryRunStore(maxLogBytesPerRun: maxLogBytesPerRun)
        }
    }
}

/// Moves a run along `path` (consecutive states), each step a successful compare-and-set.
func walk(_ store: any RunStore, _ id: String, _ path: [RunState], at time: Date = t0,
          sourceLocation: SourceLocation = #_sourceLocation) async throws {
    for (from, to) in zip(path, path.dropFirst()) {
        let update = to == .checking ? RunUpdate(planDigest: digest("d")) : RunUpdate()
        let moved = try await store.transition(runID(id), step(from, to), update: update, at: time, actor: "lockstep")
        #expect(moved, "run \(id) did not move \(from) → \(to)", sourceLocation: sourceLocation)
    }
}

let toApproved: [RunState] = [.queued, .planning, .checking, .awaitingApproval, .approved]
let toVerified: [RunState] = toApproved + [.applying, .applied, .verifying, .verified]

/// A scratch directory removed when the value is dropped at the end of a test.
final class Scratch {
    let path: String

    init(_ name: String = #function) throws {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        path = NSTemporaryDirectory() + "lockstep-store-tests/\(safe)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    var store: String { path + "/lockstep.sqlite" }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program (never through a shell) and collects its output.
func runProcess(_ executable: String, _ arguments: [String], input: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
    try process.run()
    if let input {
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try inPipe.fileHandleForWriting.close()
    }
    // Read stderr on another thread while this one reads stdout, so neither pipe can fill up.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errBox.data = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let errData = errBox.data
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs SQL against a store file with the `sqlite3` CLI: the way someone editing the file
/// by hand would, outside Lockstep.
@discardableResult
func sqlite3(_ path: String, _ sql: String) throws -> String {
    let result = try runProcess("/usr/bin/sqlite3", ["-batch", "-bail", path], input: sql)
    try #require(result.status == 0, "sqlite3 failed: \(result.stderr)")
    return result.stdout
}

func fileBytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

/// Runs `body` and returns the StoreError it throws (failing the test when it throws none).
func storeError(sourceLocation: SourceLocation = #_sourceLocation,
                _ body: () async throws -> Void) async -> StoreError? {
    do {
        try await body()
        Issue.record("expected a StoreError, nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as StoreError {
        return error
    } catch {
        Issue.record("expected a StoreError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
