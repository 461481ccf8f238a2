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
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	w.untilABatchLeaves(ctx, t, s)
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
