import CZlib
import Foundation
public import LockstepCore

/// Reads what Lockstep needs from inside a saved plan: terraform writes it as a zip archive
/// whose `tfstate` entry is the prior state the plan was made against. Only the start of that
/// entry is inflated: terraform writes `serial` and `lineage` before any output or resource, so a
/// large state costs no more than a small one.
///
/// Written by hand: no zip reader is among the packages this project may use, and the part
/// needed (the central directory, one stored or deflated entry) is small. Zip64 and encrypted
/// archives are refused with an error that says so.
public enum PlanArchive {
    /// The lineage and serial of the prior state inside the plan bytes `plan`.
    public static func priorState(of plan: Data) throws(TerraformRunnerError) -> StateBinding {
        let head = try entryPrefix(named: "tfstate", in: plan, maxBytes: 64 * 1024)
        return try stateHead(head, what: "the saved plan's prior state")
    }

    /// The lineage and serial at the start of a state file as terraform writes it (`state pull`
    /// prints the same): the two keys come before `outputs` and `resources`. Empty input is no state.
    public static func stateHead(_ json: Data, what: String) throws(TerraformRunnerError) -> StateBinding {
        let text = String(decoding: json, as: UTF8.self)
        if text.allSatisfy(\.isWhitespace) { return .none }
        var head = Substring(text)
        for key in ["\"outputs\"", "\"resources\""] {
            if let range = head.range(of: key) { head = head[..<range.lowerBound] }
        }
        func value(after key: String) -> Substring? {
            guard let range = head.range(of: "\"\(key)\"") else { return nil }
            var rest = head[range.upperBound...].drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
            guard rest.first == ":" else { return nil }
            rest = rest.dropFirst().drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
            return rest
        }
        guard let serialText = value(after: "serial"),
              let serial = UInt64(serialText.prefix { $0.isASCII && $0.isNumber }) else {
            throw TerraformRunnerError(.malformedOutput, "\(what) has no serial")
        }
        guard let lineageText = value(after: "lineage"), lineageText.first == "\"",
              let end = lineageText.dropFirst().firstIndex(of: "\"") else {
            throw TerraformRunnerError(.malformedOutput, "\(what) has no lineage")
        }
        let lineage = String(lineageText[lineageText.index(after: lineageText.startIndex)..<end])
        guard lineage.count <= 128, lineage.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw TerraformRunnerError(.malformedOutput, "\(what) has a lineage that is not terraform's")
        }
        return StateBinding(lineage: lineage, serial: serial)
    }

    /// The first `maxBytes` (or fewer) bytes of the entry `name`, inflated.
    static func entryPrefix(named name: String, in zip: Data, maxBytes: Int) throws(TerraformRunnerError) -> Data {
        let bytes = [UInt8](zip)
        func fail(_ why: String) -> TerraformRunnerError {
            TerraformRunnerError(.malformedOutput, "the saved plan is not a zip archive terraform writes: \(why)")
        }
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        // End of central directory: 22 bytes plus a comment of at most 65,535.
        guard bytes.count >= 22 else { throw fail("too short") }
        var end = -1
        var at = bytes.count - 22
        while at >= max(0, bytes.count - 22 - 65_535) {
            if u32(at) == 0x0605_4b50 { end = at; break }
            at -= 1
        }
        guard end >= 0 else { throw fail("no end of central directory") }
        let count = u16(end + 10)
        let directory = u32(end + 16)
        guard count != 0xFFFF, directory != 0xFFFF_FFFF else { throw fail("zip64 is not supported") }
        var entry = directory
        for _ in 0..<count {
            guard entry + 46 <= bytes.count, u32(entry) == 0x0201_4b50 else { throw fail("a broken central directory") }
            let flags = u16(entry + 8), method = u16(entry + 10)
            let compressed = u32(entry + 20)
            let nameLength = u16(entry + 28), extraLength = u16(entry + 30), commentLength = u16(entry + 32)
            let local = u32(entry + 42)
            guard entry + 46 + nameLength <= bytes.count else { throw fail("a broken central directory") }
            let entryName = String(decoding: bytes[(entry + 46)..<(entry + 46 + nameLength)], as: UTF8.self)
            entry += 46 + nameLength + extraLength + commentLength
            guard entryName == name else { continue }
            guard flags & 1 == 0 else { throw fail("\(name) is encrypted") }
            guard local + 30 <= bytes.count, u32(local) == 0x0403_4b50 else { throw fail("a broken local header") }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard compressed != 0xFFFF_FFFF, start + compressed <= bytes.count else { throw fail("\(name) runs past the end") }
            let data = Array(bytes[start..<(start + compressed)])
            switch method {
            case 0: return Data(data.prefix(maxBytes))
            case 8: return try inflatePrefix(data, maxBytes: maxBytes, fail: fail)
            default: throw fail("\(name) uses compression method \(method)")
            }
        }
        throw fail("it has no \(name) entry")
    }

    /// Raw deflate, stopped once `maxBytes` came out.
    private static func inflatePrefix(_ input: [UInt8], maxBytes: Int,
                                      fail: (String) -> TerraformRunnerError) throws(TerraformRunnerError) -> Data {
        var stream = z_stream()
        guard lockstep_inflate_init_raw(&stream) == Z_OK else { throw fail("zlib could not start") }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: maxBytes)
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = source.baseAddress
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                return inflate(&stream, Z_SYNC_FLUSH)
            }
        }
        guard status == Z_OK || status == Z_STREAM_END || (status == Z_BUF_ERROR && stream.avail_out == 0) else {
            throw fail("the prior state does not inflate (zlib \(status))")
        }
        return Data(output.prefix(maxBytes - Int(stream.avail_out)))
    }
}
