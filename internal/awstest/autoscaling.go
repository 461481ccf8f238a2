package awstest

import (
	"encoding/xml"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

type xmlGroup struct {
	AutoScalingGroupName             string
	AutoScalingGroupARN              string
	LaunchTemplate                   *xmlLaunchTemplate `xml:",omitempty"`
	MixedInstancesPolicy             *xmlMixed          `xml:",omitempty"`
	MinSize                          int32
	MaxSize                          int32
	DesiredCapacity                  int32
	DefaultCooldown                  int32
	AvailabilityZones                []string `xml:"AvailabilityZones>member"`
	HealthCheckType                  string
	CreatedTime                      string
	Instances                        []xmlGroupInstance `xml:"Instances>member"`
	SuspendedProcesses               []xmlSuspended     `xml:"SuspendedProcesses>member"`
	Tags                             []xmlTag           `xml:"Tags>member"`
	NewInstancesProtectedFromScaleIn bool
	VPCZoneIdentifier                string              `xml:",omitempty"`
	TargetGroupARNs                  []string            `xml:"TargetGroupARNs>member"`
	DeletionProtection               string              `xml:",omitempty"` // safeguards.go
	InstanceLifecyclePolicy          *xmlLifecyclePolicy `xml:",omitempty"`
}

type xmlLaunchTemplate struct {
	LaunchTemplateID   string `xml:"LaunchTemplateId,omitempty"`
	LaunchTemplateName string `xml:",omitempty"`
	Version            string `xml:",omitempty"`
}

type xmlMixed struct {
	LaunchTemplate struct {
		LaunchTemplateSpecification *xmlLaunchTemplate `xml:",omitempty"`
		Overrides                   []struct {
			InstanceType string
		} `xml:"Overrides>member"`
	}
}

type xmlGroupInstance struct {
	InstanceID           string `xml:"InstanceId"`
	InstanceType         string
	AvailabilityZone     string
	LifecycleState       string
	HealthStatus         string
	ProtectedFromScaleIn bool
}

type xmlSuspended struct{ ProcessName, SuspensionReason string }

type xmlTag struct {
	ResourceID        string `xml:"ResourceId"`
	ResourceType      string
	Key, Value        string
	PropagateAtLaunch bool
}

type xmlHook struct {
	LifecycleHookName    string
	AutoScalingGroupName string
	LifecycleTransition  string
	HeartbeatTimeout     int32
	GlobalTimeout        int32
	DefaultResult        string
	// API_LifecycleHook: "NotificationTargetARN ... RoleARN ...
	// NotificationMetadata", each answered when the hook has it.
	NotificationTargetARN string `xml:",omitempty"`
	RoleARN               string `xml:",omitempty"`
	NotificationMetadata  string `xml:",omitempty"`
}

type xmlActivity struct {
	ActivityID           string `xml:"ActivityId"`
	AutoScalingGroupName string
	Description, Cause   string
	StartTime            string
	StatusCode           string
	Progress             int32
}

// result is the <Action>Result element of a response.
type result struct {
	XMLName           xml.Name
	AutoScalingGroups *[]xmlGroup    `xml:"AutoScalingGroups>member,omitempty"`
	LifecycleHooks    *[]xmlHook     `xml:"LifecycleHooks>member,omitempty"`
	Activities        *[]xmlActivity `xml:"Activities>member,omitempty"`
	Activity          *xmlActivity   `xml:",omitempty"` // TerminateInstanceInAutoScalingGroup (desired.go)
	// AutoScalingInstances answers DescribeAutoScalingInstances (instances.go).
	AutoScalingInstances *[]xmlAutoScalingInstance `xml:"AutoScalingInstances>member,omitempty"`
	NextToken            string                    `xml:",omitempty"`
}

func (s *Server) autoScaling(action string, form url.Values) (any, error) {
	res := &result{XMLName: xml.Name{Local: action + "Result"}}
	var err error
	switch action {
	case "DescribeAutoScalingGroups":
		err = s.describeGroups(form, res)
	case "CreateAutoScalingGroup":
		err = s.createGroup(form)
	case "UpdateAutoScalingGroup":
		err = s.updateGroup(form)
	case "SuspendProcesses", "ResumeProcesses":
		err = s.processes(action, form)
	case "SetInstanceProtection":
		err = s.setProtection(form)
	case "PutLifecycleHook":
		err = s.putHook(form)
	case "DescribeLifecycleHooks":
		err = s.describeHooks(form, res)
	case "RecordLifecycleActionHeartbeat", "CompleteLifecycleAction":
		err = s.lifecycleAction(action, form)
	case "TerminateInstanceInAutoScalingGroup":
		if err = s.terminateInGroup(form); err == nil {
			res.Activity = s.terminationActivity(form.Get("InstanceId"))
		}
	case "DescribeScalingActivities":
		err = s.describeActivities(form, res)
	default:
		if h := autoScalingActions[action]; h != nil { // registered by other files of the package
			err = h(s, form, res)
			break
		}
		err = &apiError{status: 400, code: "InvalidAction", msg: "the emulator does not implement " + action, senderFault: true}
	}
	return res, err
}

func (s *Server) group(form url.Values) (*group, error) {
	name := form.Get("AutoScalingGroupName")
	g := s.groups[name]
	if g == nil {
		return nil, validation("AutoScalingGroup name not found - no such group: %s", name)
	}
	return g, nil
}

// matches applies DescribeAutoScalingGroups filters: ANDed between filters, ORed within values.
func matches(g *group, form url.Values) bool {
	for n := 1; ; n++ {
		p := "Filters.member." + strconv.Itoa(n)
		name, ok := form[p+".Name"]
		if !ok {
			return true
		}
		values := list(form, p+".Values.member")
		hit := false
		for _, v := range values {
			switch {
			case name[0] == "tag-key":
				_, hit = g.Tags[v]
			case name[0] == "tag-value":
				for _, tv := range g.Tags {
					hit = hit || tv == v
				}
			case strings.HasPrefix(name[0], "tag:"):
				tv, ok := g.Tags[strings.TrimPrefix(name[0], "tag:")]
				hit = ok && tv == v
			}
			if hit {
				break
			}
		}
		if !hit {
			return false
		}
	}
}

func (s *Server) describeGroups(form url.Values, res *result) error {
	max, err := intParam(form, "MaxRecords", maxRecordsDefault)
	if err != nil {
		return err
	}
	if max < 1 || max > maxRecordsLimit {
		return validation("MaxRecords must be between 1 and %d", maxRecordsLimit)
	}
	names := list(form, "AutoScalingGroupNames.member")
	var gs []*group
	for _, n := range s.groupNames() {
		g := s.groups[n]
		if (len(names) == 0 || slices.Contains(names, n)) && matches(g, form) {
			gs = append(gs, g)
		}
	}
	gs, res.NextToken, err = page(gs, form.Get("NextToken"), max)
	if err != nil {
		return err
	}
	out := make([]xmlGroup, 0, len(gs))
	for _, g := range gs {
		out = append(out, s.xmlGroup(g))
	}
	res.AutoScalingGroups = &out
	return nil
}

func (s *Server) xmlGroup(g *group) xmlGroup {
	x := xmlGroup{
		AutoScalingGroupName: g.Name, AutoScalingGroupARN: "arn:aws:autoscaling:emulated:000000000000:autoScalingGroup:" + g.Name,
		MinSize: g.MinSize, MaxSize: g.MaxSize, DesiredCapacity: g.desired, DefaultCooldown: 300,
		AvailabilityZones: g.Zones, HealthCheckType: "EC2", CreatedTime: g.created.UTC().Format(time.RFC3339),
		NewInstancesProtectedFromScaleIn: g.NewInstancesProtectedFromScaleIn, VPCZoneIdentifier: strings.Join(g.Subnets, ","),
		TargetGroupARNs: g.TargetGroupARNs,
	}
	xmlSafeguards(&x, &g.GroupSpec)
	lt := &xmlLaunchTemplate{Version: "$Default"}
	if t, ok := s.templates[g.LaunchTemplateID]; ok {
		lt.LaunchTemplateID, lt.LaunchTemplateName = t.ID, t.Name
	} else {
		lt.LaunchTemplateID, lt.LaunchTemplateName = "lt-"+g.Name, g.Name
	}
	if len(g.OverrideTypes) > 0 {
		x.MixedInstancesPolicy = &xmlMixed{}
		x.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification = lt
		for _, t := range g.OverrideTypes {
			x.MixedInstancesPolicy.LaunchTemplate.Overrides = append(x.MixedInstancesPolicy.LaunchTemplate.Overrides, struct{ InstanceType string }{t})
		}
	} else {
		x.LaunchTemplate = lt
	}
	for _, id := range g.instances {
		i := s.instances[id]
		x.Instances = append(x.Instances, xmlGroupInstance{
			InstanceID: i.ID, InstanceType: i.InstanceType, AvailabilityZone: i.Zone, LifecycleState: i.LifecycleState,
			HealthStatus: "Healthy", ProtectedFromScaleIn: i.ProtectedFromScaleIn,
		})
	}
	for _, p := range g.suspended {
		x.SuspendedProcesses = append(x.SuspendedProcesses, xmlSuspended{ProcessName: p, SuspensionReason: "User suspended at " + g.created.UTC().Format(time.RFC3339)})
	}
	keys := make([]string, 0, len(g.Tags))
	for k := range g.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		x.Tags = append(x.Tags, xmlTag{ResourceID: g.Name, ResourceType: "auto-scaling-group", Key: k, Value: g.Tags[k], PropagateAtLaunch: true})
	}
	return x
}

