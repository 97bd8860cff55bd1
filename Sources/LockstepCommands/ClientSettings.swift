import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Yams

/// The options every API client command takes: where the daemon is, where the token is,
/// and whether to print JSON.
///
/// There is deliberately no `--token VALUE`: a process's arguments are readable by every
/// local user through `/proc/PID/cmdline` and `ps`, and end up in shell history. The token
/// comes from a file (mode 0600) or from the environment (`/proc/PID/environ` is readable
/// only by the same user and root).
struct ClientOptions: ParsableArguments {
    @Option(name: .customLong("server"),
            help: ArgumentHelp("The daemon's URL, e.g. http://127.0.0.1:8420 (default: $LOCKSTEP_SERVER, then server: in the client config).",
                               valueName: "URL"),
            completion: .none)
    var server: String?

    @Option(name: .customLong("token-file"),
            help: ArgumentHelp("A file holding your API token, or /dev/stdin to pipe it in (default: $LOCKSTEP_TOKEN_FILE or $LOCKSTEP_TOKEN, then token_file: in the client config). There is no option taking the token itself: command lines are visible to every user in /proc.",
                               valueName: "FILE"),
            completion: .file())
    var tokenFile: String?

    @Option(name: .customLong("client-config"),
            help: ArgumentHelp("A client config (YAML with server: and token_file:) instead of ~/.config/lockstep/client.yaml.",
                               valueName: "FILE"),
            completion: .file(extensions: ["yaml", "yml"]))
    var clientConfig: String?

    @Option(help: ArgumentHelp("Seconds to wait for the daemon before giving up (exit 5).", valueName: "SECONDS"))
    var timeout: Int = 30

    @Flag(help: "Print the API's JSON (keys sorted) instead of the human form.")
    var json = false

    init() {}
}

/// Where the daemon is and who we are to it: the resolved connection settings.
///
/// `token` is never part of `description` or any error, so printing a value of this type,
/// or an error about it, cannot leak the token.
struct ClientSettings: Sendable, CustomStringConvertible {
    let server: URL
    let token: String
    /// Where the token came from (a flag, a variable or a file name), for messages.
    let tokenSource: String
    let timeout: Int

    var description: String { "server \(server.absoluteString), token from \(tokenSource)" }

    /// The variables the CLI reads.
    enum Variable {
        static let server = "LOCKSTEP_SERVER"
        static let tokenFile = "LOCKSTEP_TOKEN_FILE"
        static let token = "LOCKSTEP_TOKEN"
    }

    /// Longest token file read; a token is short, so anything bigger is the wrong file.
    static let maximumTokenFileBytes = 8 * 1024

