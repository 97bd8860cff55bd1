import ArgumentParser
import LockstepCommands

/// The executable is only the entry point: every command lives in LockstepCommands.
@main
extension LockstepCommand {}