func sizes(form url.Values, g *group) error {
	for key, dst := range map[string]*int32{"MinSize": &g.MinSize, "MaxSize": &g.MaxSize, "DesiredCapacity": &g.desired} {
		if form.Get(key) == "" {
			continue
		}
		n, err := intParam(form, key, 0)
		if err != nil {
			return err
		}
		*dst = int32(n)
	}
	if g.MinSize > g.MaxSize {
		return validation("min size %d must not be above max size %d", g.MinSize, g.MaxSize)
	}
	if form.Get("DesiredCapacity") == "" {
		// API_UpdateAutoScalingGroup: "If you specify a new value for
		// MinSize without specifying a value for DesiredCapacity, and the
		// new MinSize is larger than the current size of the group, this
		// sets the group's DesiredCapacity to the new MinSize value. If you
		// specify a new value for MaxSize without specifying a value for
		// DesiredCapacity, and the new MaxSize is smaller than the current
		// size of the group, there's an implicit call to SetDesiredCapacity
		// to set the size of the group to the new value of MaxSize."
		// (CreateAutoScalingGroup starts at MinSize: desired is -1 there.)
		g.desired = min(max(g.desired, g.MinSize), g.MaxSize)
	}
	if g.desired < g.MinSize || g.desired > g.MaxSize {
		return validation("desired capacity %d must be between min %d and max %d", g.desired, g.MinSize, g.MaxSize)
	}
	return nil
}

