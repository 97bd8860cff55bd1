import Foundation

/// The terraform CLI configuration Lockstep writes for every invocation.
///
/// Invariant (docs/THREAT-MODEL.md §1.1, committed provider binaries): it always contains an
/// explicit `provider_installation` block. Without one terraform consults
/// implied local mirrors, including `terraform.d/plugins` in the working
/// directory, which a delivery repo controls; with one, only the sources named
/// here are used. It is written outside the exported repository tree and
/// passed through `TF_CLI_CONFIG_FILE`, so a `.terraformrc` or
/// `TF_CLI_CONFIG_FILE` from the repo or the daemon never applies.
public struct CLIConfiguration: Sendable, Equatable {
    /// Where providers come from.
    public enum ProviderInstallation: Sendable, Equatable {
        /// Only from a local mirror directory (offline agents, tests).
        case filesystemMirror(URL)
        /// From a local mirror for the listed provider source patterns
        /// (e.g. `registry.terraform.io/hashicorp/*`), from the registry otherwise.
        case mirrorThenDirect(URL, include: [String])
        /// From the origin registries only.
        case direct
    }

    public var providerInstallation: ProviderInstallation
    /// Shared provider cache (serialised per directory by the runner), or nil.
    public var pluginCacheDirectory: URL?

    public init(providerInstallation: ProviderInstallation, pluginCacheDirectory: URL? = nil) {
        self.providerInstallation = providerInstallation
        self.pluginCacheDirectory = pluginCacheDirectory
    }

    /// The HCL text. Throws when a path cannot be written safely as an HCL string.
    public func rendered() throws -> String {
        var lines: [String] = ["provider_installation {"]
        switch providerInstallation {
        case .filesystemMirror(let url):
            lines += ["  filesystem_mirror {", "    path = \(try Self.quoted(url.path))", "  }"]
        case .mirrorThenDirect(let url, let include):
            let patterns = try include.map(Self.quoted).joined(separator: ", ")
            lines += [
                "  filesystem_mirror {", "    path = \(try Self.quoted(url.path))", "    include = [\(patterns)]", "  }",
                "  direct {", "    exclude = [\(patterns)]", "  }",
            ]
        case .direct:
            lines += ["  direct {}"]
        }
        lines.append("}")
        if let cache = pluginCacheDirectory {
            lines.append("plugin_cache_dir = \(try Self.quoted(cache.path))")
        }
        lines.append("disable_checkpoint = true")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the configuration atomically to `url` (mode 0600).
    public func write(to url: URL) throws {
        let text = try rendered()
        do {
            try Data(text.utf8).write(to: url, options: .atomic)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        } catch {
            throw TerraformRunnerError(.fileSystem, "cannot write the terraform CLI configuration")
        }
    }

    private static func quoted(_ value: String) throws -> String {
        // Control characters could end the string and inject configuration.
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw TerraformRunnerError(.invalidConfiguration, "a CLI configuration path contains a control character")
        }
        let escaped = value
            .replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "${", with: "$${")
            .replacingOccurrences(of: "%{", with: "%%{")
        return "\"\(escaped)\""
    }
}
