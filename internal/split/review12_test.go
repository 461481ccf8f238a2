package split_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestReview12AbandonHookStrandsADetachedInstanceOffTheStateTag (review 12,
// against 47a21f4): the ABANDON launch-hook refusal now waits for "a batch
// in flight", but it tells one only by TagState (parseMove). An instance
// detached on a record that another write overwrote (the case step 4b
// exists for: a late CreateOrUpdateTags of TagState=started from a paused
// `az-balancer split`, landing after another splitter recorded and
// detached a batch; Auto Scaling's CreateOrUpdateTags has no condition,
// API_CreateOrUpdateTags: "If the specified tag already exists, it is
// updated") is on its per-instance record only, and is taken back on
// record only by step 4b. With a launch hook whose DefaultResult is
// ABANDON added meanwhile, steps returns the refusal before step 4b on
// every pass: the detached instance is never attached and runs in no
// group, outside cluster-autoscaler's view, with its local data, until
// someone notices a SplitBlocked event that speaks only of the hook. The
// same instance on TagState (a batch in flight) is finished first, into
// zone groups the hook is not copied to (TestReview11fRefusalMidSplit-
// StrandsTheBatchInFlight): a record overwritten is no less in flight.
//
// Review 14a: such a hook is no longer refused (an attached instance goes
// through no lifecycle hook: user guide, lifecycle-hooks, "Lifecycle hook
// availability", footnote 1, "Does not apply when you attach or detach
// instances"). The scenario stays; the test now wants the split finished,
// the hook copied, nothing lost, where it wanted only none loose.
func TestReview12AbandonHookStrandsADetachedInstanceOffTheStateTag(t *testing.T) {
	ctx, w, s, mi := newLeavingWorld(t)
	g, _ := w.emu.Group("cassandra")
	if g.Tags[split.TagRecordPrefix+mi.ID] == "" {
		t.Fatalf("detached instance %s has no per-instance record (tags %v)", mi.ID, g.Tags)
	}
	// A late write of the first pass's TagState lands over the batch's
	// record; the instance stays on its per-instance record.
	if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagState: "started"}); err != nil {
		t.Fatal(err)
	}
	// The platform team adds a bootstrap launch hook to the group.
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING",
		HeartbeatTimeout: 300, DefaultResult: "ABANDON"}); err != nil {
		t.Fatal(err)
	}
	w.passes(ctx, t, s, 20)
	w.checkNoneLoose(t, "20 passes after the batch's TagState was overwritten and a launch hook with DefaultResult ABANDON was added")
	if res, err := w.passUntilDone(ctx, t, s, "cassandra", 100); !res.Done || err != nil {
		t.Errorf("the split is not done after the launch hook was added (waiting %v, last error %v)", res.Waiting, err)
	}
	w.checkNothingLost(t)
}

// TestReview12AbandonHookMidSplitDropsTheBatchsProtection (review 12,
// against 47a21f4): with a launch hook whose DefaultResult is ABANDON
// added mid-split, the batch in flight is attached, but the pass that
// would protect its instances from scale-in again returns plan{} with
// the refusal: an attached instance is Pending first ("protected on a
// later pass"), and on that later pass step 4 plans SetInstanceProtection,
// nothing waits any more, and the refusal after step 4b throws the planned
// steps away, on every pass. An instance protected from scale-in before
// the split (it lost the protection on DetachInstances: user guide,
// ec2-auto-scaling-instance-protection, "If you detach an instance that
// is protected from scale in, its instance scale-in protection setting is
// lost") stays unprotected in its zone group for as long as the hook is
// there: the group's scale-in (a lowered desired capacity) may pick it.
// "The batch in flight is finished first" covers its protection too
// (issue 11: the split restores what it took).
//
// Review 14a: the hook no longer stops the split at all (footnote 1 of
// "Lifecycle hook availability", user guide lifecycle-hooks: launch hooks
// do not apply to attached instances); the expectation, the instance
// InService in its zone group and protected again, is unchanged.
func TestReview12AbandonHookMidSplitDropsTheBatchsProtection(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	prot := w.ids[zones[0]][1]
	if !slices.Contains(w.prot, prot) {
		t.Fatalf("fixture: %s is not among the protected %v", prot, w.prot)
	}
	left := false
	for pass := range 30 {
		if _, err := s.Pass(ctx, "cassandra"); err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		if i, _ := w.emu.Instance(prot); i.EC2State == "running" && (i.LifecycleState == "Detaching" || i.Group == "") {
			left = true
			break
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if !left {
		t.Fatalf("protected instance %s never left the group", prot)
	}
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING",
		HeartbeatTimeout: 300, DefaultResult: "ABANDON"}); err != nil {
		t.Fatal(err)
	}
	w.passes(ctx, t, s, 20)
	zg := split.ZoneGroupName("cassandra", zones[0])
	i, _ := w.emu.Instance(prot)
	if i.Group != zg || i.LifecycleState != "InService" {
		t.Fatalf("instance %s is %s in %q, want InService in %s (the batch in flight is finished)", prot, i.LifecycleState, i.Group, zg)
	}
	if !i.ProtectedFromScaleIn {
		t.Errorf("instance %s, protected from scale-in before the split, is InService in %s without its protection 20 passes after the ABANDON hook was added", prot, zg)
	}
}

