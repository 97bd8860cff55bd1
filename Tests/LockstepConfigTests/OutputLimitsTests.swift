import NameLiterals
import Foundation
import Testing
@testable import LockstepConfig

@Suite("Agent config: limits: (what is kept of plan text, plan JSON and command output)")
struct OutputLimitsTests {
    @Test("without a limits: section the defaults apply: 4 MiB of text, 64 MiB of JSON, 1 MiB of output per command")
    func defaults() throws {
        let config = try AgentConfig.parse(yaml: agentYAML(), file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(config.limits == OutputLimits())
        #expect(config.limits.planTextBytes == 4 << 20)
        #expect(config.limits.planJSONBytes == 64 << 20)
        #expect(config.limits.commandOutputBytes == 1 << 20)
    }

    @Test("sizes are read as bytes or with KiB, MiB, GiB")
    func sizes() throws {
        let yaml = agentYAML(extra: """
            limits:
              plan_text_bytes: 512KiB
              plan_json_bytes: 1 GiB
              command_output_bytes: 65536

            """)
        let config = try AgentConfig.parse(yaml: yaml, file: "agent.yaml", baseDirectory: "/etc/lockstep")
        #expect(config.limits == OutputLimits(planTextBytes: 512 << 10, planJSONBytes: 1 << 30, commandOutputBytes: 65_536))
    }

    @Test("a limit below 64 KiB, above 1 GiB, not a size, or an unknown key is refused with an error naming the key, and nothing is loaded",
          arguments: [
              ("plan_text_bytes: 1000", "limits.plan_text_bytes"),
              ("plan_json_bytes: 2GiB", "limits.plan_json_bytes"),
              ("command_output_bytes: 63KiB", "limits.command_output_bytes"),
              ("plan_text_bytes: lots", "limits.plan_text_bytes"),
              ("plan_text_bytes: -4MiB", "limits.plan_text_bytes"),
              ("plan_json_bytes: 99999999999999999999GiB", "limits.plan_json_bytes"),
              ("plan_json_bytes: [1]", "limits.plan_json_bytes"),
              ("plan_text_byte: 4MiB", "limits.plan_text_byte"),
          ])
    func refused(_ line: String, _ keyPath: String) {
        let errors = agentErrors(agentYAML(extra: "limits:\n  \(line)\n"))
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.keyPath == keyPath, "\(errors)")
        if line.hasPrefix("plan_") || line.hasPrefix("command_") {
            #expect(errors.first?.description.contains("between 64KiB and 1GiB") == true || keyPath.hasSuffix("byte"),
                    "\(errors.first?.description ?? "")")
        }
    }

    @Test("limits: that is not a mapping is refused naming `limits`")
    func notAMapping() {
        let errors = agentErrors(agentYAML(extra: "limits: 4MiB\n"))
        #expect(errors.map(\.keyPath) == ["limits"])
    }
}
