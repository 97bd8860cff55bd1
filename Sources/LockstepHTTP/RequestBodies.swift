import Foundation
import LockstepAPI
import LockstepCore

// Request bodies are decoded strictly: a JSON object with exactly the documented fields.
// An unknown field is an error rather than ignored, so a typo (`"diguest"`) or a field a
// client believes is honoured (`"identity": "alice"`) is refused instead of silently doing
// something else. Fields are plain strings here and validated into domain types by the
// handler, so every error names the field it is about.

/// A request body with a fixed set of field names (the wire shapes are LockstepAPI's).
protocol StrictBody: Decodable, Sendable {
    static var fields: Set<String> { get }
}

extension APIApproveBody: StrictBody {}
extension APIRejectBody: StrictBody {}
extension APIRollbackBody: StrictBody {}
extension APIResolveBody: StrictBody {}

/// Any JSON object key.
private struct AnyKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) {
        self.stringValue = stringValue
        self.intValue = nil
    }
    init?(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

/// Thrown from inside decoding to name an unknown field.
private struct UnknownField: Error {
    let name: String
}

/// Checks the keys, then decodes `Body`.
private struct Strict<Body: StrictBody>: Decodable {
    let body: Body

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = container.allKeys.map(\.stringValue).filter({ !Body.fields.contains($0) }).sorted().first {
            throw UnknownField(name: unknown)
        }
        self.body = try Body(from: decoder)
    }
}

enum BodyDecoder {
    /// Decodes `bytes` into `Body`, or throws an ``APIFailure`` (400) naming what is wrong.
    static func decode<Body: StrictBody>(_ type: Body.Type, from bytes: [UInt8]) throws(APIFailure) -> Body {
        let expected = "a JSON object with " + Body.fields.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
        guard !bytes.isEmpty else {
            throw .badRequest("the request body is empty; expected \(expected)")
        }
        do {
            return try JSONDecoder().decode(Strict<Body>.self, from: Data(bytes)).body
        } catch let error as UnknownField {
            throw .badRequest("unknown field \"\(displaySafe(error.name, limit: 64))\"; expected \(expected)")
        } catch let error as DecodingError {
            throw .badRequest(message(for: error, expected: expected))
        } catch {
            throw .badRequest("the request body is not valid JSON; expected \(expected)")
        }
    }

    private static func fieldName(_ path: [any CodingKey]) -> String {
        displaySafe(path.map(\.stringValue).joined(separator: "."), limit: 64)
    }

    private static func message(for error: DecodingError, expected: String) -> String {
        switch error {
        case .keyNotFound(let key, _):
            return "missing field \"\(displaySafe(key.stringValue, limit: 64))\"; expected \(expected)"
        case .typeMismatch(_, let context) where context.codingPath.isEmpty:
            return "the request body must be \(expected)"
        case .typeMismatch(let type, let context):
            return "field \"\(fieldName(context.codingPath))\" must be \(typeName(type))"
        case .valueNotFound(let type, let context) where !context.codingPath.isEmpty:
            return "field \"\(fieldName(context.codingPath))\" must be \(typeName(type)), not null"
        case .dataCorrupted(let context) where !context.codingPath.isEmpty:
            return "field \"\(fieldName(context.codingPath))\" is invalid"
        default:
            return "the request body is not valid JSON; expected \(expected)"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        if type == String.self { return "a string" }
        if type == Int.self || type == Double.self { return "a number" }
        if type == Bool.self { return "true or false" }
        return "another type"
    }
}

/// Free-text fields (reject and resolve reasons) go to the audit log and are shown to
/// other operators: bounded, non-empty, and without control characters so a reason
/// cannot forge lines in a log or a terminal.
enum ReasonText {
    static func validate(_ text: String, field: String, maximumBytes: Int) throws(APIFailure) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            throw .badRequest("field \"\(field)\" is empty; say why")
        }
        guard trimmed.utf8.count <= maximumBytes else {
            throw .badRequest("field \"\(field)\" is longer than \(maximumBytes) bytes")
        }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .badRequest("field \"\(field)\" contains control characters (newlines, escapes); send one line of text")
        }
        return trimmed
    }
}
