import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSH server on 127.0.0.1 that serves git over `ssh://` to one key.
///
/// Runs `/usr/sbin/sshd -D -e -f CONFIG` as the current user with a fresh
/// ed25519 host key, a fresh ed25519 client key as the only authorised key,
/// no passwords, no PAM. `knownHostsPath` trusts the real host key;
/// `wrongKnownHostsPath` lists a different key for the same `[host]:port`, so
/// a test can prove a changed host key is refused (the man-in-the-middle
/// attack). Each test starts its own server and calls `stop()` in a `defer`.
final class SSHServer {
    static let sshdPath = "/usr/sbin/sshd"

    /// True when sshd is installed (scripts/install-test-deps.sh installs it).
    static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: sshdPath)
            && FixtureProcess.findExecutable(["/usr/bin/ssh-keygen"]) != nil
    }

    let port: UInt16
    /// The login name used in URLs (the current user).
    let user: String
    let clientPrivateKeyPath: String
    let clientPublicKeyPath: String
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...` for the server's real host key.
    let knownHostsLine: String
    /// The same host with another (never served) ed25519 key.
    let wrongKnownHostsLine: String
    /// A known_hosts file holding only `knownHostsLine`.
    let knownHostsPath: String
    /// A known_hosts file holding only `wrongKnownHostsLine`.
    let wrongKnownHostsPath: String
    /// Scratch directory with keys, config and log; removed by `stop()`.
    let directory: URL
    private let child: BackgroundProcess

    /// Generates keys, writes the config and starts sshd; returns when the
    /// port answers with an `SSH-2.0` banner.
    init() throws {
        guard Self.isAvailable else {
            throw FixtureError(code: .missingTool, context: "sshd not installed (run scripts/install-test-deps.sh)", detail: "")
        }
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("lockstep-sshd-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        do {
            // sshd refuses to start without its privilege-separation directory.
            try FileManager.default.createDirectory(
                atPath: "/run/sshd", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])

            let hostKey = directory.appendingPathComponent("host_ed25519").path
            let wrongHostKey = directory.appendingPathComponent("wrong_host_ed25519").path
            clientPrivateKeyPath = directory.appendingPathComponent("client_ed25519").path
            clientPublicKeyPath = clientPrivateKeyPath + ".pub"
            try SSHKeys.generate(at: hostKey, comment: "lockstep-test-host")
            try SSHKeys.generate(at: wrongHostKey, comment: "lockstep-test-wrong-host")
            try SSHKeys.generate(at: clientPrivateKeyPath, comment: "lockstep-test-client")
            user = Self.currentUser()

            var started: (BackgroundProcess, UInt16)?
            var lastError: (any Error)?
            // The port is chosen free but sshd binds it a moment later; if another
            // process took it meanwhile, sshd exits and we try a new port.
            for attempt in 0..<5 {
                let port = try LoopbackTCP.freePort()
                let config = directory.appendingPathComponent("sshd_config")
                try Self.config(port: port, hostKey: hostKey, authorizedKeys: clientPublicKeyPath, directory: directory)
                    .write(to: config, atomically: true, encoding: .utf8)
                let process = try BackgroundProcess(
                    Self.sshdPath, ["-D", "-e", "-f", config.path],
                    environment: ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"],
                    logURL: directory.appendingPathComponent("sshd-\(attempt).log"))
                do {
                    try LoopbackTCP.waitUntilReady(port: port, bannerPrefix: "SSH-2.0", child: process, what: "sshd")
                    started = (process, port)
                    break
                } catch {
                    process.stop()
                    lastError = error
                    guard process.log.contains("Address already in use") else { throw error }
                }
            }
            guard let (process, port) = started else {
                throw lastError ?? FixtureError(code: .serverNotReady, context: "sshd did not start", detail: "")
            }
            knownHostsPath = directory.appendingPathComponent("known_hosts").path
            wrongKnownHostsPath = directory.appendingPathComponent("wrong_known_hosts").path
            do {
                knownHostsLine = try Self.knownHostsLine(port: port, publicKeyPath: hostKey + ".pub")
                wrongKnownHostsLine = try Self.knownHostsLine(port: port, publicKeyPath: wrongHostKey + ".pub")
                try (knownHostsLine + "\n").write(toFile: knownHostsPath, atomically: true, encoding: .utf8)
                try (wrongKnownHostsLine + "\n").write(toFile: wrongKnownHostsPath, atomically: true, encoding: .utf8)
            } catch {
                process.stop()
                throw error
            }
            child = process
            self.port = port
        } catch {
            // Every path that started sshd has stopped it before throwing.
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// The sshd listener's process id (gone once `stop()` returned).
    var pid: Int32 { child.pid }
    var isRunning: Bool { child.isRunning }
    /// sshd's log (`-e`): connection and authentication messages.
    var log: String { child.log }

    /// `ssh://USER@127.0.0.1:PORT/abs/path.git`.
    func url(for repoPath: String) -> String {
        "ssh://\(user)@127.0.0.1:\(port)\(repoPath.hasPrefix("/") ? "" : "/")\(repoPath)"
    }

    /// A `GIT_SSH_COMMAND` for the git CLI: only the client key, only the given
    /// known_hosts file, strict host key checking, never a prompt.
    func gitSSHCommand(knownHostsPath: String) -> String {
        "ssh -F /dev/null -i '\(clientPrivateKeyPath)' -o IdentitiesOnly=yes -o BatchMode=yes"
            + " -o StrictHostKeyChecking=yes -o UserKnownHostsFile='\(knownHostsPath)'"
            + " -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR"
    }

    /// Stops sshd (and any session it forked), waits, removes the directory.
    func stop() {
        child.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    private static func config(port: UInt16, hostKey: String, authorizedKeys: String, directory: URL) -> String {
        """
        Port \(port)
        ListenAddress 127.0.0.1
        HostKey \(hostKey)
        AuthorizedKeysFile \(authorizedKeys)
        PidFile \(directory.appendingPathComponent("sshd.pid").path)
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin prohibit-password
        StrictModes no
        UsePAM no
        UseDNS no
        PrintMotd no
        X11Forwarding no
        AllowTcpForwarding no
        PermitTunnel no
        LogLevel VERBOSE

        """
    }

    private static func knownHostsLine(port: UInt16, publicKeyPath: String) throws -> String {
        let fields = try String(contentsOfFile: publicKeyPath, encoding: .utf8).split(separator: " ")
        guard fields.count >= 2 else {
            throw FixtureError(code: .io, context: "unreadable public key \(publicKeyPath)", detail: "")
        }
        return "[127.0.0.1]:\(port) \(fields[0]) \(fields[1])"
    }

    private static func currentUser() -> String {
        if let entry = getpwuid(getuid()), let name = entry.pointee.pw_name {
            return String(cString: name)
        }
        return "root"
    }
}
