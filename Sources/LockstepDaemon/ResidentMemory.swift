import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Keeps an idle daemon's resident memory to what it uses while idle.
///
/// What holds an idle daemon's memory (measured on a release build, docs/ARCHITECTURE.md):
/// little of it is the daemon's own data. Most is code mapped from files — the `lockstep`
/// binary (Hummingbird, NIO, GRDB, swift-crypto and the rest are linked in), the Swift
/// runtime and Foundation, ICU's data, OpenSSL — and a page of code, once run, stays mapped
/// (with its neighbours: the kernel maps pages around each fault) for the process's
/// lifetime, although most of it ran once at start-up (config parsing, confinement checks,
/// the first pass) or runs only when a release is planned. The rest is malloc's: freed
/// memory that glibc keeps in per-thread arenas.
///
/// So, once the daemon has nothing to do:
/// * its read-only file mappings stop mapping the pages they hold (`MADV_DONTNEED`): the
///   pages are the file's, unmodified, and stay in the page cache (shared, reclaimable);
///   the next use maps them again from there. Only mappings that are private, not
///   writable and hold no page of their own (`Anonymous: 0`, `Private_Dirty: 0`) qualify:
///   for those, dropping the mapping's pages cannot lose a byte. (`MADV_PAGEOUT` would be
///   gentler but the kernel refuses it for files the process may not write, such as its
///   own executable.) Measured on the example: RSS 54 MiB before, 25 MiB once idle again;
/// * `malloc_trim` returns the free memory at the top and inside malloc's heaps.
///
/// And at start, malloc is limited to two arenas: a daemon with a handful of threads gains
/// nothing from one arena per thread but keeps each one's free memory.
enum ResidentMemory {
    /// At most this many malloc arenas (glibc's default is eight per core).
    static let mallocArenas: Int32 = 2

    /// Limits malloc's arenas; call before the daemon starts its threads.
    static func limitArenas() {
        // M_ARENA_MAX is -8 in glibc's <malloc.h> (which Swift's Glibc module does not export).
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        if let mallopt: MallOpt = glibcFunction("mallopt") { _ = mallopt(-8, mallocArenas) }
    }

    /// Returns the free memory malloc holds to the kernel (glibc's `malloc_trim`).
    static func trimMalloc() {
        typealias MallocTrim = @convention(c) (Int) -> Int32
        if let trim: MallocTrim = glibcFunction("malloc_trim") { _ = trim(0) }
    }

    /// A glibc function looked up by name; nil with another C library (which has no such knob).
    private static func glibcFunction<F>(_ name: String) -> F? {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(symbol, to: F.self)
    }

    /// Hands the clean read-only file pages back and trims malloc. Returns the bytes of the
    /// mappings it advised (not all of them were resident), or nil when `/proc/self/smaps`
    /// could not be read.
    @discardableResult
    static func release() -> Int? {
        // Read to the end: `String(contentsOfFile:)` stops after the first read of a /proc file.
        guard let file = FileHandle(forReadingAtPath: "/proc/self/smaps") else { return nil }
        defer { try? file.close() }
        guard let data = try? file.readToEnd() else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        var advised = 0
        for mapping in releasable(smaps: text) {
            guard let start = UnsafeMutableRawPointer(bitPattern: mapping.start) else { continue }
            let length = Int(mapping.end - mapping.start)
            if madvise(start, length, MADV_DONTNEED) == 0 { advised += length }
        }
        trimMalloc()
        return advised
    }

    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var path: String
    }

    /// The mappings of `smaps` that are backed by a file, private, not writable and hold no
    /// anonymous (copied-on-write) page: paging those out can only cost a later re-read.
    static func releasable(smaps: String) -> [Mapping] {
        var result: [Mapping] = []
        var current: Mapping?
        var eligible = false
        func finish() {
            if let current, eligible { result.append(current) }
        }
        for line in smaps.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, !first.hasSuffix(":"), first.contains("-") {
                finish()
                current = nil
                eligible = false
                let bounds = first.split(separator: "-")
                guard fields.count >= 6, bounds.count == 2, let start = UInt(bounds[0], radix: 16),
                      let end = UInt(bounds[1], radix: 16), end > start else { continue }
                let perms = Array(fields[1])
                let path = fields[5...].joined(separator: " ")
                // Regular files only: not devices, memfd or System V shared memory.
                guard perms.count == 4, perms[1] == "-", perms[3] == "p", path.hasPrefix("/"),
                      !path.hasPrefix("/dev/"), !path.hasPrefix("/memfd:"), !path.hasPrefix("/SYSV"),
                      !path.hasSuffix(" (deleted)") else { continue }
                current = Mapping(start: start, end: end, path: path)
                eligible = true
            } else if current != nil, fields.count >= 2, fields[0] == "Anonymous:" || fields[0] == "Private_Dirty:" {
                if fields[1] != "0" { eligible = false }
            }
        }
        finish()
        return result
    }
}
