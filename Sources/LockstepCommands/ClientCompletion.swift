import Foundation
import LockstepAPI
import LockstepCore

/// Shell completion of run ids, environments and targets, asked of the daemon when the
/// user presses TAB (swift-argument-parser calls these through `lockstep ---completion`).
///
/// A completion must never hang a shell or print anything but candidates: it waits at most
/// a few seconds, and any failure (no server configured, daemon down, wrong token) yields
/// no candidates rather than an error. Candidates are decoded into validated ids
/// (`RunID`, `EnvironmentName`), so a hostile answer cannot put shell syntax or escape
/// sequences into the user's command line.
enum ClientCompletion {
    /// Seconds a completion may wait for the daemon: 3, or `LOCKSTEP_COMPLETION_TIMEOUT`
    /// (1…60) for a slow link to the daemon.
    static var timeout: Int {
        let configured = ProcessInfo.processInfo.environment["LOCKSTEP_COMPLETION_TIMEOUT"].flatMap { Int($0) }
        return configured.map { min(max($0, 1), 60) } ?? 3
    }

    static let openRuns: @Sendable ([String], Int, String) async -> [String] = { words, _, prefix in
        await runs(words: words, prefix: prefix, states: RunState.allCases.filter { !$0.isFinal })
    }

    static let awaitingApproval: @Sendable ([String], Int, String) async -> [String] = { words, _, prefix in
        await runs(words: words, prefix: prefix, states: [.awaitingApproval])
    }

    static let interruptedRuns: @Sendable ([String], Int, String) async -> [String] = { words, _, prefix in
        await runs(words: words, prefix: prefix, states: [.interrupted])
    }

    static let environments: @Sendable ([String], Int, String) async -> [String] = { words, _, prefix in
        let list = await ask(words: words) { api throws(ClientError) in
            try api.decode(APIEnvironmentList.self, from: try await api.get("environments"))
        }
        return (list?.environments ?? []).map(\.name.rawValue).filter { $0.hasPrefix(prefix) }
    }

    static let targets: @Sendable ([String], Int, String) async -> [String] = { words, _, prefix in
        let list = await ask(words: words) { api throws(ClientError) in
            try api.decode(APIEnvironmentList.self, from: try await api.get("environments"))
        }
        return (list?.environments ?? []).flatMap(\.targets).map(\.target.description).filter { $0.hasPrefix(prefix) }
    }

    private static func runs(words: [String], prefix: String, states: [RunState]) async -> [String] {
        let query = states.map { URLQueryItem(name: "state", value: $0.rawValue) } + [URLQueryItem(name: "limit", value: "200")]
        let list = await ask(words: words) { api throws(ClientError) in
            try api.decode(APIRunList.self, from: try await api.get("runs", query: query))
        }
        return (list?.runs ?? []).map(\.id.rawValue).filter { $0.hasPrefix(prefix) }
    }

    /// Asks the daemon with the connection options already typed on the command line, the
    /// environment and the client config. Nil when that is not enough or the request fails:
    /// a completion offers nothing rather than an error.
    private static func ask<Result: Sendable>(words: [String],
                                              _ body: (CommandClient) async throws(ClientError) -> Result) async -> Result? {
        var options = ClientOptions()
        options.server = value(of: "--server", in: words)
        options.tokenFile = value(of: "--token-file", in: words)
        options.clientConfig = value(of: "--client-config", in: words)
        options.timeout = timeout
        guard let settings = try? ClientSettings.resolve(options, environment: ProcessInfo.processInfo.environment,
                                                         warn: { _ in })
        else { return nil }
        return try? await CommandClient.with(settings, body)
    }

    /// `--name VALUE` or `--name=VALUE` in the shell words, without surrounding quotes.
    static func value(of name: String, in words: [String]) -> String? {
        var found: String?
        for (index, word) in words.enumerated() {
            if word == name, index + 1 < words.count {
                found = words[index + 1]
            } else if word.hasPrefix(name + "=") {
                found = String(word.dropFirst(name.count + 1))
            }
        }
        guard var text = found, !text.isEmpty else { return nil }
        for quote in ["\"", "'"] where text.count >= 2 && text.hasPrefix(quote) && text.hasSuffix(quote) {
            text = String(text.dropFirst().dropLast())
        }
        return text
    }
}
