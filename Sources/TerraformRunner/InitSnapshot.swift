import Foundation
import LockstepCore

/// What `terraform init` left in a project folder, kept so that a later plan of the same target
/// whose inputs to init are byte-identical restores it instead of running init again.
///
/// Why: init costs a terraform process (and the plugin cache lock) on every plan, yet for most
/// releases nothing it reads has changed — a release usually changes values, not providers,
/// modules or the backend. Init reads the project's configuration files (`*.tf`, `*.tf.json`)
/// and those of every local module it calls, the dependency lock file, the backend config
/// files, the CLI config and the terraform binary; ``inputsDigest`` covers exactly those,
/// and nothing else decides what init writes.
///
/// Kept conservative (docs/ARCHITECTURE.md, "Init snapshots"):
/// - only what init wrote is kept: `.terraform/` (small files and the provider links into the
///   environment's own plugin cache) and the lock file; a provider binary copied into
///   `.terraform/` (no plugin cache), a remote module (its code downloaded under `.terraform/`,
///   and its source may move upstream), a link that leads anywhere but the plugin cache, or any
///   input that is a symlink means no snapshot, and init runs every time;
/// - the snapshot is taken right after init, before plan-time code runs in the folder, and is
///   kept where no terraform command can reach (the caller's business: the store's folder);
/// - terraform itself checks what is restored on every plan (the backend's config hash, the
///   provider packages against the lock file, the module manifest against the module calls),
///   so a stale snapshot fails the plan loudly rather than planning something else.
public struct InitSnapshot: Sendable, Codable, Equatable {
    /// Digest of every input of init (``inputsDigest(projectDirectory:tree:backendConfigFiles:moduleDirectories:lockFile:tool:)``).
    public var inputs: Digest
    /// Local module folders, relative to the project folder, whose configuration files ``inputs`` covers.
    public var moduleDirectories: [String]
    /// What init wrote, relative to the project folder.
    public var entries: [Entry]

    public struct Entry: Sendable, Codable, Equatable {
        public var path: String
        /// A regular file's bytes.
        public var contents: Data?
        /// A symbolic link's destination (always inside the plugin cache).
        public var link: String?
    }

    /// The dependency lock file's name, in the project folder.
    public static let lockFileName = ".terraform.lock.hcl"
    /// Past this many bytes of `.terraform/` a snapshot is not kept (a copied provider binary).
    static let maxEntryBytes = 1 << 20
    /// Past this many bytes of configuration no digest is computed (init then always runs).
    static let maxInputBytes = 16 << 20

    /// Reads the lock file as init will find it: `.none` when there is none, nil when it
    /// cannot be part of a snapshot (a symlink, unreadable).
    public static func lockFileBeforeInit(projectDirectory: URL) -> LockFile? {
        let url = projectDirectory.appendingPathComponent(lockFileName)
        switch kind(of: url) {
        case .missing: return LockFile.absent
        case .regular: return FileManager.default.contents(atPath: url.path).map(LockFile.present)
        default: return nil
        }
    }

    /// The lock file as it was before init ran.
    public enum LockFile: Sendable, Equatable {
        case absent
        case present(Data)
    }

