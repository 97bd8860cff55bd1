import Testing
@testable import LockstepGate
