package app

import (
	"context"
	"net/http"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

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
	var err error
	returned := false
	if perr := wait.PollUntilContextTimeout(ctx, time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case err = <-done:
			returned = true
			return true, nil
		default:
		}
		if !clk.HasWaiters() {
			return false, nil
		}
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
		clk.Step(time.Minute)
		return false, nil
	}); perr != nil {
		t.Fatalf("the command did not return: %v", perr)
	}
	if !targeted {
		t.Fatalf("setup: split returned (%v) before the per-zone groups were created", err)
	}
	if returned && waits > 200 {
		t.Errorf("split kept polling for %d waits with every instance stranded and nothing else to move, until interrupted (%d refused PutLifecycleHook calls): %v",
			waits, emu.Counts()["PutLifecycleHook"], err)
	}
}
