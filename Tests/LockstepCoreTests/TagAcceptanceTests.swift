import Testing
@testable import LockstepCore

/// docs/CONTRACT.md §3 tag acceptance, desired revision with rollback pins, and tag change detection.
@Suite struct TagAcceptanceTests {
    static let good = TagFacts(name: "prod/v1.4.0", version: .success(version("1.4.0")), isAnnotated: true,
                               signature: .verified, reachableFromProtectedBranch: true,
                               isMergeCommitOnFirstParentChain: true, promotionSourceVerified: true)
    static let strict = TagRules(requireAnnotated: true, requireMergeCommit: true, requireSigned: true,
                                 promoteFrom: env("staging"))

    static func facts(_ change: (inout TagFacts) -> Void) -> TagFacts {
        var facts = good
        change(&facts)
        return facts
    }

    /// Each broken rule, alone, rejects the tag with exactly its reason.
    @Test(arguments: [
        ("all rules hold", facts { _ in }, strict, []),
        ("version unparsable", facts { $0.version = .failure(CoreError(.versionCoreInvalid, "bad")) }, strict,
         [TagRejection.Code.versionUnparsable]),
        ("lightweight tag", facts { $0.isAnnotated = false; $0.signature = .failed }, TagRules(requireAnnotated: true), [.notAnnotated]),
        ("lightweight tag, annotation not required", facts { $0.isAnnotated = false }, TagRules(), []),
        ("not on protected branch", facts { $0.reachableFromProtectedBranch = false }, TagRules(), [.notReachable]),
        ("not a merge commit", facts { $0.isMergeCommitOnFirstParentChain = false }, TagRules(requireMergeCommit: true), [.notMergeCommit]),
        ("not a merge commit, not required", facts { $0.isMergeCommitOnFirstParentChain = false }, TagRules(), []),
        ("signature failed", facts { $0.signature = .failed }, TagRules(requireSigned: true), [.signatureNotVerified]),
        ("signature skipped although required", facts { $0.signature = .notRequired }, TagRules(requireSigned: true), [.signatureNotVerified]),
        ("signed required implies annotated", facts { $0.isAnnotated = false }, TagRules(requireSigned: true), [.notAnnotated]),
        ("promotion source not verified", facts { $0.promotionSourceVerified = false }, TagRules(promoteFrom: env("staging")),
         [.promotionSourceNotVerified]),
        ("promotion fact ignored without promote_from", facts { $0.promotionSourceVerified = false }, TagRules(), []),
    ] as [(String, TagFacts, TagRules, [TagRejection.Code])])
    func decidesOneRuleAtATime(label: String, facts: TagFacts, rules: TagRules, expected: [TagRejection.Code]) {
        let decision = TagAcceptance.decide(facts, rules: rules)
        switch decision {
        case .accepted(let accepted):
            #expect(expected.isEmpty, "\(label): accepted")
            #expect(accepted == version("1.4.0"))
        case .rejected(let reasons):
            #expect(reasons.map(\.code) == expected, "\(label)")
            #expect(reasons.allSatisfy { $0.description.contains("prod/v1.4.0") })
        }
    }

    /// Every broken rule is reported at once, and the hostile name is escaped in each reason.
    @Test func reportsEveryBrokenRule() {
        let bad = TagFacts(name: "prod/v1\n.0", version: .failure(CoreError(.versionCoreInvalid, "bad")), isAnnotated: false,
                           signature: .failed, reachableFromProtectedBranch: false,
                           isMergeCommitOnFirstParentChain: false, promotionSourceVerified: false)
        guard case .rejected(let reasons) = TagAcceptance.decide(bad, rules: Self.strict) else {
            Issue.record("accepted")
            return
        }
        #expect(reasons.map(\.code) == [.versionUnparsable, .notReachable, .notAnnotated, .signatureNotVerified, .promotionSourceNotVerified])
        #expect(reasons.allSatisfy { !$0.description.contains("\n") })
    }

