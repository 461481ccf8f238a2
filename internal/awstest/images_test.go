package awstest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestAttachRefusesInstanceWithoutAMI: the user guide, "Detach or attach
// instances from your Auto Scaling group" (ec2-auto-scaling-detach-attach-
// instances), considerations for attaching instances: "The AMI used to
// launch the instance must still exist." A deregistered AMI leaves its
// running instances alone, but they can no longer be attached anywhere.
// DescribeImages (API reference): "Recently deregistered images appear in
// the returned results for a short interval and then return empty results."
func TestAttachRefusesInstanceWithoutAMI(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "src", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large", ImageID: "ami-old",
		Instances: map[string]int{zones[0]: 2}})
	s.CreateGroup(awstest.GroupSpec{Name: "dst", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large"})
	a := ids[zones[0]]
	insts, err := c.DescribeInstances(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range insts {
		if i.ImageID != "ami-old" {
			t.Errorf("instance %s: ImageID %q, want ami-old (DescribeInstances answers imageId)", i.ID, i.ImageID)
		}
	}
	if got, err := c.ImagesAvailable(ctx, []string{"ami-old", "ami-never"}); err != nil || !got["ami-old"] || got["ami-never"] {
		t.Fatalf("ImagesAvailable = %v, %v; want ami-old only", got, err)
	}
	if err := c.DetachInstances(ctx, "src", a); err != nil {
		t.Fatal(err)
	}
	clk.Step(s.DetachDelay("src"))
	s.DeregisterImage("ami-old")
	if i, _ := s.Instance(a[0]); i.EC2State != "running" {
		t.Fatalf("instance %s is %s after its AMI was deregistered, want running", a[0], i.EC2State)
	}
	if got, err := c.ImagesAvailable(ctx, []string{"ami-old"}); err != nil || got["ami-old"] {
		t.Errorf("ImagesAvailable after DeregisterImage = %v, %v; want none", got, err)
	}
	wantValidation(t, c.AttachInstances(ctx, "dst", a[:1]), "no longer exists")
	wantValidation(t, c.AttachInstances(ctx, "src", a[:1]), "no longer exists")
	if i, _ := s.Instance(a[0]); i.Group != "" {
		t.Errorf("refused instance is in group %q", i.Group)
	}
}

// TestAttachedInstanceIsPendingFirst: the user guide's lifecycle
// (ec2-auto-scaling-lifecycle) takes an attached instance through Pending,
// and API_AttachInstances registers it with the group's target groups
// first; SetInstanceProtection refuses the whole call meanwhile.
func TestAttachedInstanceIsPendingFirst(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "src", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 1}})
	s.CreateGroup(awstest.GroupSpec{Name: "dst", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large"})
	id := ids[zones[0]][0]
	if err := c.DetachInstances(ctx, "src", []string{id}); err != nil {
		t.Fatal(err)
	}
	clk.Step(s.DetachDelay("src"))
	if err := c.AttachInstances(ctx, "dst", []string{id}); err != nil {
		t.Fatal(err)
	}
	if i, _ := s.Instance(id); i.LifecycleState != "Pending" || i.Group != "dst" {
		t.Fatalf("attached instance is %s in %q, want Pending in dst", i.LifecycleState, i.Group)
	}
	wantValidation(t, c.SetInstanceProtection(ctx, "dst", []string{id}, true), "")
	clk.Step(30 * time.Second)
	if i, _ := s.Instance(id); i.LifecycleState != "InService" {
		t.Fatalf("attached instance is %s 30 s later, want InService", i.LifecycleState)
	}
	if err := c.SetInstanceProtection(ctx, "dst", []string{id}, true); err != nil {
		t.Fatal(err)
	}
}

// TestTerminatedInstancesAreForgotten: TerminateInstances (API reference):
// "Terminated instances remain visible after termination (for approximately
// one hour)." After that DescribeInstances no longer returns them.
func TestTerminatedInstancesAreForgotten(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 2}})
	gone, kept := ids[zones[0]][0], ids[zones[0]][1]
	if _, err := rawClient(s).TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(gone), ShouldDecrementDesiredCapacity: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	describe := func() map[string]string {
		insts, err := c.DescribeInstances(ctx, []string{gone, kept})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, i := range insts {
			out[i.ID] = i.State
		}
		return out
	}
	if got := describe(); got[gone] != "terminated" || got[kept] != "running" {
		t.Fatalf("just after termination: %v, want %s terminated and %s running", got, gone, kept)
	}
	clk.Step(awstest.DefaultForgetAfter - time.Second)
	if got := describe(); got[gone] != "terminated" {
		t.Fatalf("59m59s after termination: %v, want %s still terminated", got, gone)
	}
	clk.Step(time.Second)
	got := describe()
	if _, ok := got[gone]; ok || got[kept] != "running" {
		t.Errorf("an hour after termination: %v, want %s unknown and %s running", got, gone, kept)
	}
	if !slices.ContainsFunc(s.AllInstances(), func(i awstest.Instance) bool { return i.ID == gone }) {
		t.Error("the test's view of all instances lost the terminated one")
	}
}
