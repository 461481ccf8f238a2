package awstest

import (
	"net/url"
	"slices"
)

// The settings of a group that keep its instances and their data, as
// CreateAutoScalingGroup and UpdateAutoScalingGroup take them and
// DescribeAutoScalingGroups answers them (API_AutoScalingGroup):
//
//   - DeletionProtection (API_CreateAutoScalingGroup: "When deletion
//     protection is enabled, users cannot delete the Auto Scaling group
//     according to the specified protection level"): none (the default),
//     prevent-force-deletion or prevent-all-deletion.
//   - InstanceLifecyclePolicy, its RetentionTriggers.TerminateHookAbandon
//     (API_RetentionTriggers: the action "when a termination lifecycle hook
//     is abandoned due to failure, timeout, or explicit abandonment"):
//     retain or terminate.
//
// The emulator stores and answers them; it deletes no group and retains no
// instance. Another value is a ValidationError, as AWS answers a value
// outside an enumeration.

const terminateHookAbandonKey = "InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon"

var (
	deletionProtections = []string{"none", "prevent-force-deletion", "prevent-all-deletion"}
	retentionActions    = []string{"retain", "terminate"}
)

// safeguards reads the settings above from a CreateAutoScalingGroup or
// UpdateAutoScalingGroup request into spec; what the request leaves out
// stays as it was.
func safeguards(form url.Values, spec *GroupSpec) error {
	dp, rt := spec.DeletionProtection, spec.TerminateHookAbandon
	if v, ok := form["DeletionProtection"]; ok {
		if !slices.Contains(deletionProtections, v[0]) {
			return validation("1 validation error detected: Value '%s' at 'deletionProtection' failed to satisfy constraint: Member must satisfy enum value set: %v", v[0], deletionProtections)
		}
		dp = v[0]
	}
	if v, ok := form[terminateHookAbandonKey]; ok {
		if !slices.Contains(retentionActions, v[0]) {
			return validation("1 validation error detected: Value '%s' at 'instanceLifecyclePolicy.retentionTriggers.terminateHookAbandon' failed to satisfy constraint: Member must satisfy enum value set: %v", v[0], retentionActions)
		}
		rt = v[0]
	}
	spec.DeletionProtection, spec.TerminateHookAbandon = dp, rt
	return nil
}

type xmlLifecyclePolicy struct {
	RetentionTriggers struct{ TerminateHookAbandon string }
}

// xmlSafeguards adds the settings above to a group's description.
func xmlSafeguards(x *xmlGroup, spec *GroupSpec) {
	x.DeletionProtection = spec.DeletionProtection
	if spec.TerminateHookAbandon != "" {
		x.InstanceLifecyclePolicy = &xmlLifecyclePolicy{}
		x.InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon = spec.TerminateHookAbandon
	}
}
