import Foundation
import LockstepCore
import Yams

/// The trust part of the agent config: identities and each environment's policy
/// (docs/CONTRACT.md §2), every error recorded with its key path and line.
extension AgentParser {
    // MARK: identities

    func identitiesMap(_ node: Node, _ at: KeyPath) -> [String: Identity]? {
        guard let f = reader.mapping(node, at, "a mapping of identity names to `token_sha256` and `emails`") else { return nil }
        var out: [String: Identity] = [:]
        var tokenOwner: [String: String] = [:]
        var emailOwner: [String: String] = [:]
        var ok = true
        for (name, value) in f.entries() {
            let here = at.key(name)
            guard isSimpleName(name, extra: ["-", "_", "."]) else {
                reader.fail(here, .invalidValue, "an identity name of lowercase letters, digits, `-`, `_`, `.` (at most 63 bytes)", value)
                ok = false
                continue
            }
            guard let g = reader.mapping(value, here, "a mapping with `token_sha256` and `emails`") else { ok = false; continue }
            var token: String?
            if let tnode = require(g, "token_sha256", here, "the SHA-256 of the identity's API token (64 lowercase hex digits)"),
               let text = reader.string(tnode, here.key("token_sha256"), "64 lowercase hex digits") {
                if text.utf8.count == 64, text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) {
                    token = text
                    if let other = tokenOwner[text] {
                        // Two identities with one token: an approval could not be attributed.
                        reader.fail(here.key("token_sha256"), .conflict, "a token hash not shared with identity `\(other)`", tnode)
                        token = nil
                    } else {
                        tokenOwner[text] = name
                    }
                } else {
                    reader.fail(here.key("token_sha256"), .invalidValue, "64 lowercase hex digits (the SHA-256 of the token, not the token; the value is not shown)", tnode)
                }
            }
            var emails: [String] = []
            if let enode = g.take("emails"), let list = reader.stringList(enode, here.key("emails"), "git e-mail addresses") {
                for (i, email) in list.enumerated() {
                    let lower = email.lowercased()
                    let parts = lower.split(separator: "@", omittingEmptySubsequences: false)
                    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !lower.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" }) else {
                        reader.fail(here.key("emails").index(i), .invalidValue, "an e-mail address `name@domain`", enode)
                        continue
                    }
                    if let other = emailOwner[lower], other != name {
                        // The tagger must map to exactly one identity, or the self-approval rule could be dodged.
                        reader.fail(here.key("emails").index(i), .conflict, "an e-mail not also listed for identity `\(other)`", enode)
                        continue
                    }
                    emailOwner[lower] = name
                    if !emails.contains(lower) { emails.append(lower) }
                }
            }
            g.finish(known: "token_sha256, emails", classify: classifyLiteralSecret(reader))
            if let token, let identity = reader.name(IdentityName.self, name, here, value) {
                out[name] = Identity(name: identity, tokenSHA256: token, emails: emails)
            } else {
                ok = false
            }
        }
        f.finish(known: "identity names")
        return ok ? out : nil
    }

    // MARK: environments

    func environmentsMap(_ node: Node, _ at: KeyPath, identities: [String: Identity]?) -> [String: EnvironmentPolicy]? {
        guard let f = reader.mapping(node, at, "a mapping of environment names to their policy") else { return nil }
        let entries = f.entries()
        if entries.isEmpty {
            reader.fail(at, .invalidValue, "at least one environment", node)
            return nil
        }
        let names = Set(entries.map(\.key))
        var out: [String: EnvironmentPolicy] = [:]
        var ok = true
        for (name, value) in entries {
            let here = at.key(name)
            guard isSimpleName(name) else {
                reader.fail(here, .invalidValue, "an environment name of lowercase letters, digits, `-`, `_` (at most 63 bytes)", value)
                ok = false
                continue
            }
            if let policy = environment(name, value, here, names: names, identities: identities) { out[name] = policy } else { ok = false }
        }
        // promote_from must not loop: a cycle would make every environment in it wait for
        // another forever, or (worse) let a later check treat the loop as satisfied.
        for name in out.keys.sorted() {
            var seen: [String] = [name]
            var current = out[name]?.promoteFrom?.rawValue
            while let next = current {
                if next == name {
                    reader.fail(at.key(name).key("promote_from"), .cycle, "a promotion order without cycles (\((seen + [name]).joined(separator: " ← ")))")
                    ok = false
                    break
                }
                if seen.contains(next) { break }
                seen.append(next)
                current = out[next]?.promoteFrom?.rawValue
            }
        }
        // A folder two environments may write (or one inside a folder of another's) is state
        // one environment's code can read and rewrite for the other: each names its own.
        let sorted = out.keys.sorted()
        for (i, first) in sorted.enumerated() {
            for second in sorted[(i + 1)...] {
                for (a, pathA) in (out[first]?.writablePaths ?? []).enumerated() {
                    for (b, pathB) in (out[second]?.writablePaths ?? []).enumerated() where pathsOverlap(pathA, pathB) {
                        let keyA = at.key(first).key("writable_paths").index(a)
                        let keyB = at.key(second).key("writable_paths").index(b)
                        reader.fail(keyB, .conflict, "a folder neither equal to, inside nor holding `\(keyA.rendered)` (each environment writes only folders of its own, or one could read and rewrite the other's state)")
                        ok = false
                    }
                }
            }
        }
        return ok ? out : nil
    }

    func environment(_ name: String, _ node: Node, _ at: KeyPath, names: Set<String>, identities: [String: Identity]?) -> EnvironmentPolicy? {
        guard let f = reader.mapping(node, at, "a mapping with the environment's policy (`serves`, `approvals`, `approvers`, …)") else { return nil }
        let before = reader.errors.count
        let serves = f.take("serves").map { reader.bool($0, at.key("serves")) } ?? false
        var promoteFrom: String?
        if let pnode = f.take("promote_from"), let source = reader.string(pnode, at.key("promote_from"), "the name of another environment") {
            if source == name {
                reader.fail(at.key("promote_from"), .cycle, "another environment than `\(name)` itself", pnode)
            } else if !names.contains(source) {
                reader.fail(at.key("promote_from"), .unknownReference, "the name of an environment defined under `environments` (one of: \(names.sorted().joined(separator: ", ")))", pnode)
            } else {
                promoteFrom = source
            }
        }
        let approvalsNode = f.take("approvals")
        let approvals = approvalsNode.map { reader.int($0, at.key("approvals"), 1...20, "an integer between 1 and 20") } ?? 1
        var approvers: [String]?
        if let anode = require(f, "approvers", at, "a list of identity names allowed to approve"),
           let list = reader.stringList(anode, at.key("approvers"), "identity names") {
            var seen: Set<String> = []
            var valid = true
            for (i, approver) in list.enumerated() {
                if !seen.insert(approver).inserted {
                    reader.fail(at.key("approvers").index(i), .duplicateKey, "each approver listed once", anode)
                    valid = false
                } else if let identities, identities[approver] == nil {
                    reader.fail(at.key("approvers").index(i), .unknownReference, "the name of an identity defined under `identities`", anode)
                    valid = false
                }
            }
            if list.isEmpty {
                reader.fail(at.key("approvers"), .invalidValue, "at least one approver", anode)
                valid = false
            }
            approvers = valid ? list : nil
        }
        if let approvals, let approvers, approvals > approvers.count {
            // Otherwise no run could ever be approved; better said now than at the first release.
            reader.fail(at.key("approvals"), .conflict, "at most as many approvals as listed approvers (\(approvers.count))", approvalsNode)
        }
        let tagger = f.take("tagger_may_approve").map { reader.bool($0, at.key("tagger_may_approve")) } ?? false
        let ttl = f.take("approval_ttl").map { duration($0, at.key("approval_ttl"), 60...(90 * 86_400), "between 1m and 90d") } ?? .seconds(86_400)
        let signedNode = f.take("require_signed_tags")
        let signed = signedNode.map { reader.bool($0, at.key("require_signed_tags")) } ?? false
        // Who may sign release tags: SSH keys (allowed_signers, optionally a revocation list) and/or
        // OpenPGP keys (a keyring file). docs/CONTRACT.md §3 rule 3.
        var trustNodes: [(key: String, node: Node)] = []
        func trustFile(_ key: String, _ what: String) -> String? {
            guard let node = f.take(key) else { return nil }
            trustNodes.append((key, node))
            return path(node, at.key(key), what)
        }
        let signers = trustFile("allowed_signers_file", "a path to an SSH allowed_signers file")
        let revoked = trustFile("revoked_signers_file", "a path to an SSH revocation list (KRL or public keys)")
        let keyring = trustFile("openpgp_keyring_file", "a path to a file of OpenPGP public keys (armoured or binary)")
        let signerNode = f.take("signer_may_approve")
        let signerMayApprove = signerNode.map { reader.bool($0, at.key("signer_may_approve")) } ?? false
        if signed == true && !trustNodes.contains(where: { $0.key != "revoked_signers_file" }) {
            reader.fail(at.key("allowed_signers_file"), .missingKey,
                        "an `allowed_signers_file` or an `openpgp_keyring_file` when `require_signed_tags: true`", signedNode)
        }
        if signed == true, revoked != nil, !trustNodes.contains(where: { $0.key == "allowed_signers_file" }) {
            reader.fail(at.key("revoked_signers_file"), .conflict, "`allowed_signers_file` alongside `revoked_signers_file` (it revokes SSH keys)",
                        trustNodes.first { $0.key == "revoked_signers_file" }?.node)
        }
        if signed != true {
            // A signers file that is never consulted looks like protection and is not.
            for (key, node) in trustNodes {
                reader.fail(at.key(key), .conflict, "`require_signed_tags: true` alongside `\(key)` (it is otherwise ignored)", node)
            }
            if let signerNode {
                reader.fail(at.key("signer_may_approve"), .conflict, "`require_signed_tags: true` alongside `signer_may_approve`", signerNode)
            }
        }
        let windows = f.take("apply_windows").map { applyWindows($0, at.key("apply_windows")) } ?? []
        let planNode = f.take("plan_credentials_file")
        let plan = planNode.flatMap { path($0, at.key("plan_credentials_file"), "a path to the plan credentials env-file") }
        let apply = f.take("apply_credentials_file").flatMap { path($0, at.key("apply_credentials_file"), "a path to the apply credentials env-file") }
        if let plan, let apply, plan == apply {
            // docs/THREAT-MODEL.md §1.2: plan-time code (external data sources, provider code) must never see
            // the credentials that can change the environment.
            reader.fail(at.key("plan_credentials_file"), .conflict, "a different file from `apply_credentials_file` (plan must never see apply credentials)", planNode)
        }
        let protected = f.take("protected_resource_types").flatMap { resourceTypes($0, at.key("protected_resource_types"), allowEmpty: true) } ?? []
        var allowed: [String]?
        if let allowedNode = f.take("allowed_resource_types") {
            allowed = resourceTypes(allowedNode, at.key("allowed_resource_types"), allowEmpty: false)
        }
        let writable = f.take("writable_paths").map {
            reader.list($0, at.key("writable_paths"), "a list of folders this environment's terraform may write") { item, itemAt in
                path(item, itemAt, "a folder this environment's terraform may write")
            }
        } ?? []
        let notifications = f.take("notifications").map { self.notifications($0, at.key("notifications")) } ?? []
        let backendNode = f.take("backend")
        let backend = backendNode.flatMap { backendPin($0, at.key("backend")) }
        let freezes = f.take("freezes").map { self.freezes($0, at.key("freezes")) } ?? []
        let breakGlassNode = f.take("break_glass")
        let breakGlass = breakGlassNode.flatMap { self.breakGlass($0, at.key("break_glass"), identities: identities) }
        let checks = f.take("checks").map { externalChecks($0, at.key("checks")) } ?? []
        let driftNode = f.take("drift")
        let drift = driftNode.flatMap { driftInterval($0, at.key("drift")) }
        f.finish(known: "serves, promote_from, approvals, approvers, tagger_may_approve, approval_ttl, require_signed_tags, allowed_signers_file, revoked_signers_file, openpgp_keyring_file, signer_may_approve, apply_windows, freezes, break_glass, drift, plan_credentials_file, apply_credentials_file, protected_resource_types, allowed_resource_types, writable_paths, notifications, backend, checks", classify: classifyLiteralSecret(reader))

        let environmentName = reader.name(EnvironmentName.self, name, at, node)
        let source = promoteFrom.flatMap { reader.name(EnvironmentName.self, $0, at.key("promote_from"), node) }
        let approverNames = approvers?.enumerated().compactMap { i, approver in
            reader.name(IdentityName.self, approver, at.key("approvers").index(i), node)
        }
        if backendNode != nil && backend == nil { return nil }
        if breakGlassNode != nil && breakGlass == nil { return nil }
        if driftNode != nil && drift == nil { return nil }
        guard reader.errors.count == before, let freezes, let checks, let environmentName, let serves, let approvals, let approverNames, let tagger, let ttl,
              let signed, let signerMayApprove, let windows, let writable, let notifications else { return nil }
        var policy = EnvironmentPolicy(
            name: environmentName, serves: serves, promoteFrom: source, approvals: approvals, approvers: approverNames,
            taggerMayApprove: tagger, approvalTTL: ttl, requireSignedTags: signed, allowedSignersFile: signers,
            applyWindows: windows, planCredentialsFile: plan, applyCredentialsFile: apply,
            protectedResourceTypes: protected, allowedResourceTypes: allowed, writablePaths: writable)
        policy.notifications = notifications
        policy.revokedSignersFile = revoked
        policy.openPGPKeyringFile = keyring
        policy.signerMayApprove = signerMayApprove
        policy.backendPin = backend
        policy.freezes = freezes
        policy.breakGlass = breakGlass
        policy.checks = checks
        policy.driftInterval = drift
        return policy
    }

    /// `backend: {type: s3, settings: {bucket: …, key: "{project}/prod.tfstate"}, workspace: default}`.
    /// Settings that hold credentials are refused: a pin names where the state is, never how
    /// to reach it (credentials come from the credentials files).
    func backendPin(_ node: Node, _ at: KeyPath) -> BackendPin? {
        let what = "a mapping with `type`, `settings` and optionally `workspace` and `unpinned`"
        guard let f = reader.mapping(node, at, what) else { return nil }
        let before = reader.errors.count
        let nameWhat = "a terraform backend or setting name (letters, digits, `_`)"
        func isName(_ text: String) -> Bool {
            !text.isEmpty && text.utf8.count <= 64 && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
        }
        var type: String?
        if let tnode = require(f, "type", at, "the backend type, such as `s3` or `local`"),
           let text = reader.string(tnode, at.key("type"), nameWhat) {
            if isName(text) { type = text } else { reader.fail(at.key("type"), .invalidValue, nameWhat, tnode) }
        }
        var settings: [String: String] = [:]
        if let snode = require(f, "settings", at, "the settings that identify the state, such as `bucket` and `key`"),
           let fields = reader.mapping(snode, at.key("settings"), "a mapping of backend setting names to values") {
            for (key, value) in fields.entries() {
                let keyAt = at.key("settings").key(key)
                guard isName(key) else { reader.fail(keyAt, .invalidValue, nameWhat, value); continue }
                if BackendPin.isCredentialSetting(key) {
                    reader.fail(keyAt, .literalSecret, "settings that say where the state is (bucket, key, path, …); credentials belong in the credentials files", value)
                    continue
                }
                if let text = reader.string(value, keyAt, "the setting's value as terraform resolves it") { settings[key] = text }
            }
            if settings.isEmpty && fields.keys.isEmpty {
                reader.fail(at.key("settings"), .invalidValue, "at least one setting that identifies the state", snode)
            }
        }
        var workspace = "default"
        if let wnode = f.take("workspace"), let text = reader.string(wnode, at.key("workspace"), "a workspace name") {
            if !text.isEmpty && text.utf8.count <= 90 && text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }) {
                workspace = text
            } else {
                reader.fail(at.key("workspace"), .invalidValue, "a workspace name (letters, digits, `_`, `-`, `.`)", wnode)
            }
        }
        var unpinned: Set<String> = []
        if let unode = f.take("unpinned"), let names = reader.stringList(unode, at.key("unpinned"), "a list of setting names") {
            for (i, name) in names.enumerated() {
                if !isName(name) {
                    reader.fail(at.key("unpinned").index(i), .invalidValue, nameWhat, unode)
                } else if settings[name] != nil {
                    reader.fail(at.key("unpinned").index(i), .conflict, "a setting not also pinned under `settings`", unode)
                } else {
                    unpinned.insert(name)
                }
            }
        }
        f.finish(known: "type, settings, workspace, unpinned")
        guard reader.errors.count == before, let type else { return nil }
        return BackendPin(type: type, settings: settings, workspace: workspace, unpinned: unpinned)
    }

    func resourceTypes(_ node: Node, _ at: KeyPath, allowEmpty: Bool) -> [String]? {
        let what = "resource type names such as `aws_s3_bucket` (lowercase letters, digits, `_`)"
        guard let list = reader.stringList(node, at, what) else { return nil }
        if list.isEmpty && !allowEmpty {
            reader.fail(at, .invalidValue, "at least one resource type (omit the key to allow every type)", node)
            return nil
        }
        var ok = true
        for (i, type) in list.enumerated() where !(isSimpleName(type, extra: ["_"]) && type.first?.isLetter == true) {
            reader.fail(at.index(i), .invalidValue, what, node)
            ok = false
        }
        return ok ? list : nil
    }

    func applyWindows(_ node: Node, _ at: KeyPath) -> [ApplyWindow]? {
        reader.list(node, at, "a list of windows `{days: [mon-fri], from: \"09:00\", to: \"17:00\", timezone: UTC}`", applyWindow)
    }

    func applyWindow(_ node: Node, _ at: KeyPath) -> ApplyWindow? {
        guard let f = reader.mapping(node, at, "a mapping with `days`, `from`, `to`, `timezone`") else { return nil }
        let dayWhat = "days `mon`…`sun` or ranges such as `mon-fri`"
        var days: Set<Weekday>?
        if let dnode = require(f, "days", at, "a list of \(dayWhat)"), let list = reader.stringList(dnode, at.key("days"), dayWhat) {
            var set: Set<Weekday> = []
            var valid = !list.isEmpty
            for (i, entry) in list.enumerated() {
                let parts = entry.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
                if parts.count == 1, let d = Weekday(name: parts[0]) {
                    set.insert(d)
                } else if parts.count == 2, let a = Weekday(name: parts[0]), let b = Weekday(name: parts[1]), a <= b {
                    for n in a.isoNumber...b.isoNumber { if let d = Weekday(isoNumber: n) { set.insert(d) } }
                } else {
                    reader.fail(at.key("days").index(i), .invalidValue, dayWhat, dnode)
                    valid = false
                }
            }
            if list.isEmpty { reader.fail(at.key("days"), .invalidValue, "at least one day", dnode) }
            days = valid ? set : nil
        }
        let timeWhat = "a quoted time \"HH:MM\" (00:00 to 24:00)"
        let from = require(f, "from", at, timeWhat).flatMap { n in reader.string(n, at.key("from"), timeWhat).flatMap { t in TimeOfDay(text: t) ?? { reader.fail(at.key("from"), .invalidValue, timeWhat, n); return nil }() } }
        let to = require(f, "to", at, timeWhat).flatMap { n in reader.string(n, at.key("to"), timeWhat).flatMap { t in TimeOfDay(text: t) ?? { reader.fail(at.key("to"), .invalidValue, timeWhat, n); return nil }() } }
        if let from, let to, from >= to {
            reader.fail(at.key("to"), .invalidValue, "a time after `from` (a window ends on the day it starts; use two windows to span midnight)", node)
        }
        var zone = "UTC"
        if let znode = f.take("timezone") {
            if let text = reader.string(znode, at.key("timezone"), "an IANA time zone such as `UTC` or `Europe/Paris`") {
                if TimeZone(identifier: text) != nil, text.utf8.count <= 64 { zone = text } else {
                    reader.fail(at.key("timezone"), .invalidValue, "an IANA time zone such as `UTC` or `Europe/Paris`", znode)
                }
            }
        }
        f.finish(known: "days, from, to, timezone")
        guard let days, let from, let to, from < to else { return nil }
        return ApplyWindow(days: days, from: from, to: to, timeZone: zone)
    }
}
