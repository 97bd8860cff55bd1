import LockstepConfig
import LockstepHTTP

/// The API's connection and refusal limits as the daemon runs them.
struct HTTPSettings {
    var connections: HTTPConnectionLimits
    var refusals: RefusalPolicy

    /// The agent config's `http:` section as the HTTP layer's types.
    static func limits(_ config: HTTPLimits, descriptorLimit: Int?) -> HTTPSettings {
        limits(connections: HTTPConnectionLimits(
                   maximumConnections: config.maxConnections, reservedForHealthChecks: config.reservedForHealthChecks,
                   headerTimeout: config.headerTimeout, idleTimeout: config.idleTimeout,
                   requestReadTimeout: config.requestReadTimeout),
               refusals: RefusalPolicy(window: config.failedAuthWindow, perSourceLimit: config.failedAuthPerAddress,
                                       globalLimit: config.failedAuthTotal),
               descriptorLimit: descriptorLimit)
    }

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
