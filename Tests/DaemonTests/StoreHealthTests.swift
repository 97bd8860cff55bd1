import Foundation
import LockstepCore
import RunStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A store that fails `PRAGMA quick_check` or cannot be written is not ready, with the
/// reason (issue 11, point 10), on the real `lockstep serve`. Uses the `sqlite3` command to
/// find a table's page and to hold the store's write lock as another process would.
@Suite(.serialized)
struct StoreHealthTests {
    static let sqlite3 = "/usr/bin/sqlite3"

    /// Starts a daemon once so the store exists, then stops it (its WAL is checkpointed).
    func makeStore(_ world: DaemonWorld) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.sqlite3), "the sqlite3 command is needed (apt-get install sqlite3)")
        let first = try await world.startReadyDaemon()
        kill(first.processIdentifier, SIGTERM)
        #expect(try await world.waitForExit(first, seconds: 30))
    }

    @Test("a damaged page: /readyz is 503 naming the failed integrity check, the log says so, and the daemon keeps serving reads")
    func corruptStore() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try await makeStore(world)
        let query = try run(Self.sqlite3, [world.storePath,
                                           "SELECT rootpage FROM sqlite_master WHERE name = 'run_log_chunks'; PRAGMA page_size;"])
        let numbers = query.out.split(separator: "\n").compactMap { Int($0) }
        try #require(numbers.count == 2, "sqlite3: \(query.out) \(query.err)")
        let (page, pageSize) = (numbers[0], numbers[1])
        // Scribble over that table's root page: the b-tree page header becomes invalid.
        let handle = try #require(FileHandle(forWritingAtPath: world.storePath))
        try handle.seek(toOffset: UInt64((page - 1) * pageSize))
        handle.write(Data(repeating: 0xA5, count: 64))
        try handle.close()

        let daemon = try world.startDaemon()
        try await eventually("/readyz to report the damaged store", seconds: 60) {
            guard let ready = try? world.http("GET", "/readyz", as: nil) else { return false }
            return ready.status == 503 && (ready.json["status"] as? String ?? "").contains("STORE DAMAGED")
        }
        let status = try world.http("GET", "/readyz", as: nil).json["status"] as? String ?? ""
        #expect(status.contains("integrity check"), "\(status)")
        #expect(!status.contains(world.storePath), "/readyz answers anyone: no path")
        #expect(world.daemonLogs.contains("the store is not usable"))
        #expect(daemon.isRunning)
    }

    @Test("a store another process keeps locked for writing: /readyz is 503 saying it cannot be written")
    func unwritableStore() async throws {
        let world = try DaemonWorld()
        defer { world.cleanup() }
        try await makeStore(world)
        // Another process holds the write lock and never lets go (until the test ends).
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: Self.sqlite3)
        holder.arguments = [world.storePath]
        let input = Pipe()
        holder.standardInput = input
        holder.standardOutput = FileHandle.nullDevice
        holder.standardError = FileHandle.nullDevice
        try holder.run()
        defer {
            try? input.fileHandleForWriting.close()
            if holder.isRunning { kill(holder.processIdentifier, SIGKILL) }
            holder.waitUntilExit()
        }
        input.fileHandleForWriting.write(Data("BEGIN IMMEDIATE;\nSELECT 1;\n".utf8))

        let daemon = try world.startDaemon()
        try await eventually("/readyz to report the store cannot be written", seconds: 90) {
            guard let ready = try? world.http("GET", "/readyz", as: nil) else { return false }
            return ready.status == 503 && (ready.json["status"] as? String ?? "").contains("STORE NOT WRITABLE")
        }
        #expect(world.daemonLogs.contains("the store is not usable"))
        #expect(daemon.isRunning)
    }
}
