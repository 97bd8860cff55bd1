import LockstepCore

// Test fixtures name environments, projects and identities by literal; an invalid literal
// is a bug in the test and crashes it. Product code never gets this conformance.
extension EnvironmentName: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { try! self.init(value) }
}

extension ProjectName: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { try! self.init(value) }
}

extension IdentityName: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { try! self.init(value) }
}
