package hopeless

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

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
// within a bounded number of re-checks.
func TestRvChurnEveryRoundStillReleases(t *testing.T) {
	g := newRvRig(t, 40, nil, makeNode("n0").Obj())
	g.release.nodeChanged(nil, makeNode("pool-0").Obj())
	g.release.nodeChanged(nil, makeNode("gone-7").Obj())
	rounds := g.churnUntilReleased(t, g.pods[7], 60)
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
// the pod at once. 4a18130 put every verdict after the first one weighed
// off to the next re-check, which the next unrelated node moved again: the
// pod stayed parked until its verdict happened to be weighed first in a
// round, or 32 changes had piled up (up to 31 node events later). The
// re-check now takes the later changes and goes on: the first releases it.
func TestRvChurnDefersARelease(t *testing.T) {
	g := newRvRig(t, 100, nil, makeNode("n0").Obj())
	g.release.nodeChanged(nil, makeNode("gone-7").Obj())
	rounds := g.churnUntilReleased(t, g.pods[7], 60)
	if rounds > 2 {
		t.Errorf("db-7, whose volume's node registered, was released only by re-check %d (after %d unrelated node changes); before the change, by the first", rounds, rounds-1)
	}
}
