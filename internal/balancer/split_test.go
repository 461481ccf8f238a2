package balancer

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

const nodeTemplateTag = "k8s.io/cluster-autoscaler/node-template/label/workload"

// newSplitWorld is the group of incident 7 (awstest.SplitWorld) with the
// balancer's hook.
func newSplitWorld(t testing.TB, opts ...awstest.GroupOption) *awstest.SplitWorld {
	t.Helper()
	return awstest.NewSplitWorld(t, zones, HookName, caTags(map[string]string{nodeTemplateTag: "cassandra", "team": "db"}), opts...)
}

// checkNothingLost fails unless exactly the world's instances exist, all
// running, each in its zone's group.
func checkNothingLost(t *testing.T, w *awstest.SplitWorld) {
	t.Helper()
	w.CheckNothingLost(t, func(zone string) string { return ZoneGroupName("cassandra", zone) })
}

// splitBalancer is a balancer of the world's cluster under --enforce=split,
// its hook's heartbeat timeout 5 minutes unless opts says otherwise.
func splitBalancer(w *awstest.SplitWorld, kube *fake.Clientset, events record.EventRecorder, opts ...func(*Options)) *Balancer {
	o := Options{Selector: asg.AutoDiscovery(cluster), HeartbeatTimeout: 5 * time.Minute, Enforce: EnforceSplit}
	for _, f := range opts {
		f(&o)
	}
	return New(kube, w.Cloud, events, w.Clock, o, nil)
}

// splitBlocked reports whether events holds a SplitBlocked event whose
// message says says.
func splitBlocked(events *record.FakeRecorder, says string) bool {
	close(events.Events)
	found := false
	for e := range events.Events {
		found = found || (strings.Contains(e, ReasonSplitBlocked) && strings.Contains(e, says))
	}
	return found
}

// TestReconcileEnforcesSplit: with --enforce=split the loops split the group,
// a pass each, without failing while instances detach, and protect the node
// of a bound local volume in its new group; then the loop changes nothing.
// Plan lists the next pass without making it.
func TestReconcileEnforcesSplit(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	a0 := w.IDs[zones[0]][0]
	objs := []runtime.Object{node("cass-a-0", zones[0], a0), localPV("pv-a0", "cass-a-0", v1.VolumeBound)}
	b := splitBalancer(w, fake.NewClientset(objs...), record.NewFakeRecorder(1000))

	actions, err := b.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := w.Emu.MutatingCalls(); len(m) != 0 {
		t.Fatalf("Plan made %d writes", len(m))
	}
	planned := map[string]int{}
	for _, a := range actions {
		planned[a.Verb]++
	}
	if planned["CreateAutoScalingGroup"] != 3 || planned["DetachInstances"] != 1 {
		t.Errorf("plan %v, want 3 groups created and the first batch detached", planned)
	}

	for loop := 0; ; loop++ {
		if err := b.Reconcile(ctx); err != nil {
			t.Fatalf("loop %d: %v", loop, err)
		}
		if g, _ := w.Emu.Group("cassandra"); g.Tags[split.TagState] == split.StateDone {
			break
		}
		if loop > 50 {
			t.Fatal("the split did not finish")
		}
		w.Clock.Step(30 * time.Second)
	}
	zg := ZoneGroupName("cassandra", zones[0])
	i, _ := w.Emu.Instance(a0)
	if i.Group != zg || !i.ProtectedFromScaleIn {
		t.Errorf("instance of cass-a-0: group %q protected %t, want protected in %s", i.Group, i.ProtectedFromScaleIn, zg)
	}
	checkNothingLost(t, w)
	w.Emu.Reset()
	if err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.Emu.MutatingCalls() {
		t.Errorf("loop after the split made %s on %s", c.Action, c.Params.Get("AutoScalingGroupName"))
	}
}

// TestReconcileWaitsForSplitCommand: while `az-balancer split` holds the
// group, the loop makes no split step, says so in an event, and does not fail.
func TestReconcileWaitsForSplitCommand(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	cli := split.New(w.Cloud, w.Clock, split.Options{Selector: asg.AutoDiscovery(cluster), Owner: "az-balancer-split@laptop/1"})
	if _, err := cli.Pass(ctx, "cassandra"); err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(100)
	b := splitBalancer(w, fake.NewClientset(), events)
	w.Emu.Reset()
	if err := b.Reconcile(ctx); err != nil {
		t.Fatalf("the loop failed while the split command holds the group: %v", err)
	}
	for _, c := range w.Emu.MutatingCalls() {
		if c.Action != "SuspendProcesses" { // the loop's own AZRebalance suspension
			t.Errorf("the loop made %s while the split command holds the group", c.Action)
		}
	}
	if !splitBlocked(events, "held by az-balancer-split@laptop/1") {
		t.Error("no SplitBlocked event naming the split command")
	}
}

// TestReconcileReportsARefusedSplit (review 11c #6): a group without room
// for one per-instance record under --enforce=split is reported
// (SplitBlocked) and left as it is; the loop does not fail, or it would fail
// every loop, and the liveness probe with it, until the operator acts.
func TestReconcileReportsARefusedSplit(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t, awstest.WithOwnTags(47))
	events := record.NewFakeRecorder(100)
	b := splitBalancer(w, fake.NewClientset(), events)
	w.Emu.Reset()
	if err := b.Reconcile(ctx); err != nil {
		t.Fatalf("the loop failed on a group it refuses to split: %v", err)
	}
	for _, c := range w.Emu.MutatingCalls() {
		if c.Action != "SuspendProcesses" || c.Params.Get("ScalingProcesses.member.1") != asg.ProcessAZRebalance {
			t.Errorf("the loop made %s %v on a group it refuses to split", c.Action, c.Params)
		}
	}
	if !splitBlocked(events, "remove at least") {
		t.Error("no SplitBlocked event saying why the group is not split")
	}
}
