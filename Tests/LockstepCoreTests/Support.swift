import Foundation
@testable import LockstepCore

// Small constructors for test fixtures; they crash on invalid literals, which is a test bug.
func env(_ name: String) -> EnvironmentName { try! EnvironmentName(name) }
func project(_ name: String) -> ProjectName { try! ProjectName(name) }
func identity(_ name: String) -> IdentityName { try! IdentityName(name) }
func runID(_ name: String) -> RunID { try! RunID(name) }
func version(_ text: String) -> SemanticVersion { try! SemanticVersion(text) }
func digest(_ fill: Character) -> Digest { try! Digest(String(repeating: fill, count: 64)) }
func object(_ fill: Character) -> GitObjectID { try! GitObjectID(String(repeating: fill, count: 40)) }
let t0 = Date(timeIntervalSince1970: 1_800_000_000)
