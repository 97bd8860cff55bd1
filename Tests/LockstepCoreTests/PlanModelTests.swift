import Foundation
import LockstepCore
import Testing

/// A `show -json` body with the given resource changes (values included, to show they are skipped).
private func planJSON(_ changes: [(address: String, type: String, actions: [String], mode: String)],
                      outputs: [String: [String]] = [:]) -> Data {
    let resources = changes.map { change in
        let list = change.actions.map { "\"\($0)\"" }.joined(separator: ",")
        return "{\"address\":\"\(change.address)\",\"mode\":\"\(change.mode)\",\"type\":\"\(change.type)\","
            + "\"change\":{\"actions\":[\(list)],\"after\":{\"password\":\"value-never-read\"}}}"
    }.joined(separator: ",")
    let outputList = outputs.map { name, actions in
        "\"\(name)\":{\"actions\":[\(actions.map { "\"\($0)\"" }.joined(separator: ","))]}"
    }.joined(separator: ",")
    return Data("{\"format_version\":\"1.2\",\"terraform_version\":\"1.0.3\",\"resource_changes\":[\(resources)],\"output_changes\":{\(outputList)}}".utf8)
}

private func managed(_ address: String, _ actions: [String]) -> (address: String, type: String, actions: [String], mode: String) {
    (address, String(address.split(separator: ".")[0]), actions, "managed")
}

private func rules(allowed: Set<String>? = nil, protected: Set<String> = [], approvals: Int = 1, approvers: Int = 2) -> PlanCheckRules {
    PlanCheckRules(allowedResourceTypes: allowed, protectedResourceTypes: protected, approvals: approvals, approverCount: approvers)
}

@Suite("The typed plan model")
struct PlanModelTests {
    @Test("each action kind is counted; deleted and replaced managed addresses are listed; data reads are not destroys")
    func summary() throws {
        let plan = try PlanModel(planJSON: planJSON([
            managed("a.one", ["create"]), managed("b.two", ["update"]), managed("c.three", ["delete"]),
            managed("d.four", ["delete", "create"]), managed("e.five", ["create", "delete"]), managed("f.six", ["no-op"]),
            ("data.g.seven", "g", ["read"], "data"),
        ], outputs: ["o": ["update"], "p": ["no-op"]]))
        #expect(plan.formatVersion == "1.2")
        #expect(plan.terraformVersion == "1.0.3")
        #expect(PlanModel.Action.allCases.map(plan.count) == [1, 1, 1, 2, 1, 1])
        #expect(plan.deletedAddresses == ["c.three"])
        #expect(plan.replacedAddresses == ["d.four", "e.five"])
        #expect(plan.resourceTypes == ["a", "b", "c", "d", "e", "g"])
        #expect(plan.outputChanges == [.init(name: "o", action: .update)])
        #expect(plan.hasChanges)
    }

    @Test("the stored form round-trips and carries the counts a summary-only reader needs")
    func storedForm() throws {
        let plan = try PlanModel(planJSON: planJSON([managed("a.one", ["create"]), managed("c.three", ["delete"])]))
        let stored = try JSONEncoder().encode(plan)
        #expect(try JSONDecoder().decode(PlanModel.self, from: stored) == plan)
        let counts = try #require(try JSONSerialization.jsonObject(with: stored) as? [String: Any])
        #expect(counts["create"] as? Int == 1)
        #expect(counts["delete"] as? Int == 1)
        #expect(counts["deletedAddresses"] as? [String] == ["c.three"])
        #expect(!String(decoding: stored, as: UTF8.self).contains("value-never-read"))
    }

    @Test("a plan stored before the model existed (counts only) is read from its stored plan JSON")
    func legacyStoredPlan() throws {
        let legacy = Data("{\"formatVersion\":\"0.2\",\"create\":1,\"update\":0,\"delete\":0,\"replace\":0}".utf8)
        let json = planJSON([managed("aws_iam_user.x", ["create"])])
        let plan = try PlanModel.stored(modelJSON: legacy, planJSON: json)
        #expect(plan.resourceChanges.map(\.address) == ["aws_iam_user.x"])
        #expect(throws: CoreError.self) { try PlanModel.stored(modelJSON: legacy, planJSON: Data("{}x".utf8)) }
    }

    @Test("bytes that are not terraform's plan JSON are refused with a code")
    func unreadable() {
        for body in ["not json", "[]", "{\"resource_changes\":[{\"mode\":\"managed\"}]}"] {
            #expect(throws: CoreError.self) { try PlanModel(planJSON: Data(body.utf8)) }
        }
    }
}

@Suite("The built-in plan checks")
struct PlanChecksTests {
    @Test("an allow-list fails a plan that changes another managed type, whatever the action")
    func allowList() throws {
        for actions in [["create"], ["update"], ["delete"], ["delete", "create"], ["create", "update"]] {
            let plan = try PlanModel(planJSON: planJSON([managed("bucket.a", ["create"]), managed("iam_user.x", actions)]))
            let checks = PlanChecks.evaluate(plan, rules: rules(allowed: ["bucket"]))
            #expect(!checks.passed, "\(actions)")
            #expect(checks.failures == ["resource type iam_user is not in this environment's allowed_resource_types"])
        }
    }

    @Test("no-ops and data reads of other types pass an allow-list")
    func allowListIgnoresReadsAndNoOps() throws {
        let plan = try PlanModel(planJSON: planJSON([
            managed("bucket.a", ["update"]), managed("iam_user.x", ["no-op"]), ("data.iam_policy.p", "iam_policy", ["read"], "data"),
        ]))
        #expect(PlanChecks.evaluate(plan, rules: rules(allowed: ["bucket"])).passed)
    }

    @Test("destroying a protected type needs one more approval; replacing counts as destroying")
    func protectedDestroys() throws {
        let plan = try PlanModel(planJSON: planJSON([
            managed("db.main", ["delete"]), managed("db.replica", ["delete", "create"]), managed("db.new", ["create"]),
            managed("bucket.b", ["delete"]),
        ]))
        let checks = PlanChecks.evaluate(plan, rules: rules(protected: ["db"], approvals: 1, approvers: 2))
        #expect(checks.passed)
        #expect(checks.needsExtraApproval)
        #expect(checks.protectedDestroys == ["db.main", "db.replica"])
    }

    @Test("an unrecognised action list containing a delete still counts as a protected destroy")
    func unknownActionsFailClosed() throws {
        let plan = try PlanModel(planJSON: planJSON([managed("db.main", ["delete", "forget"])]))
        #expect(PlanChecks.evaluate(plan, rules: rules(protected: ["db"])).protectedDestroys == ["db.main"])
    }

    @Test("a protected destroy that could never get its extra approval fails the checks")
    func extraApprovalImpossible() throws {
        let plan = try PlanModel(planJSON: planJSON([managed("db.main", ["delete"])]))
        let checks = PlanChecks.evaluate(plan, rules: rules(protected: ["db"], approvals: 2, approvers: 2))
        #expect(!checks.passed)
        #expect(checks.failures.first?.contains("needs 3 approvals, but only 2 approvers are configured") == true)
    }

    @Test("a hostile type name is shown escaped, never raw")
    func hostileTypeName() {
        let plan = PlanModel(formatVersion: "1.2", terraformVersion: nil, resourceChanges: [
            .init(address: "x", managed: true, type: "evil\u{1b}[31m\ntype", action: .create),
        ], outputChanges: [])
        let failure = PlanChecks.evaluate(plan, rules: rules(allowed: ["bucket"])).failures.joined()
        #expect(!failure.contains("\u{1b}") && !failure.contains("\n"))
    }
}
