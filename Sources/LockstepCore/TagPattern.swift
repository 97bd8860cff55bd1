/// How release tags name an environment (and project) and a version, e.g.
/// `{env}/{version}`, `{project}/{env}/{version}` or `release-{env}-{version}`.
///
/// Rules enforced at construction:
/// * components are separated by `/`; none is empty, `.` or `..`, none starts or
///   ends with `.`;
/// * `{version}` appears exactly once, `{env}` exactly once, `{project}` at most once;
/// * two placeholders are always separated by literal text (`{env}{version}` is
///   refused), so a tag name can be read back unambiguously;
/// * literal text is only ASCII letters, digits, `.`, `-` and `_`, so the pattern
///   can never widen a libgit2 glob (`*`, `?`, `[`) or carry shell metacharacters.
///
/// A placeholder matches inside one path component and never spans `/`: libgit2's
/// `*` does cross `/`, so ``match(_:project:environment:)`` re-checks the component
/// count of every name the ``glob(project:environment:)`` listing returns.
public struct TagPattern: Sendable, Hashable, Codable, CustomStringConvertible {
    enum Segment: Sendable, Hashable {
        case literal(String)
        case environment
        case project
        case version

        var isLiteral: Bool {
            if case .literal = self { true } else { false }
        }
    }

    /// Longest accepted pattern, in bytes.
    public static let maximumLength = 200
    /// Longest tag name ever considered (git itself has no useful limit).
    public static let maximumTagNameLength = 255

    /// The pattern as written in the config.
    public let rawValue: String
    let components: [[Segment]]

    /// Parses and validates `pattern`.
    public init(_ pattern: String) throws(CoreError) {
        let shown = displaySafe(pattern)
        func invalid(_ why: String) -> CoreError {
            CoreError(.patternInvalid, "tag pattern \"\(shown)\" \(why)", context: ["pattern": shown])
        }
        guard !pattern.isEmpty else { throw invalid("is empty; expected e.g. {env}/{version}") }
        guard pattern.utf8.count <= Self.maximumLength else {
            throw invalid("is longer than \(Self.maximumLength) bytes")
        }
        var parsed: [[Segment]] = []
        var counts: [Segment: Int] = [:]
        for component in pattern.split(separator: "/", omittingEmptySubsequences: false) {
            guard !component.isEmpty else { throw invalid("has an empty path component (leading, trailing or double '/')") }
            var segments: [Segment] = []
            var literal = ""
            var index = component.startIndex
            while index < component.endIndex {
                let character = component[index]
                if character == "{" {
                    guard let close = component[index...].firstIndex(of: "}") else {
                        throw invalid("has a '{' without a matching '}'")
                    }
                    let name = component[component.index(after: index)..<close]
                    let segment: Segment
                    switch name {
                    case "env": segment = .environment
                    case "project": segment = .project
                    case "version": segment = .version
                    default:
                        throw invalid("uses the unknown placeholder {\(displaySafe(String(name)))}; expected {env}, {project} or {version}")
                    }
                    if literal.isEmpty, let last = segments.last, !last.isLiteral {
                        throw invalid("has two placeholders with no literal text between them")
                    }
                    if !literal.isEmpty { segments.append(.literal(literal)); literal = "" }
                    segments.append(segment)
                    counts[segment, default: 0] += 1
                    index = component.index(after: close)
                    continue
                }
                guard character == "." || character == "-" || character == "_"
                        || (character.isASCII && (character.isLetter || character.isNumber)) else {
                    throw invalid("contains \"\(displaySafe(String(character)))\"; literal text may only use letters, digits, '.', '-' and '_'")
                }
                literal.append(character)
                index = component.index(after: index)
            }
            if !literal.isEmpty { segments.append(.literal(literal)) }
            if case .literal(let text) = segments.first, text.hasPrefix(".") {
                throw invalid("has a path component starting with '.'")
            }
            if case .literal(let text) = segments.last, text.hasSuffix(".") || text.hasSuffix(".lock") {
                throw invalid("has a path component ending with '.' or '.lock'")
            }
            if segments.contains(where: { if case .literal(let text) = $0 { text.contains("..") } else { false } }) {
                throw invalid("contains \"..\"")
            }
            parsed.append(segments)
        }
        switch counts[.version, default: 0] {
        case 0: throw invalid("has no {version} placeholder")
        case 1: break
        default: throw invalid("has {version} more than once")
        }
        switch counts[.environment, default: 0] {
        case 0: throw invalid("has no {env} placeholder")
        case 1: break
        default: throw invalid("has {env} more than once")
        }
        if counts[.project, default: 0] > 1 { throw invalid("has {project} more than once") }
        rawValue = pattern
        components = parsed
    }

