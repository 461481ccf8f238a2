package awstest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// The calls cluster-autoscaler 1.36 makes (its AWS provider), each as the
// Amazon EC2 Auto Scaling and EC2 API references document it.

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func setDesired(ctx context.Context, s *awstest.Server, group string, n int32) error {
	_, err := rawClient(s).SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(n), HonorCooldown: aws.Bool(false)})
	return err
}

// SetDesiredCapacity, https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_SetDesiredCapacity.html,
// and asg-capacity-limits: "The desired capacity must be equal to or greater
// than the minimum group size, and equal to or less than the maximum group
// size." AWS answers ValidationError "New SetDesiredCapacity value 2 is above
// max value 1 for the AutoScalingGroup."
func TestSetDesiredCapacityLimits(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones, MinSize: 1, MaxSize: 5, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 2}})
	tests := []struct {
		name     string
		group    string
		desired  int32
		wantCode string
		wantMsg  string
	}{
		{name: "above max", group: "g", desired: 6, wantCode: "ValidationError", wantMsg: "New SetDesiredCapacity value 6 is above max value 5 for the AutoScalingGroup."},
		{name: "below min", group: "g", desired: 0, wantCode: "ValidationError", wantMsg: "New SetDesiredCapacity value 0 is below min value 1 for the AutoScalingGroup."},
		{name: "no such group", group: "nope", desired: 1, wantCode: "ValidationError", wantMsg: "no such group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := setDesired(ctx, s, tc.group, tc.desired)
			if apiCode(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("got %v, want %s %q", err, tc.wantCode, tc.wantMsg)
			}
			if g, _ := s.Group("g"); g.Desired != 2 || len(s.GroupInstances("g")) != 2 {
				t.Errorf("a rejected call changed the group: desired %d, %d instances", g.Desired, len(s.GroupInstances("g")))
			}
		})
	}
}

// Scale-out launches in the group's zones, balanced: "By default, Amazon EC2
// Auto Scaling balances instances across all Availability Zones"
// (API_TerminateInstanceInAutoScalingGroup; as-instance-termination). A zone
// short of capacity gets a failed activity and the others take the launches.
func TestSetDesiredCapacityLaunchesBalanced(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones, MaxSize: 10, InstanceType: "m5.large"})
	if err := setDesired(ctx, s, "g", 4); err != nil {
		t.Fatal(err)
	}
	counts := zoneCounts(t, c, "g")
	if len(counts) != 3 || counts[zones[0]]+counts[zones[1]]+counts[zones[2]] != 4 {
		t.Fatalf("InService per zone %v, want 4 over all three zones", counts)
	}
	for _, z := range zones {
		if counts[z] < 1 || counts[z] > 2 {
			t.Errorf("zone %s holds %d of 4, want 1 or 2", z, counts[z])
		}
	}
	for _, i := range s.GroupInstances("g") {
		if i.InstanceType != "m5.large" || i.EC2State != "running" {
			t.Errorf("instance %+v, want a running m5.large", i)
		}
	}

	s.RefuseLaunches(zones[2], true)
	if err := setDesired(ctx, s, "g", 7); err != nil {
		t.Fatal(err)
	}
	if got := zoneCounts(t, c, "g"); got[zones[2]] != counts[zones[2]] || got[zones[0]]+got[zones[1]] != 7-counts[zones[2]] {
		t.Errorf("with %s short: InService per zone %v, want the launches in the other zones", zones[2], got)
	}
	acts, err := rawClient(s).DescribeScalingActivities(ctx, &autoscaling.DescribeScalingActivitiesInput{AutoScalingGroupName: aws.String("g")})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, a := range acts.Activities {
		if a.StatusCode == astypes.ScalingActivityStatusCodeFailed {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failed activities, want 1 for the short zone", failed)
	}
}

// Scale-in by SetDesiredCapacity uses the termination policy and honours
// scale-in protection: it "controls whether the Auto Scaling group can
// terminate a particular instance when scaling in"
// (ec2-auto-scaling-instance-protection). With every remaining instance
// protected the group stays above its desired capacity.
func TestSetDesiredCapacityScaleInHonoursProtection(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:2], MaxSize: 10, InstanceType: "i3.xlarge", Instances: map[string]int{zones[0]: 3, zones[1]: 1}})
	protected := ids[zones[0]][:2]
	if err := c.SetInstanceProtection(ctx, "g", protected, true); err != nil {
		t.Fatal(err)
	}
	if err := setDesired(ctx, s, "g", 0); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, i := range s.GroupInstances("g") {
		left = append(left, i.ID)
	}
	if diff := cmp.Diff(protected, left); diff != "" {
		t.Errorf("instances left after scale-in to 0 (-want, +got):\n%s", diff)
	}
	if g, _ := s.Group("g"); g.Desired != 0 {
		t.Errorf("desired %d, want 0", g.Desired)
	}
	for _, id := range []string{ids[zones[0]][2], ids[zones[1]][0]} {
		if i, _ := s.Instance(id); i.EC2State != "terminated" {
			t.Errorf("unprotected %s: %s, want terminated", id, i.EC2State)
		}
	}
}