func (s *Server) createGroup(form url.Values) error {
	name := form.Get("AutoScalingGroupName")
	if name == "" {
		return validation("AutoScalingGroupName is required")
	}
	// API_CreateAutoScalingGroup, AutoScalingGroupName: "Maximum length of 255."
	if len(name) > 255 {
		return validation("1 validation error detected: Value at 'autoScalingGroupName' failed to satisfy constraint: Member must have length less than or equal to 255")
	}
	if s.groups[name] != nil {
		return &apiError{status: 400, code: "AlreadyExists", msg: "AutoScalingGroup by this name already exists", senderFault: true}
	}
	g := &group{GroupSpec: GroupSpec{Name: name, Zones: list(form, "AvailabilityZones.member"), Tags: map[string]string{},
		LaunchTemplateID: form.Get("LaunchTemplate.LaunchTemplateId")}, created: s.clock.Now()}
	if err := s.createOptions(form, g); err != nil { // split.go
		return err
	}
	if len(g.Zones) == 0 {
		return validation("at least one Availability Zone is required")
	}
	for n := 1; ; n++ {
		k, ok := form["Tags.member."+strconv.Itoa(n)+".Key"]
		if !ok {
			break
		}
		g.Tags[k[0]] = form.Get("Tags.member." + strconv.Itoa(n) + ".Value")
	}
	g.desired = -1 // DesiredCapacity defaults to MinSize (sizes)
	if err := sizes(form, g); err != nil {
		return err
	}
	s.groups[name] = g
	s.converge(g)
	return nil
}

