import Foundation
import Testing
@testable import LockstepDaemon

@Suite("Idle memory release")
struct ResidentMemoryTests {
    /// One mapping of each kind, as /proc/PID/smaps writes them.
    static let smaps = """
        55f4dcee8000-55f4de778000 r-xp 00000000 fd:01 123 /usr/bin/lockstep
        Size:              25152 kB
        Rss:               15968 kB
        Private_Dirty:         0 kB
        Anonymous:             0 kB
        55f4de779000-55f4de834000 r--p 01890000 fd:01 123 /usr/bin/lockstep
        Size:                748 kB
        Private_Dirty:       748 kB
        Anonymous:           748 kB
        55f4de834000-55f4de9ea000 rw-p 0194b000 fd:01 123 /usr/bin/lockstep
        Anonymous:           180 kB
        7ff34c000000-7ff34e571000 r-xp 00000000 fd:01 456 /opt/swift/usr/lib/swift/linux/lib_FoundationICU.so
        Rss:                3376 kB
        Private_Dirty:         0 kB
        Anonymous:             0 kB
        7ff34e600000-7ff34e601000 r--s 00000000 fd:01 789 /var/lib/lockstep/lockstep.sqlite-shm
        Anonymous:             0 kB
        7ff34e700000-7ff34e701000 r--p 00000000 00:05 12 /dev/zero (deleted)
        Anonymous:             0 kB
        7ff34e800000-7ff34e801000 r-xp 00000000 00:01 13 /memfd:jit (deleted)
        Anonymous:             0 kB
        7ff34e900000-7ff34e901000 r-xp 00000000 fd:01 14 /usr/lib/replaced.so (deleted)
        Anonymous:             0 kB
        7ff34ea00000-7ff34ea01000 r-xp 00000000 fd:01 15 /usr/lib/patched.so
        Private_Dirty:         4 kB
        Anonymous:             4 kB
        7ff34eb00000-7ff34eb21000 rw-p 00000000 00:00 0
        Anonymous:           132 kB
        7ffe7cdd3000-7ffe7cdf4000 rw-p 00000000 00:00 0                          [stack]
        Anonymous:            12 kB

        """

    @Test("only private, read-only file mappings without a page of their own are released")
    func onlyCleanReadOnlyFileMappings() {
        let chosen = ResidentMemory.releasable(smaps: Self.smaps)
        #expect(chosen.map(\.path) == ["/usr/bin/lockstep", "/opt/swift/usr/lib/swift/linux/lib_FoundationICU.so"])
        #expect(chosen.first == ResidentMemory.Mapping(start: 0x55f4dcee8000, end: 0x55f4de778000, path: "/usr/bin/lockstep"))
    }

    @Test("releasing this test process's own code pages lowers its file-backed memory, and its code still runs")
    func releaseOnALiveProcess() throws {
        func rssFileKiB() throws -> Int {
            let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("RssFile:") })
            return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        }
        let before = try rssFileKiB()
        let advised = try #require(ResidentMemory.release())
        #expect(advised > 0)
        // Code runs from the released mappings as before (pages come back from their files).
        #expect(ResidentMemory.releasable(smaps: Self.smaps).count == 2)
        let after = try rssFileKiB()
        #expect(after < before, "RssFile \(before) KiB before, \(after) KiB after")
    }
}
