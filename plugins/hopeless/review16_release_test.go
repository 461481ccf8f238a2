package hopeless

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// hookedStore runs hooks[i] at the i-th NodeChangesMatter call, before
// (or, with after, once the weighing decided the change matters) weighing.
type hookedStore struct {
	*shapes.Store
	calls   int
	before  map[int]func()
	onMatch func() // once, after a weighing that said "matters"
}

func (h *hookedStore) NodeChangesMatter(r *shapes.Requirements, reason shapes.Reason, changes []shapes.NodeChange) bool {
	h.calls++
	if f := h.before[h.calls]; f != nil {
		f()
	}
	m := h.Store.NodeChangesMatter(r, reason, changes)
	if m && h.onMatch != nil {
		f := h.onMatch
		h.onMatch = nil
		f()
	}
	return m
}

type rvRig struct {
	store    *shapes.Store
	hooked   *hookedStore
	verdicts *verdictCache
	parking  *parker
	release  *releaser
	act      *recordingActivator
	pods     []*v1.Pod
}

// newRvRig parks n pods, pod i bound to a local PV pinned to gone-i, with
// sel as node selector.
func newRvRig(t *testing.T, n int, sel map[string]string, nodes ...*v1.Node) *rvRig {
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	store := shapes.NewStore(opts, false)
	for _, node := range nodes {
		store.UpsertNode(node)
	}
	pvs := map[string]*v1.PersistentVolume{}
	claims := map[string]*v1.PersistentVolumeClaim{}
	for i := range n {
		pv := localPV(fmt.Sprintf("pv-%d", i), fmt.Sprintf("data-%d", i), fmt.Sprintf("gone-%d", i))
		pvs[pv.Name] = pv
		claims[pv.Spec.ClaimRef.Name] = &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: pv.Spec.ClaimRef.Name, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
			Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv.Name}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}}
	}
	volumes := shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
			c, ok := claims[name]
			return c, ok && ns == "default"
		},
		PV: func(name string) (*v1.PersistentVolume, bool) { pv, ok := pvs[name]; return pv, ok },
	}
	g := &rvRig{store: store, hooked: &hookedStore{Store: store, before: map[int]func(){}}, act: &recordingActivator{}}
	g.verdicts = newVerdictCache(store, volumes, func() bool { return true }, clock.RealClock{})
	g.parking = &parker{lot: newParkingLot(), reporter: &recordingReporter{}}
	logger, _ := ktesting.NewTestContext(t)
	g.release = newReleaser(g.hooked, g.verdicts, g.parking, g.act, nil, func() bool { return true }, logger)
	for i := range n {
		w := makePod(fmt.Sprintf("db-%d", i)).PVC(fmt.Sprintf("data-%d", i))
		if sel != nil {
			w = w.NodeSelector(sel)
		}
		pod := w.Obj()
		v, key, ok := g.verdicts.judge(pod)
		if !ok || !v.Hopeless {
			t.Fatalf("setup: %s verdict %+v ok=%v", pod.Name, v, ok)
		}
		g.parking.park(pod, key, v, true)
		g.pods = append(g.pods, pod)
	}
	return g
}

// drain runs re-checks while one is due; it returns how many ran.
func (g *rvRig) drain(t *testing.T, limit int) int {
	logger, _ := ktesting.NewTestContext(t)
	for i := 0; i < limit; i++ {
		select {
		case <-g.release.recheck:
			g.release.recheckParked(logger)
		default:
			return i
		}
	}
	t.Fatalf("re-checks still due after %d", limit)
	return limit
}

func zoneNode(name, zone string) *v1.Node {
	return makeNode(name).Label(v1.LabelTopologyZone, zone).Obj()
}

// Three nodes of another zone, each registering while the re-check of the
// one before weighs: the message follows to "no node matches".
func TestRvThreeNodesEachDuringWeighing(t *testing.T) {
	g := newRvRig(t, 1, map[string]string{v1.LabelTopologyZone: "zone-a"})
	g.hooked.before[1] = func() { g.release.nodeChanged(nil, zoneNode("b2", "zone-b")) }
	g.hooked.before[2] = func() { g.release.nodeChanged(nil, zoneNode("b3", "zone-b")) }
	g.release.nodeChanged(nil, zoneNode("b1", "zone-b"))
	rounds := g.drain(t, 10)
	req, _ := g.verdicts.requirements(g.pods[0])
	want := g.store.Evaluate(req)
	got, ok := g.parking.lot.get(g.pods[0].UID)
	if !ok || got.message != want.Message || strings.Contains(got.message, "no nodes") {
		t.Errorf("after %d re-checks parked=%v message %q, want %q", rounds, ok, got.message, want.Message)
	}
}

