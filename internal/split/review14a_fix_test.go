package split_test

import (
	"net/http"

	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestZoneGroupsGetAHookTargetAddedMidSplit: the split group's hook gets a
// notification target after the per-zone groups were created (its consumer
// moved to an SQS queue); step 3 compares the zone groups' hooks with the
// target, role and metadata too, and puts it on them (the emulator keeps
// and answers the three, API_PutLifecycleHook / API_LifecycleHook).
func TestZoneGroupsGetAHookTargetAddedMidSplit(t *testing.T) {
	ctx, w, s, _ := newLeavingWorld(t)
	h := asg.Hook{Group: "cassandra", Name: hookName, Transition: asg.TransitionTerminating, HeartbeatTimeout: 300, DefaultResult: asg.ResultContinue,
		NotificationTargetARN: drainTarget, RoleARN: drainRole, NotificationMetadata: drainMetadata}
	if err := w.cloud.PutLifecycleHook(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := w.passUntilDone(ctx, t, s, "cassandra", 80); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		zg := split.ZoneGroupName("cassandra", z)
		found := false
		for _, x := range w.emu.Hooks(zg) {
			if x.Name != hookName {
				continue
			}
			found = true
			if x.NotificationTargetARN != drainTarget || x.RoleARN != drainRole || x.NotificationMetadata != drainMetadata {
				t.Errorf("%s: hook %s notifies %q (role %q, metadata %q), want %s as on cassandra", zg, hookName, x.NotificationTargetARN, x.RoleARN, x.NotificationMetadata, drainTarget)
			}
		}
		if !found {
			t.Errorf("%s: no hook %s", zg, hookName)
		}
	}
	w.checkNothingLost(t)
}

// TestZoneMinimumCountsNoInstanceLeaving: step 6 sets a per-zone group's
// minimum to at most the instances it runs, so that setting it launches
// nothing. An instance already leaving the group (here terminated by
// cluster-autoscaler with the desired capacity decremented, held in
// Terminating:Wait by the termination hook) is out of the desired capacity:
// counting it would set a minimum above the desired capacity, and AWS then
// raises the desired capacity to the minimum (API_UpdateAutoScalingGroup:
// "If you specify a new value for MinSize without specifying a value for
// DesiredCapacity, and the new MinSize is larger than the current size of
// the group, this sets the group's DesiredCapacity to the new MinSize
// value") and launches an instance. Only InService and Pending instances
// count.
func TestZoneMinimumCountsNoInstanceLeaving(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	leaving := w.ids[zones[1]][0] // the only instance of zone b, protected before the split
	zg := split.ZoneGroupName("cassandra", zones[1])
	raw := w.rawAutoscaling(nil)
	terminated := false
	res, err := w.run(ctx, s, "cassandra", 80, split.DefaultLockSettle, func(pass int, res split.Result, err error) bool {
		logged(t)(pass, res, err)
		if i, _ := w.emu.Instance(leaving); !terminated && i.Group == zg && i.LifecycleState == "InService" && i.ProtectedFromScaleIn {
			// Its batch is finished: cluster-autoscaler scales zone b in.
			if _, err := raw.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
				InstanceId: aws.String(leaving), ShouldDecrementDesiredCapacity: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
			terminated = true
		}
		return res.Done
	})
	if !terminated {
		t.Fatalf("instance %s never reached %s", leaving, zg)
	}
	if !res.Done {
		t.Fatalf("the split did not finish: %v, waiting %v", err, res.Waiting)
	}
	if i, _ := w.emu.Instance(leaving); i.LifecycleState != "Terminating:Wait" {
		t.Fatalf("setup: instance %s is %s at the end of the split, want Terminating:Wait (held by the hook)", leaving, i.LifecycleState)
	}
	g, _ := w.emu.Group(zg)
	if g.MinSize != 0 || g.Desired != 0 {
		t.Errorf("%s: min %d, desired %d after the split, want 0 and 0: its only instance was leaving", zg, g.MinSize, g.Desired)
	}
	if n := len(w.emu.AllInstances()); n != len(w.all()) {
		t.Errorf("%d instances exist, want the %d seeded: the split made AWS launch one", n, len(w.all()))
	}
	for _, z := range []string{zones[0], zones[2]} {
		if g, _ := w.emu.Group(split.ZoneGroupName("cassandra", z)); g.MinSize != 1 {
			t.Errorf("%s: min %d, want 1 (ceil(3/3))", g.Name, g.MinSize)
		}
	}
}

// TestZoneGroupHookTargetRefusedDoesNotHoldTheBatch: the split group's hook
// gets a notification target mid-split, and AWS refuses to put it on the
// per-zone groups (the splitter may not pass its RoleARN: iam:PassRole).
// The zone groups have the hook already, without the target: the refusal is
// logged, and the batch in flight is still attached, the split finished.
func TestZoneGroupHookTargetRefusedDoesNotHoldTheBatch(t *testing.T) {
	ctx, w, s, _ := newLeavingWorld(t)
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: hookName, Transition: asg.TransitionTerminating, HeartbeatTimeout: 300,
		DefaultResult: asg.ResultContinue, NotificationTargetARN: drainTarget, RoleARN: drainRole}); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "PutLifecycleHook", Group: split.ZoneGroupName("cassandra", z), Code: "AccessDenied", Status: http.StatusForbidden, Times: 1000})
	}
	if res, err := w.passUntilDone(ctx, t, s, "cassandra", 80); err != nil || !res.Done {
		t.Fatalf("split: done %t, %v, waiting %v", res.Done, err, res.Waiting)
	}
	w.checkNothingLost(t)
}
