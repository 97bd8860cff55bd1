import Foundation

/// Splits a byte stream into lines, redacts them and hands them on.
///
/// Redaction happens on whole lines of bytes, before decoding, so a secret
/// split across two reads is still seen whole. A line longer than
/// `maxLineBytes` is handed on in pieces; a piece is only cut where no secret
/// can straddle the cut: the last `longest secret - 1` bytes always wait for
/// more input (a secret starting there may continue in the next read), and a
/// cut that would fall inside a secret moves before it, or after it when the
/// secret starts the piece. Only a run of overlapping secrets longer than the
/// piece limit plus two secrets is cut inside; the rest of the run is then
/// remembered and redacted at the start of the next piece. Without this a
/// 100 KB line carrying a secret across byte 65,536 would leave in two clear
/// halves.
struct LineAssembler {
    private var pending: [UInt8] = []
    /// Bytes at the start of `pending` that continue a secret cut earlier.
    private var carried = 0
    let maxLineBytes: Int
    let redactor: Redactor
    let emit: (String) -> Void

    init(maxLineBytes: Int, redactor: Redactor, emit: @escaping (String) -> Void) {
        self.maxLineBytes = max(maxLineBytes, 1)
        self.redactor = redactor
        self.emit = emit
    }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
            pending.append(contentsOf: bytes[start..<index])
            splitLongLine()
            flush()
            start = index + 1
        }
        pending.append(contentsOf: bytes[start...])
        splitLongLine()
    }

    private mutating func splitLongLine() {
        let keep = max(redactor.longestPatternBytes - 1, 0)
        while pending.count > maxLineBytes {
            let limit = pending.count - keep
            guard limit > 0 else { return }
            var cut = min(maxLineBytes, limit)
            // Do not cut a UTF-8 sequence in two (a continuation byte is 10xxxxxx).
            var boundary = cut
            while boundary > 1, cut - boundary < 3, pending[boundary] & 0xC0 == 0x80 { boundary -= 1 }
            if pending[boundary] & 0xC0 != 0x80 { cut = boundary }
            let carriedNow = carried
            let split: (piece: [UInt8], rest: Int)? = pending.withUnsafeBytes { bytes in
                let covered = redactor.coveredRanges(in: bytes, forced: carriedNow > 0 ? 0..<carriedNow : nil)
                var rest = 0
                if let straddling = covered.first(where: { $0.lowerBound < cut && cut < $0.upperBound }) {
                    if straddling.lowerBound > 0 {
                        cut = straddling.lowerBound
                    } else if straddling.upperBound <= limit {
                        cut = straddling.upperBound
                    } else if bytes.count < maxLineBytes + 2 * keep + 2 {
                        return nil  // the secret's end is not known yet: wait for more bytes
                    } else {
                        // A run of overlapping secrets longer than any one: bound memory.
                        rest = straddling.upperBound - cut
                    }
                }
                let inside = covered.compactMap { range -> Range<Int>? in
                    range.lowerBound < cut ? range.lowerBound..<min(range.upperBound, cut) : nil
                }
                return (Redactor.replacing(inside, in: UnsafeRawBufferPointer(rebasing: bytes[0..<cut])), rest)
            }
            guard let split else { return }
            carried = split.rest
            pending.removeFirst(cut)
            emit(String(decoding: split.piece, as: UTF8.self))
        }
    }

    private mutating func flush() {
        if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
        let line: String = pending.withUnsafeBytes { bytes in
            let covered = redactor.coveredRanges(in: bytes, forced: carried > 0 ? 0..<min(carried, bytes.count) : nil)
            if covered.isEmpty { return String(decoding: bytes, as: UTF8.self) }
            return String(decoding: Redactor.replacing(covered, in: bytes), as: UTF8.self)
        }
        carried = 0
        pending.removeAll(keepingCapacity: true)
        emit(line)
    }

    mutating func finish() {
        if !pending.isEmpty || carried > 0 { flush() }
    }
}

/// Collects a stream up to a limit; the rest is drained and counted, never kept, so a
/// command printing gigabytes costs at most `limit` bytes of memory.
final class CaptureBuffer: @unchecked Sendable {
    // Only touched by the single reader thread, then read after it finished.
    private(set) var data = Data()
    /// More than `limit` bytes arrived.
    private(set) var overflowed = false
    /// Every byte that arrived, kept or not.
    private(set) var total = 0
    let limit: Int
    /// Past the limit, keep the first `limit` bytes (else keep only what fitted in whole chunks).
    let keepsPrefix: Bool

    init(limit: Int, keepsPrefix: Bool) {
        self.limit = max(limit, 0)
        self.keepsPrefix = keepsPrefix
    }

    func take(_ chunk: UnsafeRawBufferPointer) {
        total += chunk.count
        guard !overflowed else { return }
        let room = limit - data.count
        if chunk.count <= room {
            data.append(contentsOf: chunk)
        } else {
            if keepsPrefix, room > 0 { data.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<room])) }
            overflowed = true
        }
    }
}
