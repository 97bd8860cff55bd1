public import Foundation

// The JSON shapes of `/api/v1` (docs/CONTRACT.md §5), shared by the daemon (LockstepHTTP) and
// its clients (LockstepClient, the CLI). This module is Foundation and LockstepCore only, so a
// client never links the server. Every key is spelled out in `CodingKeys`, so renaming a Swift
// property can never change what a script reading the API sees; the golden tests in
// LockstepHTTPTests and LockstepCommandsTests pin the keys. Times are ISO 8601 in UTC.
// Lists are wrapped in an object (`{"runs": [...]}`) so fields can be added without breaking
// a client.

/// The JSON encoder and decoder of the API. Both sides use the same ones so they agree on
/// dates (ISO 8601, UTC) and key order (sorted, so output is diffable).
public enum APIJSON {
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
