package split_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ballast-k8s/ballast/internal/asg"
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
func TestReview12AbandonHookStrandsADetachedInstanceOffTheStateTag(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	moving := w.untilABatchLeaves(ctx, t, s)
	g, _ := w.emu.Group("cassandra")
	if g.Tags[split.TagRecordPrefix+moving] == "" {
		t.Fatalf("detached instance %s has no per-instance record (tags %v)", moving, g.Tags)
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

// TestAbandonHookOnAZoneGroupHoldsTheBatch (review 12, suspicion): an
// attached instance goes through Pending, where the group's launch hooks
// hold it (user guide, ec2-auto-scaling-lifecycle, "Attach an instance";
// API_PutLifecycleHook: DefaultResult "The action the Auto Scaling group
// takes when the lifecycle hook timeout elapses or if an unexpected failure
// occurs", ABANDON terminating a launching instance). A launch hook with
// DefaultResult ABANDON put on a per-zone group mid-split could therefore
// terminate an instance of the batch, local data and all, if its consumer
// ignores attached instances. While it is there the batch is not attached
// to that group: its instances stay detached and running (whole), the split
// says why; with the hook's default made CONTINUE the batch is attached and
// nothing is lost. No new batch is recorded meanwhile.
func TestAbandonHookOnAZoneGroupHoldsTheBatch(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	moving := w.untilABatchLeaves(ctx, t, s)
	mi, _ := w.emu.Instance(moving)
	zg := split.ZoneGroupName("cassandra", mi.Zone)
	hook := asg.Hook{Group: zg, Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout: 300, DefaultResult: "ABANDON"}
	if err := w.cloud.PutLifecycleHook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	w.emu.Reset()
	for range 10 {
		w.clock.Step(split.DefaultLockSettle)
		if _, err := s.Pass(ctx, "cassandra"); err != nil && !errors.Is(err, split.ErrRefused) {
			t.Logf("pass: %v", err)
		}
	}
	for _, c := range w.emu.MutatingCalls() {
		if c.Action == "AttachInstances" || c.Action == "DetachInstances" {
			t.Errorf("with an ABANDON launch hook on %s the split made %s %v", zg, c.Action, c.Params)
		}
	}
	if i, _ := w.emu.Instance(moving); i.EC2State != "running" || i.Group != "" {
		t.Errorf("instance %s is %s in %q, want running, detached, while the hook is there", moving, i.EC2State, i.Group)
	}
	hook.DefaultResult = "CONTINUE"
	if err := w.cloud.PutLifecycleHook(ctx, hook); err != nil {
		t.Fatal(err)
	}
	w.passes(ctx, t, s, 20)
	if i, _ := w.emu.Instance(moving); i.Group != zg {
		t.Errorf("instance %s is in %q 20 passes after the hook's default was made CONTINUE, want %s", moving, i.Group, zg)
	}
	w.checkNoneLoose(t, "after the zone group's ABANDON hook was made CONTINUE")
}
