import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process's open-file limit.
///
/// Why: systemd and most shells start a service with a soft limit of 1024 descriptors
/// while the hard limit is far higher. The daemon shares its descriptors between API
/// connections, git fetches, the store and terraform's pipes; at 1024 a few hundred slow
/// clients were enough to starve the rest. The soft limit is raised to the hard limit at
/// start, and the API's connection cap is kept well below what is left.
enum DescriptorLimit {
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force
    /// afterwards (nil when it cannot be read).
    @discardableResult
    static func raise(logger: Logger) -> Int? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else {
            logger.warning("cannot read the open-file limit", metadata: ["error": "\(String(cString: strerror(errno)))"])
            return nil
        }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 {
                limit = raised
            } else {
                logger.warning("cannot raise the open-file limit",
                               metadata: ["limit.soft": "\(before)", "limit.hard": "\(limit.rlim_max)",
                                          "error": "\(String(cString: strerror(errno)))"])
            }
        }
        logger.info("open-file limit", metadata: ["limit.soft.before": "\(describe(before))",
                                                  "limit.soft": "\(describe(limit.rlim_cur))",
                                                  "limit.hard": "\(describe(limit.rlim_max))"])
        return limit.rlim_cur == rlim_t.max ? Int.max : Int(clamping: limit.rlim_cur)
    }

    private static var resource: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }

    private static func describe(_ value: rlim_t) -> String {
        value == rlim_t.max ? "unlimited" : "\(value)"
    }
}
