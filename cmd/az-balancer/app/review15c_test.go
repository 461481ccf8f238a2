package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

// TestReview15cSplitCommandStopsOnStrandedInstancesDespiteARefusedHookTarget:
// `split` stops when a pass makes no step and has stranded instances
// (TestSplitCommandStopsOnStrandedInstances). Since 63c7f04 a refused put of
// a notification target on a per-zone group's hook is a warning, not an
// error: the step is made, and logged, every pass. With the split group's
// hook given a target after the per-zone groups were created, and the put
// refused for good (iam:PassRole, which iam-policy-split.json does not
// grant), every pass has that step: the "len(res.Steps) == 0" exit never
// comes, and `split` polls every 5 s for ever instead of exiting with the
// stranded instances named.
func TestReview15cSplitCommandStopsOnStrandedInstancesDespiteARefusedHookTarget(t *testing.T) {
	ctx := context.Background()
	clk, emu := splitWorld(t)
	zones := []string{"us-east-1a", "us-east-1b"}
	emu.CreateGroup(awstest.GroupSpec{Name: "db", Zones: zones, MaxSize: 4, InstanceType: "m5.large", ImageID: "ami-old",
		Instances: map[string]int{zones[0]: 1, zones[1]: 1}})
	emu.DeregisterImage("ami-old")
	cloud := emu.NewClient(t, nil)
	hook := asg.Hook{Group: "db", Name: "drain", Transition: asg.TransitionTerminating, HeartbeatTimeout: 300, DefaultResult: asg.ResultContinue}
	if err := cloud.PutLifecycleHook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := runSplitAsync(runCtx, t, emu, "db")
	targeted, waits := false, 0
	// The command returns (stepWhileWaiting fails the test otherwise).
	err := stepWhileWaiting(t, clk, done, time.Minute, time.Minute, func() {
		if !targeted && emu.Counts()["CreateAutoScalingGroup"] >= len(zones) {
			// The per-zone groups exist, with the hook: now it gets a target.
			targeted = true
			h := hook
			h.NotificationTargetARN, h.RoleARN = "arn:aws:sqs:us-east-1:000000000000:drain", "arn:aws:iam::000000000000:role/drain"
			if err := cloud.PutLifecycleHook(ctx, h); err != nil {
				t.Fatal(err)
			}
			for _, z := range zones {
				emu.Inject(awstest.Fault{Service: "autoscaling", Action: "PutLifecycleHook", Group: "db-" + z, Code: "AccessDenied", Status: http.StatusForbidden, Times: 100000})
			}
		}
		if waits++; waits > 200 {
			cancel() // 200 polls (at least 1000 s) with nothing that can move
		}
	})
	if !targeted {
		t.Fatalf("setup: split returned (%v) before the per-zone groups were created", err)
	}
	if waits > 200 {
		t.Errorf("split kept polling for %d waits with every instance stranded and nothing else to move, until interrupted (%d refused PutLifecycleHook calls): %v",
			waits, emu.Counts()["PutLifecycleHook"], err)
	}
}

// TestReview15cSplitCommandRetriesInputErrorsForHalfAnHour: since 2b0ea5a a
// failed pass is passed again after a backoff unless its error is
// split.ErrRefused or ErrLocked. The refusals of bad input that no pass
// changes are not all ErrRefused: a group name mistyped ("auto scaling
// group ... not found") and a group in a single zone ("spans 1 zone(s);
// nothing to split") are plain errors, so `az-balancer split` answers them
// only after splitMaxFailures passes and ~32 minutes of backoff (5 s
// doubling to 2 min), where it used to answer at once. Nothing is on record
// and nothing was written: there is nothing to wait for.
func TestReview15cSplitCommandRetriesInputErrorsForHalfAnHour(t *testing.T) {
	clk, emu := splitWorld(t)
	emu.CreateGroup(awstest.GroupSpec{Name: "one-zone", Zones: []string{"us-east-1a"}, MaxSize: 4, InstanceType: "m5.large", Instances: map[string]int{"us-east-1a": 2}})
	for _, group := range []string{"no-such-group", "one-zone"} {
		start := clk.Now()
		err := stepUntilDone(t, clk, runSplitAsync(context.Background(), t, emu, group))
		if err == nil {
			t.Fatalf("split %s: no error", group)
		}
		if took := clk.Since(start); took > 0 {
			t.Errorf("split %s answered %q only after %s of backoff (%d DescribeAutoScalingGroups): bad input no pass changes, retried as if AWS had failed",
				group, err, took, emu.Counts()["DescribeAutoScalingGroups"])
		}
		emu.Reset()
	}
}
