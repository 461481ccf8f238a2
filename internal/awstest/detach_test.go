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
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestDetachIsAsynchronous pins that DetachInstances returns before the
// instances leave the group. Amazon EC2 Auto Scaling API reference,
// DetachInstances: "If there are target groups attached to the Auto Scaling
// group, the instances are deregistered from the target groups"; User Guide,
// ec2-auto-scaling-lifecycle: a detached instance moves to Detaching, then
// Detached (LifecycleState values "Detaching | Detached"); a target group's
// deregistration delay is 300 s by default. AttachInstances then refuses the
// instance while it is Detaching, since it is still a member of a group
// (User Guide, attach considerations: "The instance is not a member of another
// Auto Scaling group").
func TestDetachIsAsynchronous(t *testing.T) {
	ctx := context.Background()
	s, clk, c := newEmulator(t)
	ids := s.CreateGroup(awstest.GroupSpec{Name: "src", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large",
		TargetGroupARNs: []string{"arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/1"}, Instances: map[string]int{zones[0]: 2}})
	s.CreateGroup(awstest.GroupSpec{Name: "plain", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large", Instances: map[string]int{zones[0]: 1}})
	s.CreateGroup(awstest.GroupSpec{Name: "dst", Zones: zones[:1], MaxSize: 4, InstanceType: "m5.large"})
	a := ids[zones[0]][0]
	if d := s.DetachDelay("src"); d != 300*time.Second {
		t.Fatalf("detach delay with a target group %s, want the default deregistration delay 300s", d)
	}
	if err := c.DetachInstances(ctx, "src", []string{a}); err != nil {
		t.Fatal(err)
	}
	gs, err := c.DescribeGroups(ctx, asg.Selector{Names: []string{"src"}})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, i := range gs[0].Instances {
		states[i.ID] = i.LifecycleState
	}
	if states[a] != "Detaching" {
		t.Errorf("right after DetachInstances the instance is %q in the group, want Detaching", states[a])
	}
	if gs[0].DesiredCapacity != 1 {
		t.Errorf("desired %d, want 1: the decrement is immediate", gs[0].DesiredCapacity)
	}
	wantValidation(t, c.AttachInstances(ctx, "dst", []string{a}), "already part of Auto Scaling group src")
	wantValidation(t, c.DetachInstances(ctx, "src", []string{a}), "is not in InService or Standby")

	clk.Step(299 * time.Second)
	if i, _ := s.Instance(a); i.LifecycleState != "Detaching" || i.Group != "src" {
		t.Errorf("before the deregistration delay: %s in %q, want Detaching in src", i.LifecycleState, i.Group)
	}
	clk.Step(time.Second)
	if i, _ := s.Instance(a); i.LifecycleState != "Detached" || i.Group != "" || i.EC2State != "running" {
		t.Errorf("after the deregistration delay: %s in %q (EC2 %s), want Detached, in no group, running", i.LifecycleState, i.Group, i.EC2State)
	}
	if err := c.AttachInstances(ctx, "dst", []string{a}); err != nil {
		t.Errorf("attaching the detached instance: %v", err)
	}

	// Without target groups the detach is short, never instant.
	p := s.GroupInstances("plain")[0].ID
	if err := c.DetachInstances(ctx, "plain", []string{p}); err != nil {
		t.Fatal(err)
	}
	if i, _ := s.Instance(p); i.LifecycleState != "Detaching" {
		t.Errorf("without target groups: %s right after the call, want Detaching", i.LifecycleState)
	}
	clk.Step(s.DetachDelay("plain"))
	if i, _ := s.Instance(p); i.LifecycleState != "Detached" {
		t.Errorf("without target groups, after %s: %s, want Detached", s.DetachDelay("plain"), i.LifecycleState)
	}
}

// TestCreateGroupRefusesTemplateByIDAndName pins the LaunchTemplateSpecification
// rule of CreateAutoScalingGroup (API reference, LaunchTemplateSpecification:
// "Conditional: You must specify either a LaunchTemplateId or a
// LaunchTemplateName"; CloudFormation, AWS::AutoScaling::AutoScalingGroup
// LaunchTemplateSpecification: "The ID or the name of the launch template, but
// not both"), for the group's template and a mixed instances policy's.
func TestCreateGroupRefusesTemplateByIDAndName(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	s.AddLaunchTemplate(awstest.LaunchTemplate{ID: "lt-1", Name: "pool", InstanceType: "m5.large"})
	raw := rawClient(s)
	both := &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-1"), LaunchTemplateName: aws.String("pool"), Version: aws.String("$Default")}
	_, err := raw.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("both"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1], LaunchTemplate: both})
	wantValidation(t, err, "not both")
	_, err = raw.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("mixed"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1], MixedInstancesPolicy: &astypes.MixedInstancesPolicy{
			LaunchTemplate: &astypes.LaunchTemplate{LaunchTemplateSpecification: both}}})
	wantValidation(t, err, "not both")
	if names := s.GroupNames(); len(names) != 0 {
		t.Errorf("refused requests created groups %v", names)
	}
	for _, lt := range []*astypes.LaunchTemplateSpecification{
		{LaunchTemplateId: aws.String("lt-1")}, {LaunchTemplateName: aws.String("pool")},
	} {
		if _, err := raw.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g-" + aws.ToString(lt.LaunchTemplateId) + aws.ToString(lt.LaunchTemplateName)),
			MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1], LaunchTemplate: lt}); err != nil {
			t.Errorf("template %+v: %v", lt, err)
		}
	}
}

// TestDescribeInstanceTypesFailsWhole pins that one unknown type fails the
// whole DescribeInstanceTypes call: AWS answers InvalidInstanceType, "The
// following supplied instance types do not exist: [...]", and describes none
// of the others (EC2 API reference, DescribeInstanceTypes; error codes,
// InvalidInstanceType).
func TestDescribeInstanceTypesFailsWhole(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	raw := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	out, err := raw.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"m5.large", "x9.huge", "r5.xlarge"}})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidInstanceType" || !strings.Contains(api.ErrorMessage(), "do not exist: [x9.huge]") {
		t.Fatalf("error %v, want InvalidInstanceType naming x9.huge", err)
	}
	if out != nil {
		t.Errorf("a failed call described %d types", len(out.InstanceTypes))
	}
}
