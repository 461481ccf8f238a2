package balancer

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

const nodeTemplateTag = "k8s.io/cluster-autoscaler/node-template/label/workload"

// splitWorld is a 3-zone group of 4+1+1 instances (incident 7), min 3 max 10,
// two instances protected from scale-in, a termination hook.
type splitWorld struct {
	emu   *awstest.Server
	clock *clocktesting.FakeClock
	cloud *asg.Client
	ids   map[string][]string // by zone
	prot  []string            // protected before the split
}

func newSplitWorld(t testing.TB, edit ...func(*awstest.GroupSpec)) *splitWorld {
	t.Helper()
	f := awstest.NewSplitWorld(t, zones, HookName, caTags(map[string]string{nodeTemplateTag: "cassandra", "team": "db"}), edit...)
	return &splitWorld{emu: f.Emu, clock: f.Clock, cloud: f.Cloud, ids: f.IDs, prot: f.Protected}
}

func (w *splitWorld) client(t testing.TB, hc *http.Client) *asg.Client {
	t.Helper()
	return w.emu.NewClient(t, hc)
}

func (w *splitWorld) all() []string {
	var out []string
	for _, z := range zones {
		out = append(out, w.ids[z]...)
	}
	slices.Sort(out)
	return out
}

// checkNothingLost fails unless exactly the seeded instances exist, all
// running, each in its zone's group.
func (w *splitWorld) checkNothingLost(t *testing.T) {
	t.Helper()
	var got []string
	for _, i := range w.emu.AllInstances() {
		got = append(got, i.ID)
		if i.EC2State != "running" || i.Group != ZoneGroupName("cassandra", i.Zone) {
			t.Errorf("instance %s is %s (EC2 %s) in group %q, want running in %s", i.ID, i.LifecycleState, i.EC2State, i.Group, ZoneGroupName("cassandra", i.Zone))
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(w.all(), got); diff != "" {
		t.Errorf("instances (-want, +got): nothing launched, nothing gone\n%s", diff)
	}
}

// TestReconcileEnforcesSplit: with --enforce=split the loops split the group,
// a pass each, without failing while instances detach, and protect the node
// of a bound local volume in its new group; then the loop changes nothing.
// Plan lists the next pass without making it.
func TestReconcileEnforcesSplit(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	a0 := w.ids[zones[0]][0]
	objs := []runtime.Object{node("cass-a-0", zones[0], a0), localPV("pv-a0", "cass-a-0", v1.VolumeBound)}
	kube := fake.NewClientset(objs...)
	b := New(kube, w.cloud, record.NewFakeRecorder(1000), w.clock, Options{Selector: asg.AutoDiscovery(cluster), HeartbeatTimeout: 5 * time.Minute, Enforce: EnforceSplit}, nil)

	actions, err := b.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := w.emu.MutatingCalls(); len(m) != 0 {
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
		if g, _ := w.emu.Group("cassandra"); g.Tags[split.TagState] == split.StateDone {
			break
		}
		if loop > 50 {
			t.Fatal("the split did not finish")
		}
		w.clock.Step(30 * time.Second)
	}
	zg := ZoneGroupName("cassandra", zones[0])
	i, _ := w.emu.Instance(a0)
	if i.Group != zg || !i.ProtectedFromScaleIn {
		t.Errorf("instance of cass-a-0: group %q protected %t, want protected in %s", i.Group, i.ProtectedFromScaleIn, zg)
	}
	w.checkNothingLost(t)
	w.emu.Reset()
	if err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range w.emu.MutatingCalls() {
		t.Errorf("loop after the split made %s on %s", c.Action, c.Params.Get("AutoScalingGroupName"))
	}
}

// TestReconcileWaitsForSplitCommand: while `az-balancer split` holds the
// group, the loop makes no split step, says so in an event, and does not fail.
func TestReconcileWaitsForSplitCommand(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	cli := split.New(w.cloud, w.clock, split.Options{Selector: asg.AutoDiscovery(cluster), Owner: "az-balancer-split@laptop/1"})
	if _, err := cli.Pass(ctx, "cassandra"); err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(100)
	b := New(fake.NewClientset(), w.cloud, events, w.clock, Options{Selector: asg.AutoDiscovery(cluster), HeartbeatTimeout: 5 * time.Minute, Enforce: EnforceSplit}, nil)
	w.emu.Reset()
	if err := b.Reconcile(ctx); err != nil {
		t.Fatalf("the loop failed while the split command holds the group: %v", err)
	}
	for _, c := range w.emu.MutatingCalls() {
		if c.Action != "SuspendProcesses" { // the loop's own AZRebalance suspension
			t.Errorf("the loop made %s while the split command holds the group", c.Action)
		}
	}
	close(events.Events)
	found := false
	for e := range events.Events {
		found = found || (strings.Contains(e, ReasonSplitBlocked) && strings.Contains(e, "held by az-balancer-split@laptop/1"))
	}
	if !found {
		t.Error("no SplitBlocked event naming the split command")
	}
}

// TestReconcileReportsARefusedSplit (review 11c #6): a group without room
// for one per-instance record under --enforce=split is reported
// (SplitBlocked) and left as it is; the loop does not fail, or it would fail
// every loop, and the liveness probe with it, until the operator acts.
func TestReconcileReportsARefusedSplit(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t, func(g *awstest.GroupSpec) {
		tags := map[string]string{}
		for k, v := range g.Tags {
			tags[k] = v
		}
		for n := len(tags); n < 47; n++ {
			tags[fmt.Sprintf("cost-center/%02d", n)] = "x"
		}
		g.Tags = tags
	})
	events := record.NewFakeRecorder(100)
	b := New(fake.NewClientset(), w.cloud, events, w.clock, Options{Selector: asg.AutoDiscovery(cluster), HeartbeatTimeout: 5 * time.Minute, Enforce: EnforceSplit}, nil)
	w.emu.Reset()
	if err := b.Reconcile(ctx); err != nil {
		t.Fatalf("the loop failed on a group it refuses to split: %v", err)
	}
	for _, c := range w.emu.MutatingCalls() {
		if c.Action != "SuspendProcesses" || c.Params.Get("ScalingProcesses.member.1") != asg.ProcessAZRebalance {
			t.Errorf("the loop made %s %v on a group it refuses to split", c.Action, c.Params)
		}
	}
	close(events.Events)
	found := false
	for e := range events.Events {
		found = found || (strings.Contains(e, ReasonSplitBlocked) && strings.Contains(e, "remove at least"))
	}
	if !found {
		t.Error("no SplitBlocked event saying why the group is not split")
	}
}
