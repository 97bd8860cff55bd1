import Testing
@testable import LockstepCore

/// Tag patterns: validation, exact-depth matching and libgit2 globs.
@Suite struct TagPatternTests {
    /// Well-formed patterns are accepted and know whether they carry the project.
    @Test(arguments: [
        ("{env}/{version}", false, 2), ("{project}/{env}/{version}", true, 3),
        ("release-{env}-{version}", false, 1), ("deploy/{env}/v{version}", false, 3),
        ("{project}.{env}/{version}-final", true, 2),
    ])
    func acceptsValidPatterns(pattern: String, hasProject: Bool, depth: Int) throws {
        let parsed = try TagPattern(pattern)
        #expect(parsed.includesProject == hasProject)
        #expect(parsed.componentCount == depth)
    }

    /// Bad patterns are refused with a description that says what is wrong.
    @Test(arguments: [
        ("", "empty"), ("{env}", "no {version}"), ("{version}", "no {env}"),
        ("{env}/{version}/{version}", "more than once"), ("{env}/{env}/{version}", "more than once"),
        ("{project}/{project}/{env}/{version}", "more than once"), ("{env}/{tag}", "unknown placeholder"),
        ("{env/{version}", "without a matching"), ("{env}//{version}", "empty path component"),
        ("/{env}/{version}", "empty path component"), ("{env}/{version}/", "empty path component"),
        ("{env}{version}", "no literal text between"), ("{env}/*{version}", "contains \"*\""),
        ("{env} /{version}", "contains \" \""), ("../{env}/{version}", "starting with '.'"),
        ("a..b/{env}/{version}", "contains \"..\""), ("{env}/{version}.lock", "ending with"),
        (String(repeating: "a", count: 200) + "/{env}/{version}", "longer than"),
    ])
    func refusesInvalidPatterns(pattern: String, mentions: String) {
        do {
            _ = try TagPattern(pattern)
            Issue.record("pattern \(pattern) was accepted")
        } catch {
            #expect(error.code == .patternInvalid)
            #expect(error.description.contains(mentions), "\(error.description)")
        }
    }

    /// Matching table: exact depth, exact environment/project/literals, strict version.
    @Test(arguments: [
        ("{env}/{version}", "staging/v1.4.0", "1.4.0"),
        ("{env}/{version}", "staging/1.4.0-rc.1", "1.4.0-rc.1"),
        ("{env}/{version}", "prod/v1.4.0", nil),
        ("{env}/{version}", "staging/x/v1.4.0", nil),
        ("{env}/{version}", "staging", nil),
        ("{env}/{version}", "stagingx/v1.4.0", nil),
        ("{env}/{version}", "refs/tags/staging/v1.4.0", nil),
        ("{project}/{env}/{version}", "net/staging/v2.0.0", "2.0.0"),
        ("{project}/{env}/{version}", "app/staging/v2.0.0", nil),
        ("{project}/{env}/{version}", "staging/v2.0.0", nil),
        ("release-{env}-{version}", "release-staging-1.2.3", "1.2.3"),
        ("release-{env}-{version}", "release-staging-1.2.3-rc.1", "1.2.3-rc.1"),
        ("release-{env}-{version}", "release-prod-1.2.3", nil),
        ("release-{env}-{version}", "release-staging/1.2.3", nil),
        ("{env}/{version}-final", "staging/1.2.3-rc.1-final", "1.2.3-rc.1"),
        ("{env}/{version}-final", "staging/1.2.3", nil),
    ] as [(String, String, String?)])
    func matchesTagNames(pattern: String, tag: String, expected: String?) throws {
        let parsed = try TagPattern(pattern)
        let result = parsed.match(tag, project: project("net"), environment: env("staging"))
        #expect(result.version?.description == expected, "\(result)")
        if expected == nil { #expect(result == .noMatch) }
    }

    /// A name shaped like a release tag but with a bad version is reported, not ignored,
    /// and hostile text in it is escaped.
    @Test(arguments: ["staging/latest", "staging/v1.4", "staging/v1.4.0;rm -rf", "staging/v1.4.0\nX", "staging/"])
    func reportsUnparsableVersions(tag: String) throws {
        let result = try TagPattern("{env}/{version}").match(tag, project: project("net"), environment: env("staging"))
        guard case .unparsableVersion(let error) = result else {
            Issue.record("expected unparsableVersion, got \(result)")
            return
        }
        #expect(!error.description.contains("\n"))
    }

    /// Names longer than 255 bytes never match, whatever they contain.
    @Test func overlongTagNamesNeverMatch() throws {
        let name = "staging/v1.0.0-" + String(repeating: "a", count: 300)
        #expect(try TagPattern("{env}/{version}").match(name, project: project("p"), environment: env("staging")) == .noMatch)
    }

    /// Globs list candidates under `refs/tags/` with `*` only for the version.
    @Test(arguments: [
        ("{env}/{version}", "staging/*"), ("{project}/{env}/{version}", "net/staging/*"),
        ("release-{env}-{version}", "release-staging-*"), ("{env}/v{version}-final", "staging/v*-final"),
    ])
    func globsForListing(pattern: String, glob: String) throws {
        let parsed = try TagPattern(pattern)
        let target = TargetID(project: project("net"), environment: env("staging"))
        #expect(parsed.glob(project: target.project, environment: target.environment) == glob)
        #expect(parsed.referenceGlob(project: target.project, environment: target.environment) == "refs/tags/" + glob)
    }

    /// Names that libgit2's glob returns at another depth are rejected by match.
    @Test func globCandidatesAtOtherDepthAreRejectedByMatch() throws {
        let pattern = try TagPattern("{env}/{version}")
        // `staging/*` in libgit2 also lists this name, because `*` crosses `/`.
        #expect(pattern.match("staging/sub/v1.0.0", project: project("p"), environment: env("staging")) == .noMatch)
        #expect(pattern.match("staging/v1.0.0", target: TargetID(project: project("p"), environment: env("staging"))).version == version("1.0.0"))
    }

    /// Environment, project and identity names cannot carry glob or path characters.
    @Test(arguments: ["", "st*ging", "a/b", "..", "a..b", "-x", "st aging", "x\n", String(repeating: "a", count: 65)])
    func namesRefuseGlobAndPathCharacters(name: String) {
        #expect(throws: CoreError.self) { try EnvironmentName(name) }
        #expect(throws: CoreError.self) { try ProjectName(name) }
    }
}
