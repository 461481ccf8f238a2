package awstest

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What the emulator models of moving instances between groups, from the
// Amazon EC2 Auto Scaling User Guide (ec2-auto-scaling-detach-attach-instances,
// ec2-auto-scaling-lifecycle, ec2-auto-scaling-instance-protection) and the
// API reference:
//
//   - DetachInstances takes up to 20 instances, each InService in the group
//     (else "The instance <id> is not in InService or Standby.", as AWS
//     answers). With ShouldDecrementDesiredCapacity the desired capacity
//     drops by their number, and the call fails if that goes below the
//     minimum size; without it the group launches replacements.
//   - Detaching is asynchronous: the call returns with the instances still in
//     the group, LifecycleState Detaching, while Auto Scaling deregisters them
//     from the group's target groups ("If there are target groups attached to
//     the Auto Scaling group, the instances are deregistered from the target
//     groups"; the deregistration delay of a target group is 300 s by
//     default). Only then are they Detached and out of the group. The
//     emulator keeps them Detaching for SetDetachDelays' durations on its
//     clock (300 s with target groups, 10 s without: never instantly).
//     Detached instances keep running, and lose their scale-in protection.
//   - AttachInstances takes up to 20 running instances in one of the group's
//     zones that are not a member of an Auto Scaling group ("The instance is
//     not a member of another Auto Scaling group", the guide's attach
//     considerations), so an instance still Detaching is refused, and whose
//     AMI still exists ("The AMI used to launch the instance must still
//     exist", images.go). The desired capacity rises by their number, and
//     the call fails if that passes the maximum size. An attached instance
//     takes the group's NewInstancesProtectedFromScaleIn, and is Pending for
//     attachDelay before it is InService (so SetInstanceProtection refuses
//     it meanwhile). It goes through none of the group's lifecycle hooks
//     (lifecycle-hooks, "Lifecycle hook availability", footnote 1: "Does not
//     apply when you attach or detach instances"): no launch hook holds it,
//     whatever its default result.
//   - CreateAutoScalingGroup takes a launch template by LaunchTemplateId or
//     by LaunchTemplateName, not both (LaunchTemplateSpecification:
//     "Conditional: You must specify either a LaunchTemplateId or a
//     LaunchTemplateName"; the CloudFormation reference of the same structure:
//     "The ID or the name of the launch template, but not both"). Taking the
//     strict side, a request naming both is a ValidationError.
//   - CreateOrUpdateTags and DeleteTags act on group tags; deleting a missing
//     key is not an error.

const (
	detaching = "Detaching"
	detached  = "Detached"
	pending   = "Pending"
)

// attachDelay is how long an attached instance stays Pending before it is
// InService. The user guide's lifecycle diagram (ec2-auto-scaling-lifecycle)
// takes an attached instance through Pending, like a launched one, and
// AttachInstances registers it with the group's target groups ("If there are
// target groups attached to your Auto Scaling group, the instances are also
// registered with the target groups") before it is InService. How long is
// not documented; 30 s on the emulator's clock, never at once.
const attachDelay = 30 * time.Second

// detachDelays are how long a detached instance stays Detaching in its group.
type detachDelays struct{ withTargetGroups, without time.Duration }

var defaultDetachDelays = detachDelays{withTargetGroups: 300 * time.Second, without: 10 * time.Second}

