package awstest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

func wantValidation(t *testing.T, err error, contains string) {
	t.Helper()
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "ValidationError" || !strings.Contains(api.ErrorMessage(), contains) {
		t.Fatalf("error %v, want a ValidationError containing %q", err, contains)
	}
}

func TestDetachInstances(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:2], MinSize: 2, MaxSize: 6, InstanceType: "m5.large",
		Instances: map[string]int{zones[0]: 2, zones[1]: 1}})
	a0, a1, b0 := ids[zones[0]][0], ids[zones[0]][1], ids[zones[1]][0]
	if err := c.SetInstanceProtection(ctx, "g", []string{a0}, true); err != nil {
		t.Fatal(err)
	}

	// Desired 3, min 2: detaching two with a decrement would leave desired 1.
	wantValidation(t, c.DetachInstances(ctx, "g", []string{a0, a1}), "below its minimum size")
	wantValidation(t, c.DetachInstances(ctx, "g", []string{"i-0000000000000dead"}), "not part of")

	if err := c.DetachInstances(ctx, "g", []string{a0}); err != nil {
		t.Fatal(err)
	}
	clk.Step(s.DetachDelay("g")) // detaching is asynchronous (detach_test.go)
	i, _ := s.Instance(a0)
	if diff := cmp.Diff(awstest.Instance{ID: a0, Zone: zones[0], InstanceType: "m5.large", ImageID: "ami-g", LifecycleState: "Detached", EC2State: "running"}, i,
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".seq" }, cmp.Ignore()), cmp.AllowUnexported(awstest.Instance{})); diff != "" {
		t.Errorf("detached instance keeps running, in no group, without protection (-want, +got):\n%s", diff)
	}
	if g, _ := s.Group("g"); g.Desired != 2 || len(s.GroupInstances("g")) != 2 {
		t.Errorf("desired %d with %d instances, want 2 and 2 (decremented, nothing launched)", g.Desired, len(s.GroupInstances("g")))
	}

	// Without the decrement Auto Scaling replaces the instance.
	_, err := rawClient(s).DetachInstances(ctx, &autoscaling.DetachInstancesInput{AutoScalingGroupName: aws.String("g"),
		InstanceIds: []string{b0}, ShouldDecrementDesiredCapacity: aws.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	clk.Step(s.DetachDelay("g"))
	if got := len(s.GroupInstances("g")); got != 2 {
		t.Errorf("%d instances after a detach without decrement, want 2 (one replacement)", got)
	}

	// A held instance is not InService and cannot be detached.
	raw := rawClient(s)
	if err := c.PutLifecycleHook(ctx, asg.Hook{Group: "g", Name: "h", Transition: asg.TransitionTerminating, HeartbeatTimeout: 300, DefaultResult: "CONTINUE"}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: aws.String(a1), ShouldDecrementDesiredCapacity: aws.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	wantValidation(t, c.DetachInstances(ctx, "g", []string{a1}), "is not in InService or Standby")
}

func TestAttachInstances(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "src", Zones: zones, MaxSize: 9, InstanceType: "m5.large",
		Instances: map[string]int{zones[0]: 3, zones[1]: 1}})
	s.CreateGroup(awstest.GroupSpec{Name: "dst", Zones: zones[:1], MaxSize: 2, InstanceType: "m5.large", NewInstancesProtectedFromScaleIn: true})
	a, b := ids[zones[0]], ids[zones[1]]

	wantValidation(t, c.AttachInstances(ctx, "dst", a[:1]), "already part of Auto Scaling group src")
	if err := c.DetachInstances(ctx, "src", append(slices.Clone(a), b...)); err != nil {
		t.Fatal(err)
	}
	clk.Step(s.DetachDelay("src"))
	wantValidation(t, c.AttachInstances(ctx, "dst", b), "not one of the group's zones")
	wantValidation(t, c.AttachInstances(ctx, "dst", a), "above max value 2")
	if err := c.AttachInstances(ctx, "dst", a[:2]); err != nil {
		t.Fatal(err)
	}
	g, _ := s.Group("dst")
	if g.Desired != 2 {
		t.Errorf("desired %d, want 2: attaching raises it", g.Desired)
	}
	clk.Step(30 * time.Second) // Pending first (images_test.go)
	for _, i := range s.GroupInstances("dst") {
		if !i.ProtectedFromScaleIn || i.LifecycleState != awstest.InService || i.Group != "dst" {
			t.Errorf("attached %+v, want InService in dst and protected as the group's NewInstancesProtectedFromScaleIn says", i)
		}
	}
	if len(s.AllInstances()) != 4 {
		t.Errorf("%d instances exist, want 4: attaching launches nothing", len(s.AllInstances()))
	}
}

