package split_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestReview15cNewHookWithTargetRefusedStrandsTheBatch: mid-split, while a
// batch is detached, the operator adds a second termination hook with an SQS
// target to the split group (a drain consumer). Step 3 puts it on every
// per-zone group before step 4 attaches the batch; AWS refuses that put for
// good (the splitter's role may not iam:PassRole the hook's RoleARN, which
// iam-policy-split.json does not grant). Only a put that adds a target to a
// hook the zone group already has is forgiven (63c7f04); a wholly new hook's
// refusal fails the pass before the AttachInstances, every pass: the batch
// runs in no group, outside cluster-autoscaler's view, for as long as the
// IAM policy is not changed (the operator's change to a hook of the *old*
// group keeps detached instances out of every group).
func TestReview15cNewHookWithTargetRefusedStrandsTheBatch(t *testing.T) {
	ctx, w, s, _ := newLeavingWorld(t)
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: "drain-notify", Transition: asg.TransitionTerminating, HeartbeatTimeout: 300,
		DefaultResult: asg.ResultContinue, NotificationTargetARN: drainTarget, RoleARN: drainRole}); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "PutLifecycleHook", Group: split.ZoneGroupName("cassandra", z), Code: "AccessDenied", Status: http.StatusForbidden, Times: 1000})
	}
	w.passes(ctx, t, s, 40)
	w.checkNoneLoose(t, "40 passes after a hook with a target was added to cassandra and AWS refused it on the per-zone groups")
}

// TestReview15cHookRoleRefusedAtCreateLeavesTheGroupUnableToLaunch: since
// 5b787cc the per-zone groups are created with the split group's hooks
// including their NotificationTargetARN and RoleARN, so CreateAutoScalingGroup
// needs iam:PassRole on that role, which iam-policy-split.json does not grant
// (docs/operations.md says to add it). Without it, every pass fails at step 3;
// but steps 1 and 2 come first: the split group gets Launch and Terminate
// suspended and its minimum zeroed on the first pass, and stays so while
// every later pass fails (and after `split` gives up "with no batch on
// record"). cluster-autoscaler's scale-ups of that node group never launch.
// The name-length check (step 0) exists for exactly this failure mode ("a
// split that cannot create its per-zone groups would suspend Launch and
// Terminate and zero the minimum, then fail at step 3 on every pass"); a
// hook with a role is the same failure, reached with the shipped policy by
// any group whose hook notifies SQS/SNS. Before 5b787cc such a group split.
func TestReview15cHookRoleRefusedAtCreateLeavesTheGroupUnableToLaunch(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: hookName, Transition: asg.TransitionTerminating, HeartbeatTimeout: 300,
		DefaultResult: asg.ResultContinue, NotificationTargetARN: drainTarget, RoleARN: drainRole}); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "CreateAutoScalingGroup", Group: split.ZoneGroupName("cassandra", z), Code: "AccessDenied", Status: http.StatusForbidden, Times: 1000})
	}
	s := w.splitter(w.cloud, "run")
	var created bool
	w.run(ctx, s, "cassandra", 25, split.DefaultLockSettle, func(pass int, res split.Result, err error) bool {
		logged(t)(pass, res, err)
		for _, z := range zones {
			if _, ok := w.emu.Group(split.ZoneGroupName("cassandra", z)); ok {
				created = true
			}
		}
		return false
	})
	if created {
		t.Fatal("setup: a per-zone group was created")
	}
	gs, err := w.cloud.DescribeGroups(ctx, asg.Selector{Names: []string{"cassandra"}})
	if err != nil || len(gs) != 1 {
		t.Fatal(gs, err)
	}
	g := gs[0]
	if g.Suspended("Launch") || g.Suspended("Terminate") || g.MinSize != 3 {
		t.Errorf("cassandra after 25 passes that each failed creating the per-zone groups (hook role not passable): Launch suspended %t, Terminate suspended %t, min %d (was 3): the split cannot go on, yet the group can no longer scale",
			g.Suspended("Launch"), g.Suspended("Terminate"), g.MinSize)
	}
}

// TestReview15cStaleRecordMakesAForeignGroupAZoneGroup: a per-instance record
// of an instance of another group is bad input the split logs and deletes
// (docs/operations.md; recordOfAnother). When that other group is named like
// one of the split's per-zone groups (cassandra-us-east-1a, not split from
// cassandra: no split-from tag), the record's zone now makes snapshot take
// the group for the split's (4e92ad3: "a group of such a zone ... is the
// split's even without its TagFrom"). Before, the split refused before any
// write (a group named like a per-zone group, not split from it). Now it
// deletes the record, records a batch of zone us-east-1a, detaches it, and
// attaches cassandra's instances to the foreign group (raising its maximum
// to fit them), then refuses: the instances are moved into a group the
// split never created and does not own.
func TestReview15cStaleRecordMakesAForeignGroupAZoneGroup(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	foreign := split.ZoneGroupName("cassandra", zones[0])
	stranger := w.recordOfAnother(ctx, t, foreign)
	s := w.splitter(w.cloud, "run")
	w.passes(ctx, t, s, 40)
	for _, i := range w.emu.GroupInstances(foreign) {
		id := i.ID
		if id != stranger {
			t.Errorf("instance %s of cassandra was moved into %s, a group the split did not create (no %s tag)", id, foreign, split.TagFrom)
		}
	}
	if g, _ := w.emu.Group(foreign); g.MaxSize != 1 {
		t.Errorf("%s: max %d, want 1 as its owner set it", foreign, g.MaxSize)
	}
	w.checkNoneLoose(t, "after 40 passes")
}
