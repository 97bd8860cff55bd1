// APIBackend, the protocol a daemon implements to serve the API, is written in LockstepAPI's
// wire types, so a module that imports the server gets them with it.
@_exported public import LockstepAPI
