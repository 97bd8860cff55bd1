import Foundation
import LockstepCore
import Logging
import RunStore
import TerraformRunner

/// `terraform init` for a plan, skipped when nothing it reads changed since the target's last
/// init (``InitSnapshot``; docs/ARCHITECTURE.md, "Init snapshots").
///
/// One snapshot per target, never shared between environments or projects: each is restored as
/// fresh copies into a fresh export, its provider links lead into the environment's own plugin
/// cache. Snapshots live beside the runs folder, inside the store's folder, which no confined
/// command can read or write; they are taken right after init and before plan-time code runs.
extension Gate {
    nonisolated var initSnapshotsDirectory: URL {
        runsDirectory.deletingLastPathComponent().appendingPathComponent("init-snapshots", isDirectory: true)
    }

    nonisolated func initSnapshotFile(_ target: TargetID) -> URL {
        initSnapshotsDirectory.appendingPathComponent(target.project.rawValue, isDirectory: true)
            .appendingPathComponent("\(target.environment.rawValue).json")
    }

    /// Prepares `layout.projectDirectory` for `plan`: restores the target's init snapshot when its
    /// inputs are unchanged, runs init otherwise (and keeps what it wrote for next time). Returns
    /// what goes into the run's log for it (init's output, or that it was skipped), for the caller
    /// to write while plan runs; a failed init is logged here.
    func initialiseForPlan(_ run: StoredRun, invocation: TerraformRunner.Invocation,
                           layout: RunLayout) async throws(RunFailure) -> (text: String, stream: LogStream) {
        let log = runLogger(run)
        let tool = runner.initToolIdentity
        let lockFile = InitSnapshot.lockFileBeforeInit(projectDirectory: layout.projectDirectory)
        if let tool, let lockFile, let snapshot = loadInitSnapshot(run.target) {
            let inputs = InitSnapshot.inputsDigest(projectDirectory: layout.projectDirectory, tree: layout.tree,
                                                   backendConfigFiles: layout.backendConfigFiles,
                                                   moduleDirectories: snapshot.moduleDirectories, lockFile: lockFile, tool: tool)
            if inputs == snapshot.inputs, snapshot.linksResolve {
                do {
                    try snapshot.restore(into: layout.projectDirectory)
                    log.info("init skipped: its inputs are unchanged since the target's last init", metadata: ["init.inputs": "\(snapshot.inputs)"])
                    return ("lockstep: terraform init skipped: the configuration files, lock file, backend config and "
                            + "terraform are byte-identical to this target's last init, whose result was restored", .lockstep)
                } catch {
                    log.warning("an init snapshot could not be restored; running init", metadata: ["error": "\(safeDescription(error))"])
                    try? FileManager.default.removeItem(at: layout.projectDirectory.appendingPathComponent(".terraform"))
                }
            }
        }
        let initialization: CommandResult
        do {
            initialization = try await runner.initialize(invocation, backendConfigFiles: layout.backendConfigFiles)
        } catch {
            throw RunFailure("terraform init could not run: \(safeDescription(error))")
        }
        guard initialization.outcome == .succeeded else {
            await appendLog(initialization.output, stream: .plan, run: run.id)
            throw RunFailure(commandFailure("init", initialization))
        }
        let logged = (text: initialization.output, stream: LogStream.plan)
        guard let tool, let lockFile, let cache = invocation.pluginCache else { return logged }
        switch InitSnapshot.take(projectDirectory: layout.projectDirectory, tree: layout.tree,
                                 backendConfigFiles: layout.backendConfigFiles, lockFile: lockFile, tool: tool, pluginCache: cache) {
        case .success(let snapshot):
            saveInitSnapshot(snapshot, target: run.target)
        case .failure(let refusal):
            log.debug("init's result is not kept", metadata: ["reason": "\(refusal.description)"])
            try? FileManager.default.removeItem(at: initSnapshotFile(run.target))
        }
        return logged
    }

    /// The target's snapshot, nil when there is none or it cannot be read (init then runs).
    func loadInitSnapshot(_ target: TargetID) -> InitSnapshot? {
        let file = initSnapshotFile(target)
        guard let data = FileManager.default.contents(atPath: file.path) else { return nil }
        do {
            return try JSONDecoder().decode(InitSnapshot.self, from: data)
        } catch {
            logger.warning("an init snapshot could not be read; it is removed", metadata: ["target": "\(target)"])
            try? FileManager.default.removeItem(at: file)
            return nil
        }
    }

    /// Keeps `snapshot` as the target's (written whole, then renamed over the old one). A failure
    /// only costs the next plan an init.
    func saveInitSnapshot(_ snapshot: InitSnapshot, target: TargetID) {
        let file = initSnapshotFile(target)
        let folder = file.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(".\(UUID().uuidString).json")
        do {
            for directory in [initSnapshotsDirectory, folder] {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            }
            guard FileManager.default.createFile(atPath: temporary.path, contents: try JSONEncoder().encode(snapshot),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw CocoaError(.fileWriteUnknown)
            }
            guard rename(temporary.path, file.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            logger.warning("an init snapshot could not be kept", metadata: ["target": "\(target)"])
        }
    }
}

extension InitSnapshot {
    /// Every provider link still leads to something (an operator may have emptied the plugin cache).
    var linksResolve: Bool {
        entries.allSatisfy { entry in entry.link.map { FileManager.default.fileExists(atPath: $0) } ?? true }
    }
}
