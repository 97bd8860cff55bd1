import Foundation
import Logging
import NIOCore
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The API application as a service whose failure ends the daemon with one clear line.
///
/// Why: when the listen address was taken, the server's error cancelled the service group
/// while the poll loop only watched for a drain, so the daemon neither exited nor listened
/// and spun on a cancelled sleep. Now the group shuts down gracefully on any service's
/// failure (every loop stops on a drain and on cancellation), and the failure itself is a
/// ``DaemonError`` naming the address and the system's reason, which `lockstep serve`
/// prints before it exits non-zero, so systemd's restart policy takes over.
struct APIListener<Application: Service>: Service {
    let application: Application
    let address: String
    /// The agent config key that names the address.
    var key = "listen"

    func run() async throws {
        do {
            try await application.run()
        } catch let error as IOError {
            throw DaemonError(.listen, "cannot listen on \(address): \(String(cString: strerror(error.errnoCode)))"
                              + " (errno \(error.errnoCode)); stop what holds it or change `\(key)` in the agent config")
        } catch {
            throw DaemonError(.listen, "the API on \(address) stopped: \(error)")
        }
    }
}
