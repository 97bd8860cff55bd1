public import LockstepCore

// The error body every failed request answers with, and its stable codes.

/// The body of every error response: `{"error":{"code":"...","message":"..."}}`.
public struct APIErrorBody: Sendable, Hashable, Codable {
    public struct Detail: Sendable, Hashable, Codable {
        public var code: APIErrorCode
        public var message: String
        public init(code: APIErrorCode, message: String) {
            self.code = code
            self.message = message
        }
        enum CodingKeys: String, CodingKey { case code, message }
    }

    public var error: Detail

    public init(code: APIErrorCode, message: String) {
        self.error = Detail(code: code, message: message)
    }

    enum CodingKeys: String, CodingKey { case error }
}

/// The stable `code` of an error response. A struct with static members so new codes
/// never break a client; a client branches on these, never on the message.
public struct APIErrorCode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// No, a malformed, an unknown or a revoked bearer token (401).
    public static let unauthorized = APIErrorCode(rawValue: "unauthorized")
    /// Authenticated, but not allowed (403); backend refusals of this kind use `refused_<reason>`.
    public static let forbidden = APIErrorCode(rawValue: "forbidden")
    public static let notFound = APIErrorCode(rawValue: "not_found")
    public static let methodNotAllowed = APIErrorCode(rawValue: "method_not_allowed")
    /// Malformed JSON, a wrong type, an unknown or missing field, an invalid value (400).
    public static let badRequest = APIErrorCode(rawValue: "bad_request")
    public static let payloadTooLarge = APIErrorCode(rawValue: "payload_too_large")
    /// Something failed inside the daemon; the detail is in its log, never in the response.
    public static let `internal` = APIErrorCode(rawValue: "internal")

    /// `refused_<reason>`: the gate refused the request for `reason`.
    public static func refused(_ reason: APIRefusal.Code) -> APIErrorCode {
        APIErrorCode(rawValue: "refused_\(reason.rawValue)")
    }

    /// The refusal reason when this is a `refused_<reason>` code.
    public var refusalReason: APIRefusal.Code? {
        guard rawValue.hasPrefix("refused_") else { return nil }
        return APIRefusal.Code(rawValue: String(rawValue.dropFirst("refused_".count)))
    }
}

/// Why the gate refused a request. `message` is client-safe and shown as it is.
public struct APIRefusal: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A stable, machine-readable reason; the error code is `refused_<rawValue>`.
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Carries an approval refusal's code over unchanged (`wrong_digest`, `identity_not_allowed`, …).
        public init(_ code: ApprovalRefusal.Code) { self.rawValue = code.rawValue }

        // Approval refusals (ApprovalRefusal.Code), repeated here so callers of the API see one list.
        public static let wrongRun = Code(ApprovalRefusal.Code.wrongRun)
        public static let runNotAwaitingApproval = Code(ApprovalRefusal.Code.runNotAwaitingApproval)
        public static let wrongDigest = Code(ApprovalRefusal.Code.wrongDigest)
        public static let unknownIdentity = Code(ApprovalRefusal.Code.unknownIdentity)
        public static let identityNotAllowed = Code(ApprovalRefusal.Code.identityNotAllowed)
        public static let taggerSelfApproval = Code(ApprovalRefusal.Code.taggerSelfApproval)
        public static let signerSelfApproval = Code(ApprovalRefusal.Code.signerSelfApproval)
        public static let duplicateIdentity = Code(ApprovalRefusal.Code.duplicateIdentity)
        public static let expired = Code(ApprovalRefusal.Code.expired)
        public static let timeInFuture = Code(ApprovalRefusal.Code.timeInFuture)
        // Other requests.
        /// The run is not in a state the request applies to (reject after apply, resolve of a run that is not interrupted).
        public static let runStateInvalid = Code(rawValue: "run_state_invalid")
        /// The rollback version was never accepted for the environment.
        public static let rollbackVersionNotAccepted = Code(rawValue: "rollback_version_not_accepted")
        /// The target already has a run in progress.
        public static let targetBusy = Code(rawValue: "target_busy")
        /// This agent does not serve the environment.
        public static let environmentNotServed = Code(rawValue: "environment_not_served")
        /// The daemon is stopping and takes no new work.
        public static let shuttingDown = Code(rawValue: "shutting_down")

        /// Refusals about *who* is asking rather than the run's state: answered with 403
        /// (and reported as refused access), everything else with 409.
        public var isForbidden: Bool {
            self == .identityNotAllowed || self == .unknownIdentity || self == .taggerSelfApproval || self == .signerSelfApproval
        }
    }

    public let code: Code
    public let message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// Carries a core approval refusal over with its code and description.
    public init(_ refusal: ApprovalRefusal) {
        self.init(code: Code(refusal.code), message: refusal.description)
    }

    public var description: String { "\(code): \(message)" }
}
