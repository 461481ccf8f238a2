package awstest

import (
	"net/url"
	"slices"
	"strings"
)

// DescribeAutoScalingInstances, as the API reference documents it
// (API_DescribeAutoScalingInstances): "Gets information about the Auto
// Scaling instances in the account and Region", whichever group holds them.
// InstanceIds: "If you omit this property, all Auto Scaling instances are
// described. If you specify an ID that does not exist, it is ignored with no
// error. Array Members: Maximum number of 50 items." MaxRecords: "The default
// value is 50 and the maximum value is 50."
const maxAutoScalingInstanceIDs = 50

type xmlAutoScalingInstance struct {
	InstanceID           string `xml:"InstanceId"`
	AutoScalingGroupName string
	InstanceType         string
	AvailabilityZone     string
	LifecycleState       string
	HealthStatus         string
	ProtectedFromScaleIn bool
}

func init() {
	autoScalingActions["DescribeAutoScalingInstances"] = (*Server).describeAutoScalingInstances
}

func (s *Server) describeAutoScalingInstances(form url.Values, res *result) error {
	max, err := intParam(form, "MaxRecords", maxAutoScalingInstanceIDs)
	if err != nil {
		return err
	}
	if max < 1 || max > maxAutoScalingInstanceIDs {
		return validation("MaxRecords must be between 1 and %d", maxAutoScalingInstanceIDs)
	}
	ids := list(form, "InstanceIds.member")
	if len(ids) > maxAutoScalingInstanceIDs {
		return validation("1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to %d", maxAutoScalingInstanceIDs)
	}
	var out []xmlAutoScalingInstance
	for _, name := range s.groupNames() {
		g := s.groups[name]
		for _, id := range g.instances {
			i := s.instances[id]
			if i == nil || (len(ids) > 0 && !slices.Contains(ids, id)) {
				continue
			}
			out = append(out, xmlAutoScalingInstance{InstanceID: i.ID, AutoScalingGroupName: g.Name, InstanceType: i.InstanceType,
				AvailabilityZone: i.Zone, LifecycleState: i.LifecycleState, HealthStatus: "Healthy", ProtectedFromScaleIn: i.ProtectedFromScaleIn})
		}
	}
	slices.SortFunc(out, func(a, b xmlAutoScalingInstance) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	out, res.NextToken, err = page(out, form.Get("NextToken"), max)
	if err != nil {
		return err
	}
	res.AutoScalingInstances = &out
	return nil
}
