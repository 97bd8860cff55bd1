import ArgumentParser
import Foundation
import LockstepCore
import RunStore

/// `lockstep audit`: offline checks of a store's hash-chained audit log (docs/CONTRACT.md §5;
/// docs/THREAT-MODEL.md §5.2).
///
/// Both subcommands open the store read-only: they never create, migrate or write the
/// file, so they can be pointed at a live store, a backup or evidence copied off a host.
public struct AuditCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check or export the audit log of a store.",
        subcommands: [AuditVerifyCommand.self, AuditExportCommand.self]
    )

    public init() {}
}

/// `lockstep audit verify --store FILE [--expect-head HEX]`.
///
/// Exit status: 0 when the chain is intact, 1 when it is broken (the first broken entry
/// is named), 2 when the store cannot be read at all.
public struct AuditVerifyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the audit log's hash chain and name the first broken entry.",
        discussion: """
            Someone who edits the store to hide an apply breaks the chain at that entry. \
            Entries cut off the end, or a chain rewritten from the start, are only detected \
            against a head hash kept outside the store: pass it with --expect-head.
            Exit status: 0 intact, 1 broken, 2 the store could not be read.
            """
    )

    @Option(help: "The store file (SQLite). Opened read-only.")
    var store: String

    @Option(name: .customLong("expect-head"), help: "The head hash (64 hex characters) the chain must end at.")
    var expectHead: String?

    public init() {}

    public func validate() throws {
        if let expectHead, (try? AuditHash(hex: expectHead)) == nil {
            throw ValidationError("--expect-head must be 64 hexadecimal characters")
        }
    }

    public func run() async throws {
        let expected = try expectHead.map { hex throws(CoreError) in try AuditHash(hex: hex) }
        let entries: [AuditEntry]
        do {
            entries = try await SQLiteRunStore.openReadOnly(path: store).auditEntries()
        } catch let error as StoreError where error.code == .corrupt {
            // A row edited into something unreadable is a broken chain, not an unusable store.
            print("audit log BROKEN: \(error.description)")
            throw ExitCode(1)
        } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        switch AuditChain.verify(entries, expectedHead: expected) {
        case let .intact(count, head):
            print("audit log intact: \(count) entr\(count == 1 ? "y" : "ies"), head \(head.hex)")
        case let .broken(found):
            print("audit log BROKEN at sequence \(found.sequence.map(String.init) ?? "none"), "
                  + "position \(found.index + 1), code \(found.code)")
            print(found.description)
            throw ExitCode(1)
        }
    }
}

/// `lockstep audit export --store FILE [--output FILE]`: one JSON object per line, keys
/// sorted, every field including both hashes, so the chain can be re-checked elsewhere.
public struct AuditExportCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the audit log as JSON lines (one entry per line, keys sorted).",
        discussion: """
            Fields: sequence, time (ISO 8601, UTC), epoch_ms, actor, kind, project, environment, \
            run_id (null when absent), payload (object of strings), previous_hash, hash. \
            hash = SHA-256(previous_hash || canonical encoding v1 of the other fields).
            """
    )

    @Option(help: "The store file (SQLite). Opened read-only.")
    var store: String

    @Option(help: "Write to this file (replaced atomically) instead of standard output.")
    var output: String?

    public init() {}

    public func run() async throws {
        if let output, Self.sameFile(output, store) {
            // An atomic replace of the output would replace the store itself.
            throw ValidationError("--output names the store file itself; choose another file")
        }
        let entries: [AuditEntry]
        do {
            entries = try await SQLiteRunStore.openReadOnly(path: store).auditEntries()
        } catch {
            printError("error: \(error)")
            throw ExitCode((error as? StoreError)?.code == .corrupt ? 1 : 2)
        }
        var data = Data()
        for entry in entries {
            data.append(try AuditExportLine.encode(entry))
            data.append(0x0A)
        }
        guard let output else {
            FileHandle.standardOutput.write(data)
            return
        }
        do {
            try data.write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            printError("error: cannot write \(output)")
            throw ExitCode(2)
        }
        printError("exported \(entries.count) audit entries to \(output)")
    }

    /// Whether two paths name the same file (or the store's WAL companions).
    static func sameFile(_ output: String, _ store: String) -> Bool {
        func resolved(_ path: String) -> String {
            URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        }
        let target = resolved(output)
        let storePath = resolved(store)
        return [storePath, storePath + "-wal", storePath + "-shm"].contains(target)
    }
}

/// The export format of one audit entry.
enum AuditExportLine {
    private enum Key: String, CodingKey {
        case sequence, time, actor, kind, project, environment, payload, hash
        case epochMilliseconds = "epoch_ms"
        case runID = "run_id"
        case previousHash = "previous_hash"
    }

    private struct Line: Encodable {
        let entry: AuditEntry

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(entry.sequence, forKey: .sequence)
            try container.encode(AuditExportLine.timestamp(entry.epochMilliseconds), forKey: .time)
            try container.encode(entry.epochMilliseconds, forKey: .epochMilliseconds)
            try container.encode(entry.actor, forKey: .actor)
            try container.encode(entry.kind.rawValue, forKey: .kind)
            try container.encode(entry.target?.project.rawValue, forKey: .project)
            try container.encode(entry.target?.environment.rawValue, forKey: .environment)
            try container.encode(entry.runID?.rawValue, forKey: .runID)
            try container.encode(entry.payload, forKey: .payload)
            try container.encode(entry.previousHash.hex, forKey: .previousHash)
            try container.encode(entry.hash.hex, forKey: .hash)
        }
    }

    static func encode(_ entry: AuditEntry) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(Line(entry: entry))
    }

    /// `2027-01-15T08:00:00.000Z`: UTC with milliseconds, the chain's resolution.
    static func timestamp(_ milliseconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