// SetDetachDelays sets how long detached instances stay Detaching: with
// target groups (the deregistration delay) and without. Zero or negative
// values are refused: AWS never detaches synchronously.
func (s *Server) SetDetachDelays(withTargetGroups, without time.Duration) {
	if withTargetGroups <= 0 || without <= 0 {
		panic("awstest: detach delays must be positive")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detach = detachDelays{withTargetGroups, without}
}

// DetachDelay is how long an instance detached from group stays Detaching.
func (s *Server) DetachDelay(group string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.detachDelay(s.groups[group])
}

func (s *Server) detachDelay(g *group) time.Duration {
	if g != nil && len(g.TargetGroupARNs) > 0 {
		return s.detach.withTargetGroups
	}
	return s.detach.without
}

// finishDetach takes a Detaching instance out of its group.
func (s *Server) finishDetach(g *group, i *Instance) {
	g.instances = slices.DeleteFunc(g.instances, func(x string) bool { return x == i.ID })
	i.Group, i.LifecycleState, i.detachedAt = "", detached, time.Time{}
}

// maxMoveIDs is the DetachInstances and AttachInstances limit.
const maxMoveIDs = 20

var autoScalingActions = map[string]func(*Server, url.Values, *result) error{
	"DetachInstances":    (*Server).detachInstances,
	"AttachInstances":    (*Server).attachInstances,
	"CreateOrUpdateTags": (*Server).createOrUpdateTags,
	"DeleteTags":         (*Server).deleteTags,
}

var ec2Actions = map[string]func(*Server, url.Values, xml.Name, string) (any, error){
	"DescribeSubnets": (*Server).describeSubnets,
}

// AddSubnet registers a subnet for VPCZoneIdentifier.
func (s *Server) AddSubnet(id, zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subnets == nil {
		s.subnets = map[string]string{}
	}
	s.subnets[id] = zone
}

// GroupView is a group's configuration as the emulator holds it.
type GroupView struct {
	Name                             string
	Zones, Subnets                   []string
	MinSize, MaxSize, Desired        int32
	LaunchTemplateID                 string
	OverrideTypes                    []string
	NewInstancesProtectedFromScaleIn bool
	Tags                             map[string]string
	// DeletionProtection and TerminateHookAbandon (safeguards.go), "" when unset.
	DeletionProtection, TerminateHookAbandon string
}

// Group returns a group's configuration.
func (s *Server) Group(name string) (GroupView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return GroupView{}, false
	}
	return GroupView{
		Name: g.Name, Zones: slices.Clone(g.Zones), Subnets: slices.Clone(g.Subnets),
		MinSize: g.MinSize, MaxSize: g.MaxSize, Desired: g.desired,
		LaunchTemplateID: g.LaunchTemplateID, OverrideTypes: slices.Clone(g.OverrideTypes),
		NewInstancesProtectedFromScaleIn: g.NewInstancesProtectedFromScaleIn, Tags: maps(g.Tags),
		DeletionProtection: g.DeletionProtection, TerminateHookAbandon: g.TerminateHookAbandon,
	}, true
}

// GroupNames returns the names of all groups, sorted.
func (s *Server) GroupNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groupNames()
}

// AllInstances returns copies of every instance the emulator ever launched,
// in launch order, detached and terminated ones included.
func (s *Server) AllInstances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	out := make([]Instance, 0, len(s.instances))
	for _, i := range s.instances {
		cp := *i
		cp.actions = nil
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Instance) int { return a.seq - b.seq })
	return out
}