    public var description: String { rawValue }

    /// True when tag names carry the project (`{project}` appears).
    public var includesProject: Bool { components.contains { $0.contains(.project) } }

    /// Number of `/`-separated components every matching tag name has.
    public var componentCount: Int { components.count }

    /// Reads the version from `tagName` (a short tag name, without `refs/tags/`)
    /// for the given target. The name must have exactly this pattern's component
    /// count and every literal, project and environment part must match exactly.
    /// `project` is ignored when the pattern has no `{project}`.
    public func match(_ tagName: String, project: ProjectName, environment: EnvironmentName) -> TagPatternMatch {
        guard tagName.utf8.count <= Self.maximumTagNameLength else { return .noMatch }
        let parts = tagName.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard parts.count == components.count else { return .noMatch }
        var versionText: Substring.UTF8View.SubSequence?
        for (segments, part) in zip(components, parts) {
            guard let split = segments.firstIndex(of: .version) else {
                guard Array(part) == Array(render(segments[...], project, environment).utf8) else { return .noMatch }
                continue
            }
            let prefix = Array(render(segments[..<split], project, environment).utf8)
            let suffix = Array(render(segments[(split + 1)...], project, environment).utf8)
            guard part.count >= prefix.count + suffix.count,
                  part.starts(with: prefix),
                  Array(part.suffix(suffix.count)) == suffix else { return .noMatch }
            versionText = part.dropFirst(prefix.count).dropLast(suffix.count)
        }
        guard let versionText else { return .noMatch }
        do {
            return .version(try SemanticVersion(String(decoding: versionText, as: UTF8.self)))
        } catch {
            return .unparsableVersion(error)
        }
    }

    /// Convenience for ``match(_:project:environment:)`` with a target.
    public func match(_ tagName: String, target: TargetID) -> TagPatternMatch {
        match(tagName, project: target.project, environment: target.environment)
    }

    /// A libgit2 glob over short tag names (for `git_tag_list_match`) that finds
    /// every candidate for this target, e.g. `staging/*` or `release-staging-*`.
    /// The glob may return names of another depth; always confirm with ``match(_:project:environment:)``.
    public func glob(project: ProjectName, environment: EnvironmentName) -> String {
        components.map { segments in
            segments.map { segment in
                segment == .version ? "*" : render([segment][...], project, environment)
            }.joined()
        }.joined(separator: "/")
    }

    /// ``glob(project:environment:)`` under `refs/tags/`, for reference iteration.
    public func referenceGlob(project: ProjectName, environment: EnvironmentName) -> String {
        "refs/tags/" + glob(project: project, environment: environment)
    }

    private func render(_ segments: ArraySlice<Segment>, _ project: ProjectName, _ environment: EnvironmentName) -> String {
        segments.map { segment in
            switch segment {
            case .literal(let text): text
            case .environment: environment.rawValue
            case .project: project.rawValue
            case .version: ""
            }
        }.joined()
    }

    public init(from decoder: any Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// What a tag name means for one target.
public enum TagPatternMatch: Sendable, Hashable {
    /// Not a release tag of this target (other environment, other depth, other literal text).
    case noMatch
    /// A release tag of this target with a valid version.
    case version(SemanticVersion)
    /// Shaped like a release tag of this target, but its version part is not SemVer:
    /// such a tag is rejected with a recorded reason, never ignored silently.
    case unparsableVersion(CoreError)

    /// The version when the name matched and parsed.
    public var version: SemanticVersion? {
        if case .version(let version) = self { version } else { nil }
    }
}