    static func tag(_ name: String, _ text: String) -> AcceptedTag {
        AcceptedTag(name: name, version: version(text), commit: object("a"))
    }

    /// Desired revision table: highest wins, pins hold until a higher-than-ceiling tag, ties are ambiguous.
    @Test(arguments: [
        ("nothing accepted", [], nil, DesiredRevision.none),
        ("highest wins", [tag("p/v1.0.0", "1.0.0"), tag("p/v1.10.0", "1.10.0"), tag("p/v1.9.0", "1.9.0")], nil,
         .highest(tag("p/v1.10.0", "1.10.0"))),
        ("pre-release below its release", [tag("p/v2.0.0-rc.1", "2.0.0-rc.1"), tag("p/v2.0.0", "2.0.0")], nil,
         .highest(tag("p/v2.0.0", "2.0.0"))),
        ("pin holds", [tag("p/v1.0.0", "1.0.0"), tag("p/v1.1.0", "1.1.0")],
         RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")),
         .pinned(tag("p/v1.0.0", "1.0.0"), RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")))),
        ("pin released by a higher tag", [tag("p/v1.0.0", "1.0.0"), tag("p/v1.1.0", "1.1.0"), tag("p/v1.2.0", "1.2.0")],
         RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")), .pinReleased(tag("p/v1.2.0", "1.2.0"))),
        ("pin not released by a pre-release of the ceiling", [tag("p/v1.0.0", "1.0.0"), tag("p/v1.1.0", "1.1.0"), tag("p/v1.1.0-rc.9", "1.1.0-rc.9")],
         RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")),
         .pinned(tag("p/v1.0.0", "1.0.0"), RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")))),
        ("pinned tag deleted", [tag("p/v1.1.0", "1.1.0")], RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")),
         .pinnedTagMissing(RollbackPin(version: version("1.0.0"), ceiling: version("1.1.0")))),
        ("same precedence twice", [tag("p/v1.0.0", "1.0.0"), tag("p/1.0.0", "1.0.0")], nil,
         .ambiguous([tag("p/1.0.0", "1.0.0"), tag("p/v1.0.0", "1.0.0")])),
        ("build metadata tie", [tag("p/v1.0.0+b", "1.0.0+b"), tag("p/v1.0.0+a", "1.0.0+a")], nil,
         .ambiguous([tag("p/v1.0.0+a", "1.0.0+a"), tag("p/v1.0.0+b", "1.0.0+b")])),
    ] as [(String, [AcceptedTag], RollbackPin?, DesiredRevision)])
    func desiredRevision(label: String, accepted: [AcceptedTag], pin: RollbackPin?, expected: DesiredRevision) {
        #expect(TagAcceptance.desiredRevision(accepted: accepted, pin: pin) == expected, "\(label)")
    }

    /// A rollback pins to an accepted version with the current highest as ceiling; unknown versions are refused.
    @Test func rollbackPinsOnlyAcceptedVersions() throws {
        let accepted = [Self.tag("p/v1.0.0", "1.0.0"), Self.tag("p/v1.3.0", "1.3.0")]
        let pin = try RollbackPin.pin(to: version("1.0.0"), accepted: accepted)
        #expect(pin == RollbackPin(version: version("1.0.0"), ceiling: version("1.3.0")))
        #expect(throws: CoreError.self) { try RollbackPin.pin(to: version("1.2.0"), accepted: accepted) }
        #expect(throws: CoreError.self) { try RollbackPin.pin(to: version("1.0.0"), accepted: []) }
    }

    /// Moved and deleted tags are told apart from new ones.
    @Test func detectsMovedAndDeletedTags() {
        let changes = TagChange.changes(previous: ["a": object("1"), "b": object("2"), "c": object("3")],
                                        current: ["a": object("1"), "b": object("4"), "d": object("5")])
        #expect(changes == [.moved(name: "b", from: object("2"), to: object("4")),
                            .deleted(name: "c", object: object("3")),
                            .appeared(name: "d", object: object("5"))])
    }
}
