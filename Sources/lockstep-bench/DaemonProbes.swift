import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// What the daemon benchmark reads from outside the daemon: child processes started without
// blocking a thread, /proc figures (memory, CPU, threads, mappings), and the JSON API.

/// Child processes, awaited through their termination handler (no thread waits for them).
enum Child {
    /// Runs `executable` and returns its exit status; stdout and stderr go to `output`
    /// (a file path) or /dev/null.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                    directory: URL? = nil, output: String? = nil, check: Bool = true) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = directory }
        let sink: FileHandle
        if let output {
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            sink = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        } else {
            sink = FileHandle(forWritingAtPath: "/dev/null") ?? FileHandle.nullDevice
        }
        defer { try? sink.close() }
        process.standardOutput = sink
        process.standardError = sink
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        if check && status != 0 {
            throw ValidationError("\(executable) \(arguments.prefix(3).joined(separator: " ")) … exited with \(status)")
        }
        return status
    }

    /// Runs a /bin/sh script; fails on a non-zero exit.
    static func sh(_ script: String) async throws {
        let status = try await run("/bin/sh", ["-c", script], check: false)
        guard status == 0 else { throw ValidationError("script failed (\(status)): \(script.prefix(300))") }
    }

    /// A command's standard output (trimmed), or nil when it fails.
    static func capture(_ executable: String, _ arguments: [String]) async -> String? {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        guard (try? await run(executable, arguments, output: file, check: false)) == 0,
              let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Figures of a running process from /proc.
enum ProcFS {
    /// A field of /proc/PID/status in kB (VmRSS, VmHWM) or as a count (Threads); -1 when absent.
    static func status(_ pid: Int32, _ name: String) -> Int {
        guard let text = read("/proc/\(pid)/status") else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) } ?? -1
        }
        return -1
    }

    /// utime + stime in clock ticks (100 per second on Linux), from /proc/PID/stat.
    static func cpuTicks(_ pid: Int32) -> Int {
        guard let text = read("/proc/\(pid)/stat"),
              let end = text.lastIndex(of: ")") else { return 0 }
        // Fields after the command name start at field 3 (state); utime is field 14, stime 15.
        let fields = text[text.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return user + system
    }

    /// A /proc file read to its end (its size reads as 0, so a one-buffer read would cut it).
    static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.readToEnd()).map { String(decoding: $0 ?? Data(), as: UTF8.self) }
    }

    static func loadAverage() -> String {
        let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?"
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// One group of mappings in /proc/PID/smaps.
    struct MemoryGroup {
        var name: String
        var mappings = 0
        var sizeKiB = 0
        var rssKiB = 0
        var pssKiB = 0
    }

    private struct Mapping {
        var start: UInt64, end: UInt64
        var perms: String
        var path: String
        var size = 0, rss = 0, pss = 0
        var anonymous: Bool { path.isEmpty }
    }

    /// The resident memory of a process grouped by what holds it: its own binary, each shared
    /// library, `[heap]`, the main stack, thread stacks, glibc malloc arenas and other anonymous
    /// mappings. Thread stacks are anonymous read-write mappings right above a one-page
    /// PROT_NONE guard (glibc's pthread stacks); arenas are anonymous mappings that, with the
    /// PROT_NONE reservation right after them, fill a 64 MiB-aligned 64 MiB block (glibc's
    /// HEAP_MAX_SIZE on 64-bit).
    static func memoryGroups(_ pid: Int32, binary: String) -> [MemoryGroup] {
        guard let text = read("/proc/\(pid)/smaps") else { return [] }
        var maps: [Mapping] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if first.contains("-"), !first.hasSuffix(":"), fields.count >= 5 {
                let range = first.split(separator: "-")
                guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16) else { continue }
                maps.append(Mapping(start: start, end: end, perms: String(fields[1]),
                                    path: fields.count > 5 ? fields[5...].joined(separator: " ") : ""))
            } else if !maps.isEmpty, fields.count >= 2, let value = Int(fields[1]) {
                switch first {
                case "Size:": maps[maps.count - 1].size = value
                case "Rss:": maps[maps.count - 1].rss = value
                case "Pss:": maps[maps.count - 1].pss = value
                default: break
                }
            }
        }
        let arena: UInt64 = 64 << 20
        var groups: [String: MemoryGroup] = [:]
        for (i, map) in maps.enumerated() {
            let name: String
            if map.path == binary || (!map.path.isEmpty && URL(fileURLWithPath: map.path).resolvingSymlinksInPath().path == binary) {
                name = "the lockstep binary's own mappings"
            } else if map.path.hasPrefix("[") {
                name = map.path == "[stack]" ? "[stack] (main thread)" : map.path
            } else if !map.anonymous {
                let base = URL(fileURLWithPath: map.path).lastPathComponent
                name = base.contains(".so") ? "lib " + base : "file " + base
            } else if map.perms.hasPrefix("---") {
                // Guards and reservations: no resident pages; counted with what they belong to.
                let next = i + 1 < maps.count ? maps[i + 1] : nil
                if map.size == 4, let next, next.anonymous, next.start == map.end, next.perms.hasPrefix("rw") {
                    name = "anonymous: thread stacks (guard page + stack)"
                } else if map.end % arena == 0, i > 0, maps[i - 1].anonymous, maps[i - 1].end == map.start,
                          maps[i - 1].start % arena == 0 {
                    name = "anonymous: malloc arenas (64 MiB reservations)"
                } else {
                    name = "anonymous: other"
                }
            } else {
                let previous = i > 0 ? maps[i - 1] : nil
                let next = i + 1 < maps.count ? maps[i + 1] : nil
                if let previous, previous.anonymous, previous.perms.hasPrefix("---"), previous.size == 4, previous.end == map.start {
                    name = "anonymous: thread stacks (guard page + stack)"
                } else if map.start % arena == 0,
                          map.end - map.start == arena
                            || (next.map { $0.anonymous && $0.perms.hasPrefix("---") && $0.start == map.end && $0.end % arena == 0 } ?? false) {
                    name = "anonymous: malloc arenas (64 MiB reservations)"
                } else {
                    name = "anonymous: other"
                }
            }
            var group = groups[name] ?? MemoryGroup(name: name)
            // Count a stack or an arena once (its read-write part), not its guard.
            if !(map.anonymous && map.perms.hasPrefix("---") && name != "anonymous: other") { group.mappings += 1 }
            group.sizeKiB += map.size
            group.rssKiB += map.rss
            group.pssKiB += map.pss
            groups[name] = group
        }
        return groups.values.sorted { $0.rssKiB != $1.rssKiB ? $0.rssKiB > $1.rssKiB : $0.name < $1.name }
    }
}

/// The daemon's JSON API, read with the example's token.
enum API {
    /// The example's API token of alice (its SHA-256 sits in the generated agent config).
    static let token = "alice-example-token"

    static func get(_ url: String) async throws -> (Data, Int) {
        guard let address = URL(string: url) else { throw ValidationError("bad URL \(url)") }
        var request = URLRequest(url: address)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 10
        let (data, response) = try await URLSession.shared.data(for: request)
        return (data, (response as? HTTPURLResponse)?.statusCode ?? 0)
    }

    static func json(_ url: String) async -> [String: Any]? {
        guard let (data, status) = try? await get(url), status == 200 else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// Run summaries of `GET /api/v1/runs` with the given query.
    static func runs(_ server: String, query: String) async -> [[String: Any]]? {
        await json("\(server)/api/v1/runs?\(query)")?["runs"] as? [[String: Any]]
    }

    /// An ISO 8601 time with or without fractional seconds, and whether it had them.
    static func date(_ value: Any?) -> (date: Date, fractional: Bool)? {
        guard let text = value as? String else { return nil }
        let formatter = ISO8601DateFormatter()
        if text.contains(".") {
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return formatter.date(from: text).map { ($0, true) }
        }
        return formatter.date(from: text).map { ($0, false) }
    }
}
