import APITestSupport
import Foundation
import LockstepCore
import LockstepHTTP
import Testing

@Suite("API JSON shapes are stable")
struct JSONShapeTests {
    /// Scripts and the CLI read these keys; renaming a Swift property must not change them.
    @Test("a run detail encodes with the documented snake_case keys (golden)")
    func runDetailGolden() throws {
        var detail = Fixture.prodRun
        detail.approvals = [APIApproval(identity: Fixture.alice, digest: Fixture.planDigest, time: Fixture.now)]
        detail.refusals = [APIApprovalRefusal(identity: Fixture.carol, code: .identityNotAllowed,
                                              message: "carol may not approve runs of this environment", time: Fixture.now)]
        detail.alerts = [APIAlert(code: .tagMoved, message: "tag prod/v1.1.0 moved", time: Fixture.now)]
        let text = String(decoding: try APIJSON.makeEncoder().encode(detail), as: UTF8.self)
        let d = Fixture.planDigest.rawValue
        let a = String(repeating: "a", count: 40)
        let e = String(repeating: "e", count: 40)
        let expected = """
        {"alerts":[{"code":"tag_moved","message":"tag prod/v1.1.0 moved","time":"2027-01-15T08:00:00Z"}],\
        "approvals":[{"digest":"\(d)","identity":"alice","time":"2027-01-15T08:00:00Z"}],\
        "checks":[{"name":"allowed_resource_types","passed":true}],\
        "commit":"\(a)","created_at":"2027-01-15T08:00:00Z","digest":"\(d)","environment":"prod","id":"run-prod-1",\
        "may_approve":["alice","bob"],\
        "plan_rendering":"  # null_resource.old will be destroyed\\n  - resource \\"null_resource\\" \\"old\\" {}\\n",\
        "plan_rendering_bytes":78,"plan_rendering_state":"ready","plan_rendering_truncated":false,\
        "project":"app",\
        "refusals":[{"code":"identity_not_allowed","identity":"carol","message":"carol may not approve runs of this environment","time":"2027-01-15T08:00:00Z"}],\
        "required_approvals":2,"rollback":false,"state":"awaiting_approval",\
        "summary":{"create":1,"delete":1,"destroyed_addresses":["null_resource.old"],"replace":0,"update":0},\
        "tag":"prod/v1.1.0",\
        "transitions":[{"actor":"lockstep","from":"checking","reason":"checks_passed","time":"2027-01-15T08:00:00Z","to":"awaiting_approval"}],\
        "tree":"\(e)","updated_at":"2027-01-15T08:00:00Z","version":"1.1.0"}
        """
        #expect(text == expected)
        #expect(try APIJSON.makeDecoder().decode(APIRunDetail.self, from: Data(text.utf8)) == detail)
    }

    @Test("targets and environments encode with the documented keys (golden)")
    func targetGolden() throws {
        let text = String(decoding: try APIJSON.makeEncoder().encode(Fixture.environments[1]), as: UTF8.self)
        let a = String(repeating: "a", count: 40)
        let expected = """
        {"approvers":["alice","bob"],"name":"prod","promote_from":"dev","required_approvals":2,"served":true,\
        "targets":[{"alerts":1,"desired":{"commit":"\(a)","tag":"prod/v1.1.0","version":"1.1.0"},"environment":"prod",\
        "pending":{"commit":"\(a)","run_id":"run-prod-1","state":"awaiting_approval","tag":"prod/v1.1.0","version":"1.1.0"},\
        "pin":{"ceiling":"1.2.0","version":"1.1.0"},"project":"app"}]}
        """
        #expect(text == expected)
    }

    @Test("error bodies are {\"error\":{\"code\",\"message\"}} and refusal codes read back")
    func errorBody() throws {
        let body = APIErrorBody(code: .refused(.wrongDigest), message: "m")
        let text = String(decoding: try APIJSON.makeEncoder().encode(body), as: UTF8.self)
        #expect(text == #"{"error":{"code":"refused_wrong_digest","message":"m"}}"#)
        #expect(body.error.code.refusalReason == .wrongDigest)
        #expect(APIErrorCode.unauthorized.refusalReason == nil)
    }
}