// createOptions reads what CreateAutoScalingGroup takes beyond names, sizes
// and tags: the launch template (by id or name) or mixed instances policy,
// VPCZoneIdentifier, scale-in protection and lifecycle hooks.
func (s *Server) createOptions(form url.Values, g *group) error {
	lt := func(prefix string) (string, error) {
		id, name := form.Get(prefix+".LaunchTemplateId"), form.Get(prefix+".LaunchTemplateName")
		if id == "" && name == "" {
			return "", nil
		}
		if id != "" && name != "" {
			return "", validation("%s: specify either LaunchTemplateId or LaunchTemplateName, not both (got %s and %s)", prefix, id, name)
		}
		for _, t := range s.templates {
			if (id != "" && t.ID == id) || (id == "" && t.Name == name) {
				return t.ID, nil
			}
		}
		return "", validation("launch template %s%s not found", id, name)
	}
	var err error
	if g.LaunchTemplateID, err = lt("LaunchTemplate"); err != nil {
		return err
	}
	const mip = "MixedInstancesPolicy.LaunchTemplate"
	if id, err := lt(mip + ".LaunchTemplateSpecification"); err != nil {
		return err
	} else if id != "" {
		if g.LaunchTemplateID != "" {
			return validation("specify one of LaunchTemplate and MixedInstancesPolicy")
		}
		g.LaunchTemplateID = id
		for n := 1; ; n++ {
			t, ok := form[mip+".Overrides.member."+strconv.Itoa(n)+".InstanceType"]
			if !ok {
				break
			}
			g.OverrideTypes = append(g.OverrideTypes, t[0])
		}
	}
	if g.LaunchTemplateID == "" {
		return validation("valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter")
	}
	if v := form.Get("VPCZoneIdentifier"); v != "" {
		var zones []string
		for _, id := range strings.Split(v, ",") {
			z, ok := s.subnets[strings.TrimSpace(id)]
			if !ok {
				return validation("The subnet ID '%s' does not exist", id)
			}
			g.Subnets = append(g.Subnets, strings.TrimSpace(id))
			if !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
		if len(g.Zones) > 0 && !slices.Equal(sortedCopy(g.Zones), sortedCopy(zones)) {
			return validation("AvailabilityZones %v do not match the subnets' zones %v", g.Zones, zones)
		}
		g.Zones = zones
	}
	if err := safeguards(form, &g.GroupSpec); err != nil {
		return err
	}
	g.TargetGroupARNs = list(form, "TargetGroupARNs.member")
	if v := form.Get("NewInstancesProtectedFromScaleIn"); v != "" {
		g.NewInstancesProtectedFromScaleIn, _ = strconv.ParseBool(v)
	}
	for n := 1; ; n++ {
		p := "LifecycleHookSpecificationList.member." + strconv.Itoa(n)
		name, ok := form[p+".LifecycleHookName"]
		if !ok {
			break
		}
		h := Hook{Name: name[0], Transition: form.Get(p + ".LifecycleTransition"), DefaultResult: form.Get(p + ".DefaultResult")}
		if h.Transition != transitionTerm && h.Transition != "autoscaling:EC2_INSTANCE_LAUNCHING" {
			return validation("invalid LifecycleTransition %q", h.Transition)
		}
		if err := setHookTimeouts(&h, form, p+".HeartbeatTimeout"); err != nil {
			return err
		}
		if err := setHookTarget(&h, form, p+".", nil); err != nil {
			return err
		}
		g.hooks = append(g.hooks, h)
	}
	return nil
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func moveIDs(form url.Values) ([]string, error) {
	ids := list(form, "InstanceIds.member")
	if len(ids) == 0 || len(ids) > maxMoveIDs {
		return nil, validation("between 1 and %d instance ids per call", maxMoveIDs)
	}
	return ids, nil
}

func (s *Server) detachInstances(form url.Values, _ *result) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	ids, err := moveIDs(form)
	if err != nil {
		return err
	}
	decrement, err := strconv.ParseBool(form.Get("ShouldDecrementDesiredCapacity"))
	if err != nil {
		return validation("ShouldDecrementDesiredCapacity is required")
	}
	for _, id := range ids {
		i := s.instances[id]
		if i == nil || !slices.Contains(g.instances, id) {
			return validation("The instance %s is not part of Auto Scaling group %s.", id, g.Name)
		}
		if i.LifecycleState != InService {
			return validation("The instance %s is not in InService or Standby.", id)
		}
	}
	if decrement {
		if g.desired-int32(len(ids)) < g.MinSize {
			return validation("Detaching %d instances would bring the group below its minimum size %d; decrement the minimum size first.", len(ids), g.MinSize)
		}
		g.desired -= int32(len(ids))
	}
	done := s.clock.Now().Add(s.detachDelay(g))
	for _, id := range ids {
		i := s.instances[id]
		i.LifecycleState, i.ProtectedFromScaleIn, i.detachedAt = detaching, false, done
		s.activity(g, "Detaching EC2 instance: "+id, "an instance was detached in response to a user request")
	}
	if !decrement {
		s.converge(g)
	}
	return nil
}

func (s *Server) attachInstances(form url.Values, _ *result) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	ids, err := moveIDs(form)
	if err != nil {
		return err
	}
	for _, id := range ids {
		i := s.instances[id]
		switch {
		case i == nil || i.EC2State != "running":
			return validation("Instance %s is not in a valid state (must be running).", id)
		case i.Group != "":
			return validation("The instance %s is already part of Auto Scaling group %s.", id, i.Group)
		case !slices.Contains(g.Zones, i.Zone):
			return validation("The instance %s is in zone %s, which is not one of the group's zones %v.", id, i.Zone, g.Zones)
		case s.imageGone(i.ImageID): // images.go
			return validation("Instance %s: the AMI %s used to launch it no longer exists.", id, i.ImageID)
		}
	}
	if g.desired+int32(len(ids)) > g.MaxSize {
		return validation("New SetDesiredCapacity value %d is above max value %d for the AutoScalingGroup.", g.desired+int32(len(ids)), g.MaxSize)
	}
	g.desired += int32(len(ids))
	for _, id := range ids {
		i := s.instances[id]
		// Pending first, as a launched instance (see attachDelay).
		i.Group, i.LifecycleState, i.ProtectedFromScaleIn = g.Name, pending, g.NewInstancesProtectedFromScaleIn
		i.inServiceAt = s.clock.Now().Add(attachDelay)
		g.instances = append(g.instances, id)
		s.activity(g, "Attaching an existing EC2 instance: "+id, "an instance was attached in response to a user request")
	}
	return nil
}

