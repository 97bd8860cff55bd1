import Foundation
import LockstepCore
import Testing
@testable import RunStore

/// The last valid layout of the protected branch outlives a restart: a broken
/// `lockstep.yaml` merged while the daemon was down must not leave it without targets.
@Suite("SQLiteRunStore: the last valid branch layout")
struct BranchLayoutTests {
    @Test("kept per branch, replaced by a newer one, read back after reopening; no row for an unknown branch")
    func keptAcrossReopen() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        let (main, release) = try await recordLayouts(store)
        try store.close()

        let reopened = try SQLiteRunStore(path: scratch.store)
        #expect(try await reopened.lastValidLayout(branch: "main") == main)
        #expect(try await reopened.lastValidLayout(branch: "release") == release)
        #expect(try await reopened.lastValidLayout(branch: "develop") == nil)
    }

    @Test("a row whose commit id was damaged is an error naming the branch, not a layout")
    func damagedRowIsRefused() async throws {
        let scratch = try Scratch()
        let store = try SQLiteRunStore(path: scratch.store)
        try await store.recordValidLayout(StoredBranchLayout(branch: "main", commit: object("a"), yaml: "projects: {}\n"),
                                          at: at(1))
        try store.close()
        try sqlite3(scratch.store, "UPDATE branch_layouts SET commit_id = 'not-a-commit';")
        let reopened = try SQLiteRunStore(path: scratch.store)
        let error = await storeError { _ = try await reopened.lastValidLayout(branch: "main") }
        #expect(error?.code == .corrupt)
        #expect(error?.description.contains("main") == true)
    }
}

/// Records two layouts of `main` (the second replaces the first) and one of `release`, checking
/// on the way that no layout is known before; returns the layouts that must be kept.
func recordLayouts(_ store: any RunStore) async throws -> (main: StoredBranchLayout, release: StoredBranchLayout) {
    #expect(try await store.lastValidLayout(branch: "main") == nil)
    let first = StoredBranchLayout(branch: "main", commit: object("a"), yaml: "projects:\n  app: {}\n")
    let second = StoredBranchLayout(branch: "main", commit: object("b"), yaml: "projects:\n  app: {}\n  db: {}\n")
    let other = StoredBranchLayout(branch: "release", commit: object("c"), yaml: "projects: {}\n")
    try await store.recordValidLayout(first, at: at(1))
    try await store.recordValidLayout(other, at: at(2))
    try await store.recordValidLayout(second, at: at(3))
    return (second, other)
}
