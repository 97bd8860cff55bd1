import Foundation
import GitSource
import LockstepConfig
import LockstepCore
import LockstepGate
import RunStore
import TerraformRunner

/// One link of a run's chain from merged commit to verified apply (docs/CONTRACT.md §5,
/// `lockstep provenance`), checked against the delivery repository, the store and its audit log.
struct ProvenanceLink: Sendable, Encodable, Equatable {
    /// `audit_log`, `run_created`, `commit`, `tag`, `signer`, `plan`, `state`, `approvals`, `apply`, `verify`.
    var name: String
    var ok: Bool
    var detail: String
}

/// The whole chain of one run. Every link is checked; the first broken one is the verdict.
struct ProvenanceReport: Sendable, Encodable {
    var run: String
    var target: String
    var version: String
    var links: [ProvenanceLink]
    var auditHead: String?

    var firstBroken: ProvenanceLink? { links.first { !$0.ok } }

    enum CodingKeys: String, CodingKey {
        case run, target, version, links, verified
        case auditHead = "audit_head"
        case firstBroken = "first_broken"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(run, forKey: .run)
        try container.encode(target, forKey: .target)
        try container.encode(version, forKey: .version)
        try container.encode(links, forKey: .links)
        try container.encode(firstBroken == nil, forKey: .verified)
        try container.encode(firstBroken?.name, forKey: .firstBroken)
        try container.encode(auditHead, forKey: .auditHead)
    }
}

/// What the provenance check reads: the store's entries and run, and the repository.
struct ProvenanceInputs: Sendable {
    var run: StoredRun
    var approvals: [Approval]
    var entries: [AuditEntry]
    var expectedHead: AuditHash?
    var branch: String
    /// Where the daemon kept the run's folders (`runs/` next to the store).
    var runsDirectory: URL
    /// The environment's policy, when the agent config was given (signatures are then re-verified).
    var policy: EnvironmentPolicy?
    var otherPolicies: [EnvironmentPolicy]
}