// A termination hook holds scale-in by SetDesiredCapacity as any other.
func TestSetDesiredCapacityScaleInWaitsForHook(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:1], MaxSize: 10, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 2}})
	if err := c.PutLifecycleHook(ctx, asg.Hook{Group: "g", Name: "hold", Transition: asg.TransitionTerminating, HeartbeatTimeout: 60, DefaultResult: "CONTINUE"}); err != nil {
		t.Fatal(err)
	}
	if err := setDesired(ctx, s, "g", 1); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, i := range s.GroupInstances("g") {
		states[i.LifecycleState]++
	}
	if diff := cmp.Diff(map[string]int{awstest.InService: 1, awstest.TerminatingWait: 1}, states); diff != "" {
		t.Errorf("lifecycle states (-want, +got):\n%s", diff)
	}
}

// HonorCooldown: "Indicates whether Amazon EC2 Auto Scaling waits for the
// cooldown period to complete before initiating a scaling activity"; the
// documented error is ScalingActivityInProgress.
func TestSetDesiredCapacityHonorCooldown(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:1], MaxSize: 10, InstanceType: "m5.large"})
	if err := setDesired(ctx, s, "g", 1); err != nil {
		t.Fatal(err)
	}
	honor := func() error {
		_, err := rawClient(s).SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
			AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(2), HonorCooldown: aws.Bool(true)})
		return err
	}
	if err := honor(); apiCode(err) != "ScalingActivityInProgress" {
		t.Fatalf("within the cooldown: got %v, want ScalingActivityInProgress", err)
	}
	clk.Step(301 * time.Second)
	if err := honor(); err != nil {
		t.Fatalf("after the cooldown: %v", err)
	}
	if n := len(s.GroupInstances("g")); n != 2 {
		t.Errorf("%d instances, want 2", n)
	}
}

// TerminateInstanceInAutoScalingGroup, https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_TerminateInstanceInAutoScalingGroup.html:
// Response Elements: "Activity: A scaling activity." cluster-autoscaler
// dereferences it. "The instance is not terminated immediately": InProgress.
func TestTerminateInstanceReturnsActivity(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:1], MaxSize: 10, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 2}})
	id := ids[zones[0]][1]
	out, err := rawClient(s).TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if out.Activity == nil {
		t.Fatal("the reply carries no Activity")
	}
	a := out.Activity
	if aws.ToString(a.ActivityId) == "" || aws.ToString(a.AutoScalingGroupName) != "g" || !strings.Contains(aws.ToString(a.Description), id) ||
		a.StatusCode != astypes.ScalingActivityStatusCodeInProgress || a.StartTime == nil || aws.ToString(a.Cause) == "" {
		t.Errorf("activity %+v: want an InProgress activity of group g terminating %s", a, id)
	}
	if g, _ := s.Group("g"); g.Desired != 1 {
		t.Errorf("desired %d, want 1 (decremented)", g.Desired)
	}
}

// DescribeLaunchTemplateVersions as cluster-autoscaler calls it: by
// LaunchTemplateName with the group's version ($Default, $Latest or a
// number), https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLaunchTemplateVersions.html
// ("Versions: One or more versions of the launch template. Valid values
// depend on whether you are describing a specified launch template (by ID or
// name) or all launch templates in your account ... $Latest, $Default, and
// numbers"). A version that does not exist is an error, not the default.
func TestDescribeLaunchTemplateVersionsByName(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "web", Zones: zones[:1], MaxSize: 3, InstanceType: "c5.xlarge"})
	client := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	for _, v := range []string{"$Default", "$Latest", "1"} {
		out, err := client.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateName: aws.String("web"), Versions: []string{v}})
		if err != nil {
			t.Fatalf("version %s: %v", v, err)
		}
		if len(out.LaunchTemplateVersions) != 1 || out.LaunchTemplateVersions[0].LaunchTemplateData == nil ||
			out.LaunchTemplateVersions[0].LaunchTemplateData.InstanceType != "c5.xlarge" {
			t.Errorf("version %s: %+v, want one version launching c5.xlarge", v, out.LaunchTemplateVersions)
		}
	}
	_, err := client.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateName: aws.String("web"), Versions: []string{"7"}})
	if apiCode(err) != "InvalidLaunchTemplateId.VersionNotFound" {
		t.Errorf("version 7: got %v, want InvalidLaunchTemplateId.VersionNotFound", err)
	}
}
