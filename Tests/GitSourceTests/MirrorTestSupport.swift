import Foundation
import Logging
@testable import GitSource

/// A scratch folder for a mirror, removed with the fixture's scratch directory.
func mirrorPath(in fixture: GitFixture, _ name: String = "mirror.git") -> String {
    fixture.scratch.appendingPathComponent(name).path
}

/// A mirror of `fixture`'s repository over a plain local path.
func localMirror(of fixture: GitFixture, remote: Remote? = nil) -> GitMirror {
    GitMirror(remote: remote ?? Remote(url: fixture.path), path: mirrorPath(in: fixture), logger: Logger(label: "test"))
}

/// A fresh, empty export directory inside the fixture's scratch folder.
func freshDirectory(in fixture: GitFixture, _ name: String = "export") throws -> String {
    let url = fixture.scratch.appendingPathComponent(name + "-" + UUID().uuidString)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    return url.path
}

func contents(of directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

/// A repository with `main`, one feature branch merged through a merge commit (a "PR"),
/// and an unmerged branch. Returns the interesting commits.
struct MergedHistory {
    let base: String
    let featureCommit: String
    let merge: String
    let unmerged: String
    let fastForward: String
}

func makeMergedHistory(_ fixture: GitFixture) throws -> MergedHistory {
    let base = try fixture.commit(files: ["main.tf": "# base\n"], message: "base")
    try fixture.git("branch", "-M", "main")
    try fixture.branch("feature")
    try fixture.checkout("feature")
    let featureCommit = try fixture.commit(files: ["main.tf": "# feature\n"], message: "feature")
    try fixture.checkout("main")
    let merge = try fixture.merge("feature", noFF: true, message: "Merge pull request #1")
    try fixture.branch("unmerged")
    try fixture.checkout("unmerged")
    let unmerged = try fixture.commit(files: ["other.tf": "# unmerged\n"], message: "unmerged work")
    try fixture.checkout("main")
    let fastForward = try fixture.commit(files: ["direct.tf": "# pushed directly\n"], message: "direct push")
    return MergedHistory(base: base, featureCommit: featureCommit, merge: merge, unmerged: unmerged, fastForward: fastForward)
}
