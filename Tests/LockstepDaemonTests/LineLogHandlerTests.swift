import Foundation
@testable import LockstepDaemon
import LockstepConfig
import Logging
import Synchronization
import Testing

/// The daemon's log lines: one event is one line in either format, whatever the values hold.
@Suite("Log lines: logfmt and JSON, one line per event, journald priorities")
struct LineLogHandlerTests {
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func add(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    static let time = Date(timeIntervalSince1970: 1_800_000_000.25)

    @Test("logfmt: time, level, msg, sorted metadata, source; plain words bare, everything else quoted")
    func logfmt() {
        let handler = LineLogHandler(format: .logfmt, level: .info)
        let line = handler.render(level: .info, message: "tag decided", metadata: [
            "target": "app/dev", "tag": "dev/v1.0.0", "tag.rejections": "", "run.id": .stringConvertible(42),
        ], source: "LockstepGate", time: Self.time)
        #expect(line == #"time=2027-01-15T08:00:00.250Z level=info msg="tag decided" run.id=42 tag=dev/v1.0.0 tag.rejections="" target=app/dev source=LockstepGate"# + "\n")
    }

    @Test("a value with a newline, quotes or `level=critical` cannot forge a line or a field", arguments: [LogFormat.logfmt, .json])
    func injection(_ format: LogFormat) throws {
        let handler = LineLogHandler(format: format, level: .info)
        let hostile = "dev/v1\nlevel=critical msg=\"owned\" \u{2028}\u{1b}[31m\\"
        let line = handler.render(level: .warning, message: "tag \(hostile)", metadata: ["tag": .string(hostile), "bad key=x": "v"],
                                  source: "LockstepGate", time: Self.time)
        #expect(line.filter { $0 == "\n" }.count == 1 && line.hasSuffix("\n"), "one line")
        #expect(!line.contains("\u{2028}") && !line.contains("\u{1b}"))
        switch format {
        case .logfmt:
            #expect(line.contains(#"tag="dev/v1\nlevel=critical msg=\"owned\" \u2028\u001b[31m\\""#))
            #expect(line.contains("bad_key_x=v"))
            #expect(line.hasPrefix("time=2027-01-15T08:00:00.250Z level=warning msg="))
        case .json:
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
            #expect(object["tag"] == hostile && object["level"] == "warning" && object["msg"] == "tag \(hostile)")
            #expect(object["bad_key_x"] == "v" && object["source"] == "LockstepGate")
        }
    }

    @Test("under journald: a syslog priority first and no time (the journal keeps its own)")
    func journald() {
        let handler = LineLogHandler(format: .logfmt, level: .trace, journald: true)
        let levels: [(Logger.Level, String)] = [(.debug, "<7>"), (.info, "<6>"), (.notice, "<5>"), (.warning, "<4>"),
                                                (.error, "<3>"), (.critical, "<2>")]
        for (level, prefix) in levels {
            let line = handler.render(level: level, message: "m", metadata: [:], source: "s", time: Self.time)
            #expect(line == "\(prefix)level=\(level.rawValue) msg=m source=s\n")
        }
        #expect(!LineLogHandler.stderrIsJournal([:]))
        #expect(!LineLogHandler.stderrIsJournal(["JOURNAL_STREAM": "1:2"]), "another stream than this stderr")
        #expect(!LineLogHandler.stderrIsJournal(["JOURNAL_STREAM": "garbage"]))
    }

    @Test("through a Logger: the level filters, logger and call metadata merge, nested values stay one field")
    func throughLogger() throws {
        let lines = Lines()
        var logger = Logger(label: "t") { _ in LineLogHandler(format: .json, level: .info, write: { lines.add($0) }) }
        logger[metadataKey: "target"] = "app/prod"
        logger.debug("not shown")
        logger.info("plan finished", metadata: ["outcome": "changes", "counts": ["create": "1", "delete": "0"]])
        #expect(lines.all.count == 1)
        let first = try #require(lines.all.first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        #expect(object["target"] as? String == "app/prod" && object["outcome"] as? String == "changes")
        #expect(object["counts"] as? [String: String] == ["create": "1", "delete": "0"])
        #expect(object["msg"] as? String == "plan finished" && object["level"] as? String == "info")
    }
}