func (s *Server) updateGroup(form url.Values) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	next := *g
	if err := sizes(form, &next); err != nil {
		return err
	}
	if err := safeguards(form, &next.GroupSpec); err != nil {
		return err
	}
	g.MinSize, g.MaxSize, g.desired = next.MinSize, next.MaxSize, next.desired
	g.DeletionProtection, g.TerminateHookAbandon = next.DeletionProtection, next.TerminateHookAbandon
	if zones := list(form, "AvailabilityZones.member"); len(zones) > 0 {
		g.Zones = zones
	}
	s.converge(g)
	return nil
}

// converge launches or scales in until the group holds its desired capacity.
// Scale-in takes the most crowded zone and skips protected instances; when all
// are protected the group stays above desired, as AWS reports it.
func (s *Server) converge(g *group) {
	for {
		byZone := s.inService(g)
		n := 0
		for _, is := range byZone {
			n += len(is)
		}
		for _, id := range g.instances { // attached, not yet InService: counted in the capacity (split.go)
			if s.instances[id].LifecycleState == pending {
				n++
			}
		}
		switch {
		case int32(n) < g.desired && !slices.Contains(g.suspended, "Launch"):
			least := s.leastCrowded(g, byZone)
			if least == "" {
				return // every zone is short of capacity
			}
			s.launch(g, least, "an instance was started in response to a difference between desired and actual capacity")
		case int32(n) > g.desired && !slices.Contains(g.suspended, "Terminate"):
			var victim *Instance
			for _, z := range g.Zones {
				for _, i := range byZone[z] {
					if !i.ProtectedFromScaleIn && (victim == nil || len(byZone[z]) > len(byZone[victim.Zone])) {
						victim = i
					}
				}
			}
			if victim == nil {
				return
			}
			s.terminate(g, victim, "an instance was taken out of service in response to a difference between desired and actual capacity")
		default:
			return
		}
	}
}

var knownProcesses = []string{"Launch", "Terminate", "AddToLoadBalancer", "AlarmNotification", "AZRebalance", "HealthCheck", "InstanceRefresh", "ReplaceUnhealthy", "ScheduledActions"}

func (s *Server) processes(action string, form url.Values) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	ps := list(form, "ScalingProcesses.member")
	if len(ps) == 0 {
		ps = knownProcesses
	}
	for _, p := range ps {
		if !slices.Contains(knownProcesses, p) {
			return validation("unknown scaling process %s", p)
		}
	}
	for _, p := range ps {
		has := slices.Contains(g.suspended, p)
		if action == "SuspendProcesses" && !has {
			g.suspended = append(g.suspended, p)
		}
		if action == "ResumeProcesses" && has {
			g.suspended = slices.DeleteFunc(g.suspended, func(x string) bool { return x == p })
		}
	}
	return nil
}