// A delete whose witness registers during the weighing, and a delete that
// leaves no node at all during another's weighing.
func TestRvDeleteDuringWeighing(t *testing.T) {
	g := newRvRig(t, 1, map[string]string{v1.LabelTopologyZone: "zone-a"}, zoneNode("a1", "zone-b"), zoneNode("a2", "zone-b"))
	g.hooked.before[1] = func() { g.release.nodeDeleted(zoneNode("a2", "zone-b")) }
	g.release.nodeDeleted(zoneNode("a1", "zone-b"))
	g.drain(t, 10)
	got, _ := g.parking.lot.get(g.pods[0].UID)
	if !strings.Contains(got.message, "no nodes") {
		t.Errorf("both nodes deleted, message %q", got.message)
	}
	// Now a node registers, and during its weighing another is deleted.
	g.hooked.calls = 0
	g.hooked.before = map[int]func(){1: func() { g.release.nodeChanged(nil, zoneNode("c2", "zone-b")) }}
	g.release.nodeChanged(nil, zoneNode("c1", "zone-b"))
	g.drain(t, 10)
	g.hooked.calls = 0
	g.hooked.before = map[int]func(){1: func() { g.release.nodeDeleted(zoneNode("c2", "zone-b")) }}
	g.release.nodeDeleted(zoneNode("c1", "zone-b"))
	g.drain(t, 10)
	got, _ = g.parking.lot.get(g.pods[0].UID)
	if !strings.Contains(got.message, "no nodes") {
		t.Errorf("every node deleted, message %q", got.message)
	}
}

// The store moves while a verdict the changes matter to is judged; the
// next rep sees the move. The pod whose node came back is released, none
// other, and the re-checks end.
func TestRvMoveDuringAMatteringRep(t *testing.T) {
	g := newRvRig(t, 40, nil, makeNode("n0").Obj())
	g.hooked.onMatch = func() { g.release.nodeChanged(nil, makeNode("pool-x").Obj()) }
	g.release.nodeChanged(nil, makeNode("gone-7").Obj())
	rounds := g.drain(t, 10)
	if _, ok := g.parking.lot.get(g.pods[7].UID); ok {
		t.Errorf("db-7 still parked after %d re-checks", rounds)
	}
	if n := len(g.act.activated()); n != 1 {
		t.Errorf("%d activated, want 1", n)
	}
}

// A churning pool: every re-check sees a new (irrelevant) node during its
// weighing. The pod whose node came back in the first change is released
// within a bounded number of re-checks (the put-back deltas exceed
// maxDeltas and the re-check judges all).
func TestRvChurnEveryRoundStillReleases(t *testing.T) {
	g := newRvRig(t, 40, nil, makeNode("n0").Obj())
	logger, _ := ktesting.NewTestContext(t)
	g.release.nodeChanged(nil, makeNode("pool-0").Obj())
	g.release.nodeChanged(nil, makeNode("gone-7").Obj())
	rounds := 0
	for ; rounds < 60; rounds++ {
		if _, ok := g.parking.lot.get(g.pods[7].UID); !ok {
			break
		}
		g.hooked.calls = 0
		i := rounds
		g.hooked.before = map[int]func(){1: func() { g.release.nodeChanged(nil, makeNode(fmt.Sprintf("churn-%d", i)).Obj()) }}
		<-g.release.recheck
		g.release.recheckParked(logger)
	}
	t.Logf("released after %d re-checks", rounds)
	if _, ok := g.parking.lot.get(g.pods[7].UID); ok {
		t.Errorf("db-7 still parked after %d churning re-checks", rounds)
	}
}

// The loop: a change during weighing wakes another round; nothing is lost.
func TestRvRunLoopWeighsAgain(t *testing.T) {
	g := newRvRig(t, 40, nil, makeNode("n0").Obj())
	g.hooked.before[1] = func() { g.release.nodeChanged(nil, makeNode("gone-3").Obj()) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.release.nodeChanged(nil, makeNode("pool-1").Obj())
	go g.release.run(ctx)
	waitFor(t, 5*time.Second, "db-3 released", func() bool { return g.act.has("default/db-3") })
}

// TestRvChurnDefersARelease: a node that a parked pod's local PV needs
// registers; while its re-check weighs, an unrelated pool node registers,
// and so on for each re-check (a churning pool). Before 4a18130 the
// re-check in which the store moved judged every verdict left and released
// the pod at once. Now every verdict after the first one weighed is put
// off to the next re-check, which the next unrelated node moves again: the
// pod stays parked until its rep happens to be weighed first in a round,
// or 32 changes have piled up and a re-check judges all (up to 31 node
// events later). Flaky by design only in the other direction: it passes
// when the map order puts db-7 first in the first re-checks (about 2 in
// 100 runs with 100 parked verdicts).
func TestRvChurnDefersARelease(t *testing.T) {
	g := newRvRig(t, 100, nil, makeNode("n0").Obj())
	logger, _ := ktesting.NewTestContext(t)
	g.release.nodeChanged(nil, makeNode("gone-7").Obj())
	rounds := 0
	for ; rounds < 60; rounds++ {
		if _, ok := g.parking.lot.get(g.pods[7].UID); !ok {
			break
		}
		g.hooked.calls = 0
		i := rounds
		g.hooked.before = map[int]func(){1: func() { g.release.nodeChanged(nil, makeNode(fmt.Sprintf("churn-%d", i)).Obj()) }}
		<-g.release.recheck
		g.release.recheckParked(logger)
	}
	if rounds > 2 {
		t.Errorf("db-7, whose volume's node registered, was released only by re-check %d (after %d unrelated node changes); before the change, by the first", rounds, rounds-1)
	}
}
