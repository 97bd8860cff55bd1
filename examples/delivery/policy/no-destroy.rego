# Example policy file, read by external checks (e.g. conftest) against the plan JSON:
# a plan that destroys a resource without replacing it is refused.
package lockstep.no_destroy

import rego.v1

deny contains msg if {
    some change in input.resource_changes
    change.change.actions == ["delete"]
    msg := sprintf("%s would be destroyed", [change.address])
}
