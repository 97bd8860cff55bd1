import Foundation

/// Every tag of a mirror at one ref-write count, sorted by name, each described or refused
/// (see ``GitMirror/tags(matching:components:)``).
struct TagIndex: Sendable {
    struct Entry: Sendable {
        /// The raw name, without `refs/tags/`.
        let name: String
        let outcome: Outcome
    }

    enum Outcome: Sendable {
        case tag(TagInfo)
        case refused(RefusedTag)
    }

    /// The mirror's ref-write count this index was read at.
    let writes: UInt64
    /// Sorted by name (byte order).
    let entries: [Entry]
    /// The described tags by name, for the next index to reuse.
    let described: [String: TagInfo]

    init(writes: UInt64, entries: [Entry]) {
        self.writes = writes
        self.entries = entries.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var described: [String: TagInfo] = [:]
        for entry in entries { if case .tag(let info) = entry.outcome { described[entry.name] = info } }
        self.described = described
    }

    /// The described tag named `name`, if this index has one.
    func tag(named name: String) -> TagInfo? {
        let bytes = Array(name.utf8)
        let index = firstIndex { !$0.lexicographicallyPrecedes(bytes) }
        guard index < entries.count, entries[index].name == name, case .tag(let info) = entries[index].outcome else { return nil }
        return info
    }

    /// The entries whose names match `glob` (libgit2's glob syntax, where `*` also matches `/`),
    /// in name order. Only the names that start with the glob's literal beginning are matched.
    func entries(matching glob: String) -> ArraySlice<Entry> {
        let prefix = Array(glob.utf8.prefix { !Self.special.contains($0) })
        let lower = firstIndex { !$0.lexicographicallyPrecedes(prefix) }
        var upper = lower
        while upper < entries.count, entries[upper].name.utf8.starts(with: prefix) { upper += 1 }
        let candidates = entries[lower..<upper]
        if prefix.count == glob.utf8.count { return candidates.filter { $0.name == glob }[...] }
        return candidates.filter { fnmatch(glob, $0.name, 0) == 0 }[...]
    }

    /// Bytes that end a glob's literal beginning.
    private static let special: Set<UInt8> = [UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["), UInt8(ascii: "\\")]

    /// The first index whose name satisfies `predicate` (monotonic over the sorted names).
    private func firstIndex(where predicate: (String.UTF8View) -> Bool) -> Int {
        var (low, high) = (0, entries.count)
        while low < high {
            let middle = (low + high) / 2
            if predicate(entries[middle].name.utf8) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