func (s *Server) setProtection(form url.Values) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	ids := list(form, "InstanceIds.member")
	if len(ids) == 0 || len(ids) > maxProtectionIDs {
		return &apiError{status: 400, code: "LimitExceeded", msg: "between 1 and 50 instance ids per call", senderFault: true}
	}
	prot, err := strconv.ParseBool(form.Get("ProtectedFromScaleIn"))
	if err != nil {
		return validation("ProtectedFromScaleIn is required")
	}
	for _, id := range ids {
		if !slices.Contains(g.instances, id) {
			return validation("The instance %s is not part of Auto Scaling group %s.", id, g.Name)
		}
	}
	// One instance in another state fails the whole call (protection_test.go cites AWS).
	for _, id := range ids {
		switch st := s.instances[id].LifecycleState; st {
		case InService, "EnteringStandby", "Standby":
		default:
			return validation("The instance %s is not in InService or EnteringStandby or Standby.", id)
		}
	}
	for _, id := range ids {
		s.instances[id].ProtectedFromScaleIn = prot
	}
	return nil
}

// setHookTimeouts reads the heartbeat timeout at key, validates it, and sets
// the hook's timeouts and default result as AWS does.
func setHookTimeouts(h *Hook, form url.Values, key string) error {
	hb, err := intParam(form, key, defaultHeartbeat)
	if err != nil {
		return err
	}
	if hb < 30 || hb > 7200 {
		return validation("HeartbeatTimeout must be between 30 and 7200 seconds")
	}
	if h.DefaultResult == "" {
		h.DefaultResult = "ABANDON"
	}
	h.HeartbeatTimeout, h.GlobalTimeout = int32(hb), int32(min(100*hb, maxGlobalTimeout))
	return nil
}

// setHookTarget reads the notification target, role and metadata of a hook
// at prefix (PutLifecycleHook, or a LifecycleHookSpecification). When it
// updates an existing hook (was), what the request leaves out stays as it
// was (API_PutLifecycleHook, RoleARN: "Required for new lifecycle hooks, but optional when updating
// existing hooks"); a new hook with a target needs its role, and the
// metadata is at most 1023 characters (API_PutLifecycleHook,
// NotificationMetadata: "Maximum length of 1023").
func setHookTarget(h *Hook, form url.Values, prefix string, was *Hook) error {
	h.NotificationTargetARN, h.RoleARN, h.NotificationMetadata = form.Get(prefix+"NotificationTargetARN"), form.Get(prefix+"RoleARN"), form.Get(prefix+"NotificationMetadata")
	if was != nil {
		for _, f := range []struct {
			dst *string
			old string
		}{{&h.NotificationTargetARN, was.NotificationTargetARN}, {&h.RoleARN, was.RoleARN}, {&h.NotificationMetadata, was.NotificationMetadata}} {
			if *f.dst == "" {
				*f.dst = f.old
			}
		}
	}
	if h.NotificationTargetARN != "" && h.RoleARN == "" {
		return validation("RoleARN is required for a lifecycle hook with a NotificationTargetARN")
	}
	if len(h.NotificationMetadata) > 1023 {
		return validation("NotificationMetadata is at most 1023 characters")
	}
	return nil
}

func (s *Server) putHook(form url.Values) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	h := Hook{Name: form.Get("LifecycleHookName"), Transition: form.Get("LifecycleTransition"), DefaultResult: form.Get("DefaultResult")}
	i := slices.IndexFunc(g.hooks, func(x Hook) bool { return x.Name == h.Name })
	if i >= 0 && h.Transition == "" {
		h.Transition = g.hooks[i].Transition
	}
	if h.Name == "" || (h.Transition != transitionTerm && h.Transition != "autoscaling:EC2_INSTANCE_LAUNCHING") {
		return validation("LifecycleHookName and a valid LifecycleTransition are required")
	}
	if err := setHookTimeouts(&h, form, "HeartbeatTimeout"); err != nil {
		return err
	}
	var was *Hook
	if i >= 0 {
		was = &g.hooks[i]
	}
	if err := setHookTarget(&h, form, "", was); err != nil {
		return err
	}
	if i >= 0 {
		g.hooks[i] = h
	} else {
		g.hooks = append(g.hooks, h)
	}
	return nil
}