// TestAbandonHookOnAZoneGroupDoesNotHoldTheBatch (review 12 suspicion,
// turned round by review 14a): a launch hook with DefaultResult ABANDON put
// on a per-zone group mid-split. Review 12 took it that an attached
// instance goes through the group's launch hooks and could be terminated
// at the hook's timeout, and the test wanted the batch held detached,
// running in no group, while the hook was there. AWS documents the
// opposite: the user guide's "Lifecycle hook availability" table
// (lifecycle-hooks) applies the launch and termination hooks to all
// launches and terminations, with footnote 1: "Does not apply when you
// attach or detach instances, move instances in and out of standby mode,
// or delete the group with the force delete option". Same scenario, the
// expectation changed: the batch is attached to that group with the hook
// there, its instances are InService (and stay so past the hook's
// timeout), the hook is left alone, and the split finishes with nothing
// lost.
func TestAbandonHookOnAZoneGroupDoesNotHoldTheBatch(t *testing.T) {
	ctx, w, s, mi := newLeavingWorld(t)
	zg := split.ZoneGroupName("cassandra", mi.Zone)
	hook := asg.Hook{Group: zg, Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout: 300, DefaultResult: "ABANDON"}
	if err := w.cloud.PutLifecycleHook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	w.emu.Reset()
	for range 10 {
		w.clock.Step(split.DefaultLockSettle)
		if _, err := s.Pass(ctx, "cassandra"); err != nil {
			t.Errorf("pass: %v", err)
		}
	}
	attached := false
	for _, c := range w.emu.MutatingCalls() {
		attached = attached || c.Action == "AttachInstances" && c.Params.Get("AutoScalingGroupName") == zg
	}
	if !attached {
		t.Errorf("with a launch hook on %s the split never attached its batch to it", zg)
	}
	// Past the hook's heartbeat timeout: nothing held the instance.
	w.clock.Step(time.Duration(hook.HeartbeatTimeout) * time.Second)
	if i, _ := w.emu.Instance(mi.ID); i.EC2State != "running" || i.Group != zg || i.LifecycleState != "InService" {
		t.Errorf("instance %s is %s, %s in %q past the launch hook's timeout, want running, InService in %s", mi.ID, i.EC2State, i.LifecycleState, i.Group, zg)
	}
	if res, err := w.passUntilDone(ctx, t, s, "cassandra", 100); !res.Done || err != nil {
		t.Errorf("the split is not done with the launch hook on %s (waiting %v, last error %v)", zg, res.Waiting, err)
	}
	if !slices.ContainsFunc(w.emu.Hooks(zg), func(h awstest.Hook) bool { return h.Name == hook.Name && h.DefaultResult == "ABANDON" }) {
		t.Errorf("%s has hooks %+v, want its own launch hook %s left as it is", zg, w.emu.Hooks(zg), hook.Name)
	}
	w.checkNothingLost(t)
}