    /// Resolves the server and token: flags, then the environment, then the client config file.
    ///
    /// - Parameter warn: receives warnings (a token file other users can read).
    static func resolve(_ options: ClientOptions, environment: [String: String],
                        warn: (String) -> Void) throws(ClientError) -> ClientSettings {
        guard options.timeout >= 1, options.timeout <= 3600 else {
            throw ClientError(.usage, "--timeout must be a number of seconds from 1 to 3600")
        }
        let server = options.server.map { (value: $0, source: "--server") }
            ?? nonEmpty(environment[Variable.server]).map { (value: $0, source: Variable.server) }
        var token: (token: String, source: String)?
        if let file = options.tokenFile {
            token = (try readTokenFile(file, source: "--token-file", warn: warn), "--token-file \(file)")
        } else {
            let file = nonEmpty(environment[Variable.tokenFile])
            let value = nonEmpty(environment[Variable.token])
            if file != nil && value != nil {
                throw ClientError(.usage, "both \(Variable.tokenFile) and \(Variable.token) are set; unset one so it is clear which identity acts")
            }
            if let file {
                token = (try readTokenFile(file, source: Variable.tokenFile, warn: warn), "\(Variable.tokenFile) \(file)")
            } else if let value {
                token = (try validatedToken(value, source: Variable.token), Variable.token)
            }
        }

        // The config file is read when it was named, or when something is still missing.
        let configPath = options.clientConfig ?? ClientConfigFile.defaultPath(environment: environment)
        var file: ClientConfigFile?
        if options.clientConfig != nil || server == nil || token == nil {
            file = try ClientConfigFile.load(path: configPath, required: options.clientConfig != nil, environment: environment)
        }

        let serverText = server?.value ?? file?.server
        let serverSource = server?.source ?? file.map { "server: in \($0.path)" }
        if token == nil, let file, let tokenFile = file.tokenFile {
            token = (try readTokenFile(tokenFile, source: "token_file: in \(file.path)", warn: warn), tokenFile)
        }

        var missing: [String] = []
        if serverText == nil {
            missing.append("no server: pass --server URL, set \(Variable.server), or put server: in \(configPath)")
        }
        if token == nil {
            missing.append("no token: pass --token-file FILE, set \(Variable.tokenFile) (or \(Variable.token)), or put token_file: in \(configPath)")
        }
        guard let serverText, let serverSource, let token, missing.isEmpty else {
            throw ClientError(.configuration, missing.joined(separator: "; "))
        }
        return ClientSettings(server: try serverURL(serverText, source: serverSource), token: token.token,
                              tokenSource: token.source, timeout: options.timeout)
    }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    /// An `http`/`https` URL with a host and nothing that could carry a secret or confuse paths.
    ///
    /// Why no `user:password@`: the URL is printed in messages and may sit on a command line.
    static func serverURL(_ text: String, source: String) throws(ClientError) -> URL {
        let expectation = "\(source) must be an http:// or https:// URL with a host, like http://127.0.0.1:8420"
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else {
            throw ClientError(.usage, expectation)
        }
        guard components.user == nil, components.password == nil else {
            throw ClientError(.usage, "\(source) must not carry a user or password; the token comes from a token file")
        }
        guard components.query == nil, components.fragment == nil else {
            throw ClientError(.usage, "\(source) must not have a query or fragment")
        }
        var cleaned = components
        // The API paths are appended to this base; keep a prefix (a reverse proxy's) without its trailing slash.
        while cleaned.path.hasSuffix("/") { cleaned.path.removeLast() }
        guard let url = cleaned.url else { throw ClientError(.usage, expectation) }
        return url
    }

    /// Reads a token file: bounded, trimmed, and checked for the characters a bearer token may have.
    /// Never quotes the file's content in an error: it may be a secret, or the wrong secret.
    ///
    /// The path may be a pipe (`--token-file /dev/stdin`, `<(pass show lockstep)`), so the
    /// token never touches the disk; only a regular file is checked for its permissions.
    static func readTokenFile(_ path: String, source: String, warn: (String) -> Void) throws(ClientError) -> String {
        let described = "the token file \(path) (\(source))"
        // Follows symlinks: a symlinked token file is judged by the file it points to.
        guard let attributes = try? FileManager.default.attributesOfItem(
            atPath: URL(fileURLWithPath: path).resolvingSymlinksInPath().path) else {
            throw ClientError(.configuration, "\(described) does not exist or cannot be read")
        }
        let isRegular = attributes[.type] as? FileAttributeType == .typeRegular
        let mode = (attributes[.posixPermissions] as? NSNumber)?.uint16Value ?? 0
        if isRegular && mode & 0o077 != 0 {
            warn("warning: the token file \(path) can be read by other users (mode \(String(mode & 0o777, radix: 8))); run chmod 600 \(path)")
        }
        guard let data = readBounded(path, limit: maximumTokenFileBytes) else {
            throw ClientError(.configuration, "\(described) cannot be read")
        }
        guard data.count <= maximumTokenFileBytes else {
            throw ClientError(.configuration, "\(described) is larger than \(maximumTokenFileBytes) bytes; it is not a token file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ClientError(.configuration, "\(described) is not UTF-8 text")
        }
        return try validatedToken(text, source: described)
    }

    /// At most `limit + 1` bytes of a file, so a wrong path (`/dev/zero`, a disk image) costs
    /// nothing; more than `limit` bytes in the result means the file is too big. Nil: unreadable.
    static func readBounded(_ path: String, limit: Int) -> Data? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var data = Data()
        do {
            while data.count <= limit {
                // nil or empty: end of file.
                guard let chunk = try handle.read(upToCount: limit + 1 - data.count), !chunk.isEmpty else { break }
                data.append(chunk)
            }
        } catch {
            return nil
        }
        return data
    }