func (s *Server) describeHooks(form url.Values, res *result) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	names := list(form, "LifecycleHookNames.member")
	out := []xmlHook{}
	for _, h := range g.hooks {
		if len(names) == 0 || slices.Contains(names, h.Name) {
			out = append(out, xmlHook{LifecycleHookName: h.Name, AutoScalingGroupName: g.Name, LifecycleTransition: h.Transition,
				HeartbeatTimeout: h.HeartbeatTimeout, GlobalTimeout: h.GlobalTimeout, DefaultResult: h.DefaultResult,
				NotificationTargetARN: h.NotificationTargetARN, RoleARN: h.RoleARN, NotificationMetadata: h.NotificationMetadata})
		}
	}
	res.LifecycleHooks = &out
	return nil
}

func (s *Server) lifecycleAction(action string, form url.Values) error {
	g, err := s.group(form)
	if err != nil {
		return err
	}
	id, hook := form.Get("InstanceId"), form.Get("LifecycleHookName")
	i := s.instances[id]
	if i == nil || !slices.Contains(g.instances, id) || i.actions[hook] == nil {
		return validation("No active Lifecycle Action found with instance ID %s", id)
	}
	a := i.actions[hook]
	if action == "RecordLifecycleActionHeartbeat" {
		h := g.hooks[slices.IndexFunc(g.hooks, func(x Hook) bool { return x.Name == hook })]
		a.deadline = s.clock.Now().Add(time.Duration(h.HeartbeatTimeout) * time.Second)
		if a.deadline.After(a.globalDeadline) {
			a.deadline = a.globalDeadline
		}
		return nil
	}
	switch form.Get("LifecycleActionResult") {
	case "CONTINUE", "ABANDON":
	default:
		return validation("LifecycleActionResult must be CONTINUE or ABANDON")
	}
	delete(i.actions, hook)
	if len(i.actions) == 0 {
		s.finishTermination(g, i)
	}
	return nil
}

func (s *Server) terminateInGroup(form url.Values) error {
	i := s.instances[form.Get("InstanceId")]
	if i == nil || i.LifecycleState == "Terminated" {
		return validation("Instance Id not found - No managed instance found for instance ID: %s", form.Get("InstanceId"))
	}
	g := s.groups[i.Group]
	if i.LifecycleState != InService {
		return nil
	}
	decrement, _ := strconv.ParseBool(form.Get("ShouldDecrementDesiredCapacity"))
	if decrement {
		if g.desired <= g.MinSize {
			return validation("Currently, desiredSize equals minSize (%d). Terminating instance without replacement will violate group's min size constraint.", g.MinSize)
		}
		g.desired--
	}
	s.terminate(g, i, "an instance was taken out of service in response to a user request")
	if !decrement {
		s.converge(g)
	}
	return nil
}

func (s *Server) describeActivities(form url.Values, res *result) error {
	name := form.Get("AutoScalingGroupName")
	var acts []Activity
	for i := len(s.activities) - 1; i >= 0; i-- { // newest first, as AWS lists them
		if a := s.activities[i]; name == "" || a.Group == name {
			acts = append(acts, a)
		}
	}
	max, err := intParam(form, "MaxRecords", 100)
	if err != nil {
		return err
	}
	acts, res.NextToken, err = page(acts, form.Get("NextToken"), max)
	if err != nil {
		return err
	}
	out := []xmlActivity{}
	for _, a := range acts {
		out = append(out, xmlActivity{ActivityID: a.ID, AutoScalingGroupName: a.Group, Description: a.Description, Cause: a.Cause,
			StartTime: a.Start.UTC().Format(time.RFC3339), StatusCode: a.Status, Progress: 100})
	}
	res.Activities = &out
	return nil
}