enum Provenance {
    static func check(_ inputs: ProvenanceInputs, mirror: GitMirror, scratch: URL) async -> ProvenanceReport {
        let run = inputs.run
        var links: [ProvenanceLink] = []
        func link(_ name: String, _ ok: Bool, _ detail: String) { links.append(ProvenanceLink(name: name, ok: ok, detail: detail)) }

        // The audit log itself: every other link is checked against it.
        var head: AuditHash?
        switch AuditChain.verify(inputs.entries, expectedHead: inputs.expectedHead) {
        case let .intact(count, last):
            head = last
            link("audit_log", true, "hash chain intact: \(count) entries, head \(last.hex)"
                 + (inputs.expectedHead == nil ? " (pass --expect-head to compare it with a head kept elsewhere)" : ", as expected"))
        case let .broken(found):
            link("audit_log", false, "hash chain broken at sequence \(found.sequence.map(String.init) ?? "none"): \(found.description)")
        }
        let mine = inputs.entries.filter { $0.runID == run.id }
        let transitions = mine.filter { $0.kind == .transition }

        // run_created: what the run says it is, as the log recorded it at creation.
        if let created = mine.first(where: { $0.kind == .runCreated }) {
            var wrong: [String] = []
            let expected = ["tag": run.run.tagName, "tag_object": run.run.tagObject.rawValue, "commit": run.run.commit.rawValue,
                            "tree": run.run.tree.rawValue, "version": run.run.version.description]
            for (key, value) in expected.sorted(by: { $0.key < $1.key }) where created.payload[key] != value { wrong.append(key) }
            if created.payload["signer_key"] != run.run.signer?.key || created.payload["signer"] != run.run.signer?.principal {
                wrong.append("signer")
            }
            link("run_created", wrong.isEmpty, wrong.isEmpty
                 ? "audit entry \(created.sequence): tag \(shown(run.run.tagName)) object \(run.run.tagObject.short), commit \(run.run.commit.short), tree \(run.run.tree.short)"
                 : "the stored run differs from its audit entry \(created.sequence) in: \(wrong.joined(separator: ", "))")
        } else {
            link("run_created", false, "no run_created audit entry for run \(run.id)")
        }

        // The commit: a pull request's merge on the protected branch's first-parent chain.
        do {
            let reachable = try await mirror.isReachable(run.run.commit, fromBranch: inputs.branch)
            let merge = reachable ? try await mirror.isMergeOnFirstParentChain(run.run.commit, branch: inputs.branch) : false
            link("commit", reachable && merge, reachable && merge
                 ? "\(run.run.commit.short) is a merge commit on \(shown(inputs.branch))'s first-parent chain"
                 : reachable ? "\(run.run.commit.short) is reachable from \(shown(inputs.branch)) but is not a merge on its first-parent chain"
                 : "\(run.run.commit.short) is not reachable from \(shown(inputs.branch))")
        } catch {
            link("commit", false, "the commit could not be read: \(error.description)")
        }

        // The tag object the run was made from, by id (whatever its ref says now).
        var raw: RawTagObject?
        do {
            let object = try await mirror.rawTag(id: run.run.tagObject, name: run.run.tagName)
            raw = object
            let text = String(decoding: object.payload, as: UTF8.self)
            let names = text.split(separator: "\n").first { $0.hasPrefix("object ") }.map { String($0.dropFirst(7)) }
            let tagger = text.split(separator: "\n").first { $0.hasPrefix("tagger ") }.map { String($0.dropFirst(7)) } ?? "none"
            link("tag", names == run.run.commit.rawValue, names == run.run.commit.rawValue
                 ? "tag object \(run.run.tagObject.short) (\(shown(run.run.tagName))) names \(run.run.commit.short); tagger \(shown(tagger))"
                 : "tag object \(run.run.tagObject.short) names \(shown(names ?? "nothing")), not the run's commit")
        } catch let error where error.code == .notAnnotated {
            link("tag", run.run.signer == nil, "\(shown(run.run.tagName)) was a lightweight tag: there is no tag object to check")
        } catch {
            link("tag", false, "tag object \(run.run.tagObject.short) could not be read: \(error.description)")
        }

        // The signer: re-verified with the environment's signer files when the agent config is given.
        if let policy = inputs.policy, policy.requireSignedTags {
            if let raw, let recorded = run.run.signer {
                do throws(GateError) {
                    guard let trust = try SignerTrust.load(policy) else { throw GateError(.configuration, "no signer files") }
                    let others = inputs.otherPolicies.compactMap { try? SignerTrust.load($0) }
                    let verdict = await TagSignatureVerifier(scratch: scratch).verify(raw, trust: trust, others: others)
                    switch verdict {
                    case .verified(let signer) where signer == recorded:
                        link("signer", true, "signature verified again: \(shown(signer.description))")
                    case .verified(let signer):
                        link("signer", false, "verified as \(shown(signer.description)), but the run recorded \(shown(recorded.description))")
                    case .rejected(let rejection):
                        link("signer", false, "the signature does not verify now: \(rejection.description)")
                    }
                } catch {
                    link("signer", false, "the signer files cannot be read: \(error.description)")
                }
            } else {
                link("signer", false, "the environment requires signed tags but the run recorded no verified signer")
            }
        } else if let recorded = run.run.signer {
            link("signer", true, "recorded signer \(shown(recorded.description)) (pass --config to verify the signature again)")
        }

        // The plan: its digest in the audit entry that stored it, recomputed when the sealed file is kept.
        let planned = transitions.first { $0.payload["reason"] == TransitionReason.Code.planSucceeded.rawValue }
        if let digest = run.planDigest {
            if let planned, planned.payload["digest"] == digest.rawValue {
                let sealed = inputs.runsDirectory.appendingPathComponent(run.id.rawValue).appendingPathComponent("sealed/plan.tfplan")
                if let bytes = FileManager.default.contents(atPath: sealed.path) {
                    let recomputed = Digest.sha256(of: bytes)
                    let prior = try? PlanArchive.priorState(of: bytes)
                    let matches = recomputed == digest && (run.plan?.priorState == nil || prior == run.plan?.priorState)
                    link("plan", matches, matches ? "digest \(digest.rawValue), recomputed from the kept plan file"
                         : "the kept plan file hashes to \(recomputed.rawValue) (state \(prior.map(\.description) ?? "unreadable")), not the approved \(digest.rawValue)")
                } else {
                    link("plan", true, "digest \(digest.rawValue) in audit entry \(planned.sequence) (the plan file is not kept after apply)")
                }
            } else {
                link("plan", false, "no audit entry stores the plan with digest \(digest.rawValue)")
            }
            // The state it was bound to.
            let recorded = planned.flatMap { entry in
                entry.payload["state_serial"].flatMap(UInt64.init).map { StateBinding(lineage: entry.payload["state_lineage"] ?? "", serial: $0) }
            }
            switch (run.plan?.priorState, recorded) {
            case let (stored?, logged?) where stored == logged:
                link("state", true, "planned against \(stored), checked again before apply")
            case (nil, nil):
                link("state", true, "planned before Lockstep recorded the prior state: terraform's own stale-plan check only")
            default:
                link("state", false, "the stored prior state (\(run.plan?.priorState?.description ?? "none")) differs from the audit log's (\(recorded?.description ?? "none"))")
            }
        } else {
            link("plan", run.state == .noChanges || !run.state.isFinal,
                 run.state == .noChanges ? "the plan had no changes: nothing to approve or apply" : "no plan was stored (run is \(run.state.rawValue))")
        }

        // Approvals: each quoted this plan's digest and has its own audit entry.
        if let digest = run.planDigest {
            let logged = mine.filter { $0.kind == .approval }
            var problems: [String] = []
            var lines: [String] = []
            for approval in inputs.approvals {
                if approval.digest != digest { problems.append("\(approval.identity) quoted \(approval.digest.rawValue)") }
                if !logged.contains(where: { $0.payload["identity"] == approval.identity.rawValue && $0.payload["digest"] == approval.digest.rawValue }) {
                    problems.append("\(approval.identity)'s approval has no audit entry")
                }
                lines.append("\(approval.identity) at \(AuditExportLine.timestamp(Int64(approval.time.timeIntervalSince1970 * 1000)))")
            }
            if let policy = inputs.policy, inputs.approvals.count < policy.approvals, transitions.contains(where: { $0.payload["to"] == "applying" }) {
                problems.append("\(inputs.approvals.count) approvals, the environment needs \(policy.approvals)")
            }
            let approvedEntry = transitions.first { $0.payload["to"] == RunState.approved.rawValue }
            if approvedEntry == nil && transitions.contains(where: { $0.payload["to"] == RunState.applying.rawValue }) {
                problems.append("applying without an approved transition")
            }
            link("approvals", problems.isEmpty, problems.isEmpty
                 ? (lines.isEmpty ? "none" : lines.joined(separator: ", ") + ", each quoting \(digest.rawValue.prefix(16))…")
                 : problems.joined(separator: "; "))
        }

        // Apply and verify, in the order the log recorded them.
        if let applying = transitions.first(where: { $0.payload["to"] == RunState.applying.rawValue }) {
            let after = transitions.filter { $0.sequence > applying.sequence }
            let result = after.first { ["applied", "failed", "interrupted"].contains($0.payload["to"] ?? "") }
            let approvedBefore = transitions.contains { $0.payload["to"] == RunState.approved.rawValue && $0.sequence < applying.sequence }
            let ok = approvedBefore && result?.payload["to"] == RunState.applied.rawValue
            link("apply", ok, "applying at audit entry \(applying.sequence), then \(result.map { "\($0.payload["to"] ?? "?") at \($0.sequence)" } ?? "no result")"
                 + (approvedBefore ? "" : "; no approved transition before it"))
            let verifiedEntry = after.first { $0.payload["to"] == RunState.verified.rawValue }
                ?? after.first { $0.payload["to"] == RunState.failed.rawValue && $0.payload["from"] == RunState.verifying.rawValue }
            if let verified = verifiedEntry {
                link("verify", verified.payload["to"] == RunState.verified.rawValue,
                     "\(verified.payload["to"] ?? "?") at audit entry \(verified.sequence)"
                     + (verified.payload["detail"].map { ": \(shown($0))" } ?? ""))
            } else if run.state == .verified {
                link("verify", false, "the run is verified but no audit entry says so")
            }
        } else if run.state == .applied || run.state == .verified || run.state == .verifying {
            link("apply", false, "the run is \(run.state.rawValue) but no audit entry shows it entering applying")
        }
        return ProvenanceReport(run: run.id.rawValue, target: run.target.description, version: run.run.version.description,
                                links: links, auditHead: head?.hex)
    }