    /// Surrounding whitespace (a trailing newline from `echo`) is dropped; anything else that a
    /// bearer token (RFC 6750 token68) cannot hold is refused here, before it is sent anywhere.
    static func validatedToken(_ raw: String, source: String) throws(ClientError) -> String {
        let token = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else {
            throw ClientError(.configuration, "\(source) holds no token")
        }
        guard token.utf8.count <= 4096, token.utf8.allSatisfy(isToken68) else {
            throw ClientError(.configuration, "\(source) does not hold a single well-formed token (letters, digits and -._~+/= only, one line)")
        }
        return token
    }

    private static func isToken68(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
            true
        default:
            false
        }
    }
}

/// `~/.config/lockstep/client.yaml`: where an operator keeps the server URL and the path of
/// their token file, so day-to-day commands need no flags.
///
/// ```yaml
/// server: https://lockstep.internal:8420
/// token_file: ~/.config/lockstep/token
/// ```
///
/// Only these two keys are accepted. A `token:` key is refused rather than read: a token
/// belongs in its own 0600 file, not in a config that gets copied and shared.
struct ClientConfigFile: Sendable {
    let path: String
    let server: String?
    /// Absolute: `~/` is expanded and a relative path is taken from the config file's folder.
    let tokenFile: String?

    /// `$XDG_CONFIG_HOME/lockstep/client.yaml`, else `$HOME/.config/lockstep/client.yaml`.
    static func defaultPath(environment: [String: String]) -> String {
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            return xdg + "/lockstep/client.yaml"
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.config/lockstep/client.yaml"
    }

    /// - Parameter required: when false, a missing file is no error (the default path).
    static func load(path: String, required: Bool, environment: [String: String]) throws(ClientError) -> ClientConfigFile? {
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw ClientError(.configuration, "the client config \(path) does not exist") }
            return nil
        }
        guard let data = ClientSettings.readBounded(path, limit: 64 * 1024) else {
            throw ClientError(.configuration, "the client config \(path) cannot be read")
        }
        guard data.count <= 64 * 1024, let text = String(data: data, encoding: .utf8) else {
            throw ClientError(.configuration, "\(path): expected a small UTF-8 YAML file with server: and token_file:")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            // Yams' message quotes the document, which may hold a secret pasted by mistake.
            throw ClientError(.configuration, "\(path): not valid YAML")
        }
        guard let node else { return ClientConfigFile(path: path, server: nil, tokenFile: nil) }
        guard let mapping = node.mapping else {
            throw ClientError(.configuration, "\(path): expected a mapping with server: and token_file:")
        }
        var server: String?
        var tokenFile: String?
        for (key, value) in mapping {
            guard let name = key.string else {
                throw ClientError(.configuration, "\(path): keys must be strings (server, token_file)")
            }
            switch name {
            case "server":
                guard let text = value.scalar?.string, !text.isEmpty else {
                    throw ClientError(.configuration, "\(path): server: must be a URL string")
                }
                server = text
            case "token_file":
                guard let text = value.scalar?.string, !text.isEmpty else {
                    throw ClientError(.configuration, "\(path): token_file: must be a path string")
                }
                tokenFile = resolvedPath(text, relativeTo: path, environment: environment)
            case "token":
                throw ClientError(.configuration, "\(path): token: is not accepted; put the token in its own file (chmod 600) and name it with token_file:")
            default:
                throw ClientError(.configuration, "\(path): unknown key \"\(terminalSafe(name, limit: 64))\"; expected server and token_file")
            }
        }
        return ClientConfigFile(path: path, server: server, tokenFile: tokenFile)
    }

    private static func resolvedPath(_ text: String, relativeTo configPath: String, environment: [String: String]) -> String {
        if text == "~" || text.hasPrefix("~/") {
            let home = environment["HOME"] ?? NSHomeDirectory()
            return home + text.dropFirst()
        }
        if text.hasPrefix("/") { return text }
        return URL(fileURLWithPath: configPath).deletingLastPathComponent().appendingPathComponent(text).path
    }
}
