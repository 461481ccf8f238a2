package awstest_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestGroupSafeguardsAreKept pins that CreateAutoScalingGroup and
// UpdateAutoScalingGroup take a group's DeletionProtection (API_CreateAutoScalingGroup:
// "When deletion protection is enabled, users cannot delete the Auto Scaling
// group according to the specified protection level"; none,
// prevent-force-deletion, prevent-all-deletion) and InstanceLifecyclePolicy
// (its RetentionTriggers.TerminateHookAbandon, API_RetentionTriggers: retain
// or terminate), and that DescribeAutoScalingGroups answers both
// (API_AutoScalingGroup: DeletionProtection, InstanceLifecyclePolicy).
// Values outside the enumerations are refused.
func TestGroupSafeguardsAreKept(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newEmulator(t)
	s.AddLaunchTemplate(awstest.LaunchTemplate{ID: "lt-1", Name: "pool", InstanceType: "m5.large"})
	raw := rawClient(s)
	lt := &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-1")}
	retain := &astypes.InstanceLifecyclePolicy{RetentionTriggers: &astypes.RetentionTriggers{TerminateHookAbandon: astypes.RetentionActionRetain}}
	if _, err := raw.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1], LaunchTemplate: lt,
		DeletionProtection: astypes.DeletionProtectionPreventAllDeletion, InstanceLifecyclePolicy: retain}); err != nil {
		t.Fatal(err)
	}
	describe := func() astypes.AutoScalingGroup {
		t.Helper()
		out, err := raw.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g"}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			t.Fatalf("DescribeAutoScalingGroups: %+v, %v", out, err)
		}
		return out.AutoScalingGroups[0]
	}
	g := describe()
	if g.DeletionProtection != astypes.DeletionProtectionPreventAllDeletion || g.InstanceLifecyclePolicy == nil ||
		g.InstanceLifecyclePolicy.RetentionTriggers == nil || g.InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon != astypes.RetentionActionRetain {
		t.Errorf("described with DeletionProtection %q, InstanceLifecyclePolicy %+v; want prevent-all-deletion and TerminateHookAbandon retain", g.DeletionProtection, g.InstanceLifecyclePolicy)
	}
	// An update that leaves them out keeps them; one that names one changes it.
	if _, err := raw.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), MaxSize: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Group("g"); v.DeletionProtection != "prevent-all-deletion" || v.TerminateHookAbandon != "retain" {
		t.Errorf("after an update naming neither: %q, %q", v.DeletionProtection, v.TerminateHookAbandon)
	}
	if _, err := raw.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"),
		DeletionProtection: astypes.DeletionProtectionPreventForceDeletion}); err != nil {
		t.Fatal(err)
	}
	if g := describe(); g.DeletionProtection != astypes.DeletionProtectionPreventForceDeletion {
		t.Errorf("DeletionProtection %q after the update, want prevent-force-deletion", g.DeletionProtection)
	}
	_, err := raw.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), DeletionProtection: "always"})
	wantValidation(t, err, "deletionProtection")
	_, err = raw.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("h"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1], LaunchTemplate: lt,
		InstanceLifecyclePolicy: &astypes.InstanceLifecyclePolicy{RetentionTriggers: &astypes.RetentionTriggers{TerminateHookAbandon: "keep"}}})
	wantValidation(t, err, "terminateHookAbandon")
	// Unset, neither is answered.
	s.CreateGroup(awstest.GroupSpec{Name: "plain", Zones: zones[:1], MaxSize: 1, InstanceType: "m5.large"})
	out, err := raw.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"plain"}})
	if err != nil || len(out.AutoScalingGroups) != 1 || out.AutoScalingGroups[0].DeletionProtection != "" || out.AutoScalingGroups[0].InstanceLifecyclePolicy != nil {
		t.Errorf("plain group described as %+v, %v", out, err)
	}
}

// TestLifecycleHookNotificationTargetIsKept pins that PutLifecycleHook and
// CreateAutoScalingGroup's LifecycleHookSpecificationList take a hook's
// NotificationTargetARN, RoleARN and NotificationMetadata, and that
// DescribeLifecycleHooks answers them (API_PutLifecycleHook,
// API_LifecycleHookSpecification, API_LifecycleHook). RoleARN is "Required
// for new lifecycle hooks, but optional when updating existing hooks"
// (API_PutLifecycleHook): a new hook with a target and no role is refused,
// and an update that leaves the three out keeps them.
func TestLifecycleHookNotificationTargetIsKept(t *testing.T) {
	ctx := context.Background()
	s, _, c := newEmulator(t)
	s.CreateGroup(awstest.GroupSpec{Name: "g", Zones: zones[:1], MaxSize: 2, InstanceType: "m5.large"})
	const (
		target = "arn:aws:sqs:us-east-1:000000000000:drain"
		role   = "arn:aws:iam::000000000000:role/asg-hooks"
		meta   = `{"action":"drain"}`
	)
	want := asg.Hook{Group: "g", Name: "drain", Transition: asg.TransitionTerminating, HeartbeatTimeout: 600, DefaultResult: "CONTINUE",
		NotificationTargetARN: target, RoleARN: role, NotificationMetadata: meta}
	if err := c.PutLifecycleHook(ctx, want); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		hooks, err := c.DescribeLifecycleHooks(ctx, "g")
		if err != nil || len(hooks) != 1 {
			t.Fatalf("%s: DescribeLifecycleHooks: %+v, %v", when, hooks, err)
		}
		if h := hooks[0]; h.NotificationTargetARN != target || h.RoleARN != role || h.NotificationMetadata != meta {
			t.Errorf("%s: hook described with target %q, role %q, metadata %q", when, h.NotificationTargetARN, h.RoleARN, h.NotificationMetadata)
		}
	}
	check("put")
	update := want
	update.NotificationTargetARN, update.RoleARN, update.NotificationMetadata, update.HeartbeatTimeout = "", "", "", 900
	if err := c.PutLifecycleHook(ctx, update); err != nil {
		t.Fatal(err)
	}
	check("updated without them")
	noRole := want
	noRole.Name, noRole.RoleARN = "other", ""
	wantValidation(t, c.PutLifecycleHook(ctx, noRole), "RoleARN")

	raw := rawClient(s)
	s.AddLaunchTemplate(awstest.LaunchTemplate{ID: "lt-1", Name: "pool", InstanceType: "m5.large"})
	if _, err := raw.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("h"),
		MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: zones[:1], LaunchTemplate: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String("lt-1")},
		LifecycleHookSpecificationList: []astypes.LifecycleHookSpecification{{LifecycleHookName: aws.String("drain"), LifecycleTransition: aws.String(asg.TransitionTerminating),
			NotificationTargetARN: aws.String(target), RoleARN: aws.String(role), NotificationMetadata: aws.String(meta)}}}); err != nil {
		t.Fatal(err)
	}
	if hs := s.Hooks("h"); len(hs) != 1 || hs[0].NotificationTargetARN != target || hs[0].RoleARN != role || hs[0].NotificationMetadata != meta {
		t.Errorf("hooks of a group created with one: %+v", hs)
	}
}
