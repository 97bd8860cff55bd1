import Testing
@testable import RunStore