func TestCreateGroupFromTemplateAndSubnets(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.AddSubnet("subnet-a1", zones[0])
	s.AddSubnet("subnet-a2", zones[0])
	s.AddSubnet("subnet-b1", zones[1])
	s.CreateGroup(awstest.GroupSpec{Name: "src", Zones: zones[:2], Subnets: []string{"subnet-a1", "subnet-b1", "subnet-a2"}, MaxSize: 4,
		InstanceType: "m5.large", OverrideTypes: []string{"m5.large", "m5.xlarge"}, Tags: map[string]string{"team": "db"}})
	if err := c.PutLifecycleHook(ctx, asg.Hook{Group: "src", Name: "h", Transition: asg.TransitionTerminating, HeartbeatTimeout: 600, DefaultResult: "CONTINUE"}); err != nil {
		t.Fatal(err)
	}
	err := c.CreateZoneGroup(ctx, asg.ZoneGroup{Source: "src", Name: "src-a", Zone: zones[0], MinSize: 1, MaxSize: 3,
		Tags: map[string]string{"team": "db", "new": "x"}, Hooks: []asg.Hook{{Name: "h", Transition: asg.TransitionTerminating, HeartbeatTimeout: 600, DefaultResult: "CONTINUE"}}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Group("src-a")
	want := awstest.GroupView{Name: "src-a", Zones: zones[:1], Subnets: []string{"subnet-a1", "subnet-a2"}, MinSize: 1, MaxSize: 3, Desired: 1,
		LaunchTemplateID: "lt-src", OverrideTypes: []string{"m5.large", "m5.xlarge"}, Tags: map[string]string{"team": "db", "new": "x"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("zone group (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff([]awstest.Hook{{Name: "h", Transition: asg.TransitionTerminating, DefaultResult: "CONTINUE", HeartbeatTimeout: 600, GlobalTimeout: 60000}}, s.Hooks("src-a")); diff != "" {
		t.Errorf("hooks (-want, +got):\n%s", diff)
	}
	if n := len(s.GroupInstances("src-a")); n != 1 {
		t.Errorf("%d instances, want 1 launched for desired = min", n)
	}

	// A zone without a subnet of the source cannot have a copy.
	err = c.CreateZoneGroup(ctx, asg.ZoneGroup{Source: "src", Name: "src-c", Zone: zones[2], MaxSize: 3})
	if err == nil || !strings.Contains(err.Error(), "no subnet in zone") {
		t.Errorf("error %v, want no subnet in zone", err)
	}
	// Without a launch template or mixed instances policy AWS refuses the group.
	_, err = rawClient(s).CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("bare"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1]})
	wantValidation(t, err, "LaunchTemplate")
}

func TestGroupTags(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:1], MaxSize: 1, InstanceType: "m5.large", Tags: map[string]string{"a": "1", "b": "2"}})
	if err := c.SetGroupTags(ctx, "g", map[string]string{"a": "10", "c": "3"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteGroupTags(ctx, "g", []string{"b", "missing"}); err != nil {
		t.Fatal(err)
	}
	g, _ := s.Group("g")
	if diff := cmp.Diff(map[string]string{"a": "10", "c": "3"}, g.Tags); diff != "" {
		t.Errorf("tags (-want, +got):\n%s", diff)
	}
	wantValidation(t, c.SetGroupTags(ctx, "g", map[string]string{"long": strings.Repeat("x", 257)}), "at most 256")
	_, err := rawClient(s).CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []astypes.Tag{{
		ResourceId: aws.String("nope"), ResourceType: aws.String("auto-scaling-group"), Key: aws.String("k"), Value: aws.String("v")}}})
	wantValidation(t, err, "no such group")
}

// TestAttachGoesThroughNoLaunchHook: lifecycle hooks apply to the instances
// a group launches and terminates, not to the ones attached to it (user
// guide, lifecycle-hooks, "Lifecycle hook availability", footnote 1: "Does
// not apply when you attach or detach instances, move instances in and out
// of standby mode, or delete the group with the force delete option"). An
// instance attached to a group with a launch hook whose default result is
// ABANDON (the API default, API_PutLifecycleHook) goes Pending to InService
// as without it, has no lifecycle action pending, and is never terminated
// at the hook's timeout.
func TestAttachGoesThroughNoLaunchHook(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "src", Zones: zones[:1], MaxSize: 2, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 1}})
	s.CreateGroup(awstest.GroupSpec{Name: "dst", Zones: zones[:1], MaxSize: 2, InstanceType: "m5.large"})
	if err := c.PutLifecycleHook(ctx, asg.Hook{Group: "dst", Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout: 30}); err != nil {
		t.Fatal(err)
	}
	if h := s.Hooks("dst"); len(h) != 1 || h[0].DefaultResult != "ABANDON" {
		t.Fatalf("hooks of dst %+v, want one with the default result ABANDON", h)
	}
	id := ids[zones[0]][0]
	if err := c.DetachInstances(ctx, "src", []string{id}); err != nil {
		t.Fatal(err)
	}
	clk.Step(s.DetachDelay("src"))
	if err := c.AttachInstances(ctx, "dst", []string{id}); err != nil {
		t.Fatal(err)
	}
	if i, _ := s.Instance(id); i.LifecycleState != "Pending" {
		t.Errorf("attached instance is %s, want Pending (not Pending:Wait: no launch hook holds it)", i.LifecycleState)
	}
	wantValidation(t, c.CompleteLifecycleAction(ctx, "dst", "bootstrap", id, "CONTINUE"), "No active Lifecycle Action")
	clk.Step(time.Hour) // past the hook's timeout, many times over
	if i, _ := s.Instance(id); i.EC2State != "running" || i.Group != "dst" || i.LifecycleState != awstest.InService {
		t.Errorf("attached instance is %s, %s in %q an hour on, want running, InService in dst", i.EC2State, i.LifecycleState, i.Group)
	}
}