    private static func shown(_ text: String) -> String { "\"\(displaySafe(text, limit: 200))\"" }
}

extension Provenance {
    /// The run as an in-toto Statement v1 with a SLSA Provenance v1 predicate: the subject is the
    /// plan that was applied (its digest), the dependency the tagged commit, the parameters the
    /// environment, tag and the state the plan was bound to, the audit head a byproduct. Unsigned:
    /// sign it with the tool your attestation store expects.
    static func statement(_ inputs: ProvenanceInputs, report: ProvenanceReport, repo: String) -> [String: Any] {
        let run = inputs.run
        let mine = inputs.entries.filter { $0.runID == run.id && $0.kind == .transition }
        func time(_ state: RunState) -> String? {
            mine.first { $0.payload["to"] == state.rawValue }.map { AuditExportLine.timestamp($0.epochMilliseconds) }
        }
        var internalParameters: [String: Any] = [
            "approvals": inputs.approvals.map {
                ["identity": $0.identity.rawValue, "digest": $0.digest.rawValue,
                 "time": AuditExportLine.timestamp(Int64($0.time.timeIntervalSince1970 * 1000))]
            },
        ]
        if let prior = run.plan?.priorState {
            internalParameters["prior_state"] = ["lineage": prior.lineage, "serial": prior.serial]
        }
        if let signer = run.run.signer {
            internalParameters["signer"] = ["format": signer.format, "principal": signer.principal, "key": signer.key]
        }
        var metadata: [String: Any] = ["invocationId": run.id.rawValue]
        metadata["startedOn"] = time(.applying)
        metadata["finishedOn"] = time(.verified) ?? time(.applied)
        return [
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [["name": "terraform-plan/\(run.target.project)/\(run.target.environment)/\(run.id)",
                         "digest": ["sha256": run.planDigest?.rawValue ?? ""]]],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": [
                "buildDefinition": [
                    "buildType": "urn:lockstep:apply:v1",
                    "externalParameters": ["project": run.target.project.rawValue, "environment": run.target.environment.rawValue,
                                           "tag": run.run.tagName, "version": run.run.version.description],
                    "internalParameters": internalParameters,
                    "resolvedDependencies": [["uri": "git+\(repo)@refs/tags/\(run.run.tagName)",
                                              "digest": ["gitCommit": run.run.commit.rawValue, "gitTag": run.run.tagObject.rawValue,
                                                         "gitTree": run.run.tree.rawValue]]],
                ] as [String: Any],
                "runDetails": [
                    "builder": ["id": "urn:lockstep:agent"],
                    "metadata": metadata,
                    "byproducts": [["name": "audit-head", "digest": ["sha256": report.auditHead ?? ""]]],
                ] as [String: Any],
            ] as [String: Any],
        ]
    }
}