    /// SHA-256 over everything init reads, in a fixed order with every field length-prefixed;
    /// nil when some input cannot be covered (a symlink, a folder outside `tree`, too large).
    public static func inputsDigest(projectDirectory: URL, tree: URL, backendConfigFiles: [URL], moduleDirectories: [String],
                                    lockFile: LockFile, tool: Data) -> Digest? {
        var bytes = Data()
        func field(_ data: Data) {
            var length = UInt64(data.count).bigEndian
            withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
            bytes.append(data)
        }
        func field(_ text: String) { field(Data(text.utf8)) }
        field("lockstep init inputs 1")
        field(tool)
        let root = tree.standardizedFileURL.path
        for file in backendConfigFiles {
            guard kind(of: file) == .regular, let contents = FileManager.default.contents(atPath: file.path) else { return nil }
            field(relative(file.standardizedFileURL.path, to: root) ?? file.standardizedFileURL.path)
            field(contents)
        }
        switch lockFile {
        case .absent: field("no lock file")
        case .present(let contents): field("lock file"); field(contents)
        }
        for directory in ["."] + moduleDirectories.sorted() {
            let folder = projectDirectory.appendingPathComponent(directory, isDirectory: true).standardizedFileURL
            guard folder.path == root || folder.path.hasPrefix(root + "/"), kind(of: folder) == .directory,
                  let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return nil }
            field("module folder"); field(directory)
            for name in names.sorted() where name.hasSuffix(".tf") || name.hasSuffix(".tf.json") {
                let file = folder.appendingPathComponent(name)
                guard kind(of: file) == .regular, let contents = FileManager.default.contents(atPath: file.path) else { return nil }
                field(name); field(contents)
                guard bytes.count <= maxInputBytes else { return nil }
            }
        }
        return Digest.sha256(of: bytes)
    }

    /// What init just wrote in `projectDirectory`, with the digest of its inputs; nil (with the
    /// reason) when it cannot be kept. Call it right after a successful init, before anything
    /// else runs in the folder. `lockFile` is ``lockFileBeforeInit(projectDirectory:)``, read
    /// before init ran.
    public static func take(projectDirectory: URL, tree: URL, backendConfigFiles: [URL], lockFile: LockFile, tool: Data,
                            pluginCache: URL) -> Result<InitSnapshot, Refusal> {
        let data = projectDirectory.appendingPathComponent(".terraform", isDirectory: true)
        guard kind(of: data) == .directory,
              let paths = FileManager.default.enumerator(atPath: data.path)?.allObjects as? [String], !paths.isEmpty
        else { return .failure(Refusal("init left no .terraform folder")) }
        let cache = pluginCache.standardizedFileURL.path + "/"
        var entries: [Entry] = []
        var total = 0
        for path in paths.sorted() {
            let url = data.appendingPathComponent(path)
            switch kind(of: url) {
            case .directory: continue
            case .regular:
                guard let contents = FileManager.default.contents(atPath: url.path) else { return .failure(Refusal("unreadable file")) }
                total += contents.count
                guard total <= maxEntryBytes else { return .failure(Refusal("init copied more than \(ByteSize(maxEntryBytes)) into .terraform (no plugin cache?)")) }
                entries.append(Entry(path: ".terraform/" + path, contents: contents))
            case .symlink:
                guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path),
                      URL(fileURLWithPath: destination).standardizedFileURL.path.hasPrefix(cache)
                else { return .failure(Refusal("a link in .terraform leads outside the plugin cache")) }
                entries.append(Entry(path: ".terraform/" + path, link: destination))
            default:
                return .failure(Refusal("init left something that is neither a file, a folder nor a link"))
            }
        }
        let lock = projectDirectory.appendingPathComponent(lockFileName)
        guard kind(of: lock) == .regular, let lockContents = FileManager.default.contents(atPath: lock.path) else {
            return .failure(Refusal("init left no lock file"))
        }
        entries.append(Entry(path: lockFileName, contents: lockContents))

        var modules: [String] = []
        if let manifest = entries.first(where: { $0.path == ".terraform/modules/modules.json" })?.contents {
            struct Manifest: Decodable {
                struct Module: Decodable { var Dir: String }
                var Modules: [Module]
            }
            guard let decoded = try? JSONDecoder().decode(Manifest.self, from: manifest) else {
                return .failure(Refusal("the module manifest could not be read"))
            }
            for module in decoded.Modules where module.Dir != "." {
                let dir = module.Dir
                guard !dir.hasPrefix("/"), !(dir == ".terraform" || dir.hasPrefix(".terraform/")) else {
                    return .failure(Refusal("a module is not a local folder of the tree"))
                }
                if !modules.contains(dir) { modules.append(dir) }
            }
        }
        guard let inputs = inputsDigest(projectDirectory: projectDirectory, tree: tree, backendConfigFiles: backendConfigFiles,
                                        moduleDirectories: modules, lockFile: lockFile, tool: tool)
        else { return .failure(Refusal("an input of init could not be covered by the digest")) }
        return .success(InitSnapshot(inputs: inputs, moduleDirectories: modules.sorted(), entries: entries))
    }

    /// Why no snapshot was taken (for the log).
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Writes what init wrote into `projectDirectory` (a fresh export): `.terraform/` must not
    /// exist yet, and the lock file is replaced (whatever the export had there is removed first,
    /// never written through).
    public func restore(into projectDirectory: URL) throws {
        let fileManager = FileManager.default
        let data = projectDirectory.appendingPathComponent(".terraform", isDirectory: true)
        guard Self.kind(of: data) == .missing else {
            throw TerraformRunnerError(.fileSystem, "the project folder already has a .terraform folder")
        }
        for entry in entries {
            guard entry.path == Self.lockFileName || entry.path.hasPrefix(".terraform/"),
                  !entry.path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
                throw TerraformRunnerError(.fileSystem, "an init snapshot names a path outside .terraform")
            }
            let url = projectDirectory.appendingPathComponent(entry.path)
            do {
                try fileManager.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
                if Self.kind(of: url) != .missing { try fileManager.removeItem(at: url) }
                if let link = entry.link {
                    try fileManager.createSymbolicLink(atPath: url.path, withDestinationPath: link)
                } else if !fileManager.createFile(atPath: url.path, contents: entry.contents ?? Data(),
                                                  attributes: [.posixPermissions: 0o600]) {
                    throw TerraformRunnerError(.fileSystem, "cannot write a file of an init snapshot")
                }
            } catch let error as TerraformRunnerError {
                throw error
            } catch {
                throw TerraformRunnerError(.fileSystem, "cannot restore an init snapshot")
            }
        }
    }

    enum Kind { case missing, regular, directory, symlink, other }

    /// The type of what is at `url`, symbolic links not followed.
    static func kind(of url: URL) -> Kind {
        guard let type = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.type] as? FileAttributeType else {
            return .missing
        }
        switch type {
        case .typeRegular: return .regular
        case .typeDirectory: return .directory
        case .typeSymbolicLink: return .symlink
        default: return .other
        }
    }

    static func relative(_ path: String, to root: String) -> String? {
        path.hasPrefix(root + "/") ? String(path.dropFirst(root.count + 1)) : nil
    }
}

extension TerraformRunner {
    /// What identifies the tool for ``InitSnapshot``: the binary (path, inode, size, change time:
    /// replacing it changes them), the CLI config this runner writes, and whether the plugin cache
    /// is used. nil when the binary cannot be examined.
    public var initToolIdentity: Data? {
        var status = stat()
        guard stat(configuration.executable.path, &status) == 0, let config = try? cliConfiguration.rendered() else { return nil }
        let binary = "\(configuration.executable.path)\n\(status.st_ino)\n\(status.st_size)\n\(status.st_ctim.tv_sec).\(status.st_ctim.tv_nsec)\n"
        return Data((binary + "\(configuration.usesPluginCache)\n" + config).utf8)
    }
}
