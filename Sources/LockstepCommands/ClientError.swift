import Foundation

/// Why an API client command failed, with the exit status a script branches on.
///
/// `description` is what the operator sees. It holds the server's error code and message or
/// a fixed text of ours, never the token and never a raw response body.
struct ClientError: Error, Sendable, CustomStringConvertible {
    struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        let rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }
        var description: String { rawValue }

        /// A value on the command line is invalid (exit 1).
        static let usage = Code(rawValue: "usage")
        /// Server or token missing, or a token file / client config unusable (exit 1).
        static let configuration = Code(rawValue: "configuration")
        /// The daemon could not be reached: connection refused, timeout, DNS (exit 5).
        static let unreachable = Code(rawValue: "unreachable")
        /// TLS failed: the certificate is not trusted or the handshake broke (exit 1).
        static let tls = Code(rawValue: "tls_failed")
        /// The server answered with a redirect, which is never followed (exit 1).
        static let redirected = Code(rawValue: "redirected")
        /// The server's answer is not what the API sends (a proxy's page, a truncated body) (exit 1).
        static let badResponse = Code(rawValue: "bad_response")
        /// The server answered with an error body; `apiCode` holds its code.
        static let api = Code(rawValue: "api")
    }

    let code: Code
    let message: String
    /// The HTTP status, when the server answered.
    var status: Int?
    /// The API's stable error code (`refused_wrong_digest`, `not_found`, …), when it sent one.
    var apiCode: String?
    /// The API's error body as it was sent, printed with `--json`.
    var apiBody: Data?

    init(_ code: Code, _ message: String, status: Int? = nil, apiCode: String? = nil, apiBody: Data? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.apiCode = apiCode
        self.apiBody = apiBody
    }

    /// The code shown and put in `--json` errors: the API's own, else ours.
    var shownCode: String { apiCode ?? code.rawValue }

    var description: String {
        let statusText = status.map { " (HTTP \($0))" } ?? ""
        return "\(shownCode): \(message)\(statusText)"
    }

    /// The exit status (see ``ClientHelp/exitStatuses``).
    var exitCode: Int32 {
        switch code {
        case .unreachable:
            return ClientExit.unreachable
        case .api:
            switch status {
            case 401: return ClientExit.unauthorized
            case 403, 409: return ClientExit.refused
            case 404: return ClientExit.notFound
            default: return ClientExit.failure
            }
        default:
            return ClientExit.failure
        }
    }
}

/// Exit statuses of the API client commands.
enum ClientExit {
    static let success: Int32 = 0
    static let failure: Int32 = 1
    static let refused: Int32 = 3
    static let notFound: Int32 = 4
    static let unreachable: Int32 = 5
    static let unauthorized: Int32 = 6
}

/// Text from the server made safe for a terminal: control characters other than newline
/// and tab are shown as `\u{…}`, and it is cut at `limit` characters.
///
/// Why: run data carries repo-derived text (tag names, plan renderings, check details). An
/// ESC sequence in it could rewrite the terminal's title, hide lines or fake a prompt on the
/// reviewer's screen; a carriage return could overwrite the digest the reviewer is about to copy.
func terminalSafe(_ text: String, limit: Int = 4096, keepNewlines: Bool = false) -> String {
    var out = ""
    var count = 0
    for scalar in text.unicodeScalars {
        if count >= limit {
            out += "…"
            break
        }
        count += 1
        if keepNewlines && (scalar == "\n" || scalar == "\t") {
            out.unicodeScalars.append(scalar)
            continue
        }
        let value = scalar.value
        let isControl = value < 0x20 || value == 0x7F || (value >= 0x80 && value < 0xA0)
        // Bidirectional overrides and isolates reorder what the eye reads (CVE-2021-42574).
        let isBidi = (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
        if isControl || isBidi {
            out += "\\u{\(String(value, radix: 16))}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}
