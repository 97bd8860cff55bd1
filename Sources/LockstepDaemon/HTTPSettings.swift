import LockstepHTTP

/// The API's connection and refusal limits as the daemon runs them.
struct HTTPSettings {
    var connections: HTTPConnectionLimits
    var refusals: RefusalPolicy

    /// At most half the descriptors the process may open go to API connections (the
    /// reserve for health checks included): the rest stay for git, the store and terraform.
    static func limits(connections: HTTPConnectionLimits = HTTPConnectionLimits(),
                       refusals: RefusalPolicy = RefusalPolicy(), descriptorLimit: Int?) -> HTTPSettings {
        var connections = connections
        if let descriptorLimit {
            let share = max(descriptorLimit / 2 - connections.reservedForHealthChecks, 16)
            connections.maximumConnections = min(connections.maximumConnections, share)
        }
        return HTTPSettings(connections: connections, refusals: refusals)
    }
}