// tagGroups returns the groups of Tags.member.N.ResourceId and the key and value of each.
func (s *Server) tagGroups(form url.Values) ([]*group, []xmlTag, error) {
	var gs []*group
	var ts []xmlTag
	for n := 1; ; n++ {
		p := "Tags.member." + strconv.Itoa(n)
		key, ok := form[p+".Key"]
		if !ok {
			break
		}
		if rt := form.Get(p + ".ResourceType"); rt != "auto-scaling-group" {
			return nil, nil, validation("ResourceType must be auto-scaling-group, got %q", rt)
		}
		g := s.groups[form.Get(p+".ResourceId")]
		if g == nil {
			return nil, nil, validation("AutoScalingGroup name not found - no such group: %s", form.Get(p+".ResourceId"))
		}
		if len(key[0]) > 128 || len(form.Get(p+".Value")) > 256 {
			return nil, nil, validation("tag keys are at most 128 characters and values at most 256")
		}
		if strings.HasPrefix(key[0], "aws:") {
			return nil, nil, validation("tag keys starting with aws: are reserved")
		}
		gs = append(gs, g)
		ts = append(ts, xmlTag{Key: key[0], Value: form.Get(p + ".Value")})
	}
	if len(gs) == 0 {
		return nil, nil, validation("Tags is required")
	}
	if len(gs) > maxTagsPerCall {
		return nil, nil, validation("%d tags in one call; at most %d tags can be added or removed using a single call", len(gs), maxTagsPerCall)
	}
	return gs, ts, nil
}

// Tag limits, user guide "Tag Auto Scaling groups and instances"
// (ec2-auto-scaling-tagging), tag naming and usage restrictions: "The
// maximum number of tags per resource is 50." and "The maximum number of
// tags that you can add or remove using a single call is 25." A write over
// the first fails whole with LimitExceeded (API_CreateOrUpdateTags: "You
// have already reached a limit for your Amazon EC2 Auto Scaling resources").
const (
	maxTagsPerGroup = 50
	maxTagsPerCall  = 25
)

func (s *Server) createOrUpdateTags(form url.Values, _ *result) error {
	gs, ts, err := s.tagGroups(form)
	if err != nil {
		return err
	}
	added := map[*group]map[string]bool{}
	for i, g := range gs {
		if _, ok := g.Tags[ts[i].Key]; !ok {
			if added[g] == nil {
				added[g] = map[string]bool{}
			}
			added[g][ts[i].Key] = true
		}
	}
	for g, keys := range added {
		if n := len(g.Tags) + len(keys); n > maxTagsPerGroup {
			return &apiError{status: 400, code: "LimitExceeded", msg: fmt.Sprintf("the group %s would have %d tags; the maximum number of tags per resource is %d", g.Name, n, maxTagsPerGroup), senderFault: true}
		}
	}
	for i, g := range gs {
		g.Tags[ts[i].Key] = ts[i].Value
	}
	return nil
}

func (s *Server) deleteTags(form url.Values, _ *result) error {
	gs, ts, err := s.tagGroups(form)
	if err != nil {
		return err
	}
	for i, g := range gs {
		delete(g.Tags, ts[i].Key)
	}
	return nil
}

type describeSubnetsResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Subnets   []struct {
		SubnetID         string `xml:"subnetId"`
		AvailabilityZone string `xml:"availabilityZone"`
	} `xml:"subnetSet>item"`
}

func (s *Server) describeSubnets(form url.Values, root xml.Name, reqID string) (any, error) {
	out := &describeSubnetsResponse{XMLName: root, Xmlns: EC2Namespace, RequestID: reqID}
	ids := list(form, "SubnetId")
	if len(ids) == 0 {
		for id := range s.subnets {
			ids = append(ids, id)
		}
		slices.Sort(ids)
	}
	for _, id := range ids {
		z, ok := s.subnets[id]
		if !ok {
			return nil, &apiError{status: 400, code: "InvalidSubnetID.NotFound", msg: "The subnet ID '" + id + "' does not exist", senderFault: true}
		}
		out.Subnets = append(out.Subnets, struct {
			SubnetID         string `xml:"subnetId"`
			AvailabilityZone string `xml:"availabilityZone"`
		}{id, z})
	}
	return out, nil
}
