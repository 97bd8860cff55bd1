import Crypto
import Foundation
import LockstepCore

// `LockstepCore.Digest` in full: Crypto has a `Digest` protocol of its own.
extension TerraformRunner {
    /// SHA-256 of a saved plan's bytes already in memory (a plan read once, see
    /// ``SavedPlan/contents``): the digest approvals quote (docs/CONTRACT.md §1).
    public static func digest(of contents: Data) -> LockstepCore.Digest {
        digest(SHA256.hash(data: contents))
    }

    /// SHA-256 of the file at `url`, read in chunks.
    public static func digest(ofFileAt url: URL) throws -> LockstepCore.Digest {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw TerraformRunnerError(.planFileMissing, "the plan file does not exist or cannot be read")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                hasher.update(data: chunk)
            }
        } catch {
            throw TerraformRunnerError(.fileSystem, "the plan file could not be read")
        }
        return digest(hasher.finalize())
    }

    private static func digest(_ hash: SHA256.Digest) -> LockstepCore.Digest {
        // 64 lower-case hex characters: always a valid digest.
        try! LockstepCore.Digest(hash.map { String(format: "%02x", $0) }.joined())
    }
}
