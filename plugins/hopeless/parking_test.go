package hopeless

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

func TestParkingLotIndexes(t *testing.T) {
	taint := hopelessVerdict(shapes.ReasonTaint, "taint")
	requests := hopelessVerdict(shapes.ReasonInsufficientMaximum, "requests")
	l := newParkingLot()
	a, b := podWithClaim("a", "data-a"), podWithClaim("b", "data-b")
	if _, had := l.park(a, 1, taint); had {
		t.Fatal("a new pod was reported as parked before")
	}
	l.park(b, 1, taint)
	if got := len(l.onePerMessage()); got != 1 {
		t.Errorf("%d verdicts for two pods of one verdict key, want 1", got)
	}
	if got := len(l.withVerdict(1)); got != 2 {
		t.Errorf("%d pods of verdict 1, want 2", got)
	}
	// Parked again under another verdict key (the pod was resized): it moves.
	old, had := l.park(b, 2, requests)
	if !had || old.reason != shapes.ReasonTaint || old.key != 1 {
		t.Errorf("re-park returned %+v, %v", old, had)
	}
	if got := len(l.withVerdict(1)); got != 1 {
		t.Errorf("%d pods left under the old verdict key, want 1", got)
	}
	if got := len(l.onePerMessage()); got != 2 {
		t.Errorf("%d verdicts, want 2", got)
	}
	if got := l.ofClaim("default/data-b"); len(got) != 1 || got[0].message != requests.Message {
		t.Errorf("claim index after re-park: %+v", got)
	}
	if _, had := l.unpark(b.UID); !had {
		t.Error("unpark of a parked pod reported nothing")
	}
	if _, had := l.unpark(b.UID); had {
		t.Error("second unpark reported a pod")
	}
	if len(l.ofClaim("default/data-b")) != 0 || len(l.withVerdict(2)) != 0 || l.len() != 1 {
		t.Errorf("indexes keep an unparked pod: claim %v, verdict %v, len %d", l.ofClaim("default/data-b"), l.withVerdict(2), l.len())
	}
	if len(l.byVerdict) != 1 || len(l.byClaim) != 1 {
		t.Errorf("empty index entries are kept: %d verdicts, %d claims", len(l.byVerdict), len(l.byClaim))
	}
}

// The pods of one verdict key parked with two messages (before and after a
// node change) each have a representative for the re-check, and the key's
// pods are all found whatever their message; re-parking a pod with the
// other message moves it between the groups and leaves no empty one.
func TestParkingLotMessagesOfOneKey(t *testing.T) {
	before := hopelessVerdict(shapes.ReasonTaint, "taint dedicated=batch")
	after := hopelessVerdict(shapes.ReasonTaint, "taint dedicated=gpu")
	l := newParkingLot()
	a, b, c := podWithClaim("a", "data-a"), podWithClaim("b", "data-b"), podWithClaim("c", "data-c")
	l.park(a, 1, before)
	l.park(b, 1, after)
	l.park(c, 1, after)
	reps := l.onePerMessage()
	msgs := map[string]int{}
	for _, p := range reps {
		msgs[p.message]++
		if p.key != 1 {
			t.Errorf("representative of key %d, want 1", p.key)
		}
	}
	if len(reps) != 2 || msgs[before.Message] != 1 || msgs[after.Message] != 1 {
		t.Errorf("representatives %v, want one per message", msgs)
	}
	if got := len(l.withVerdict(1)); got != 3 {
		t.Errorf("%d pods of verdict 1, want 3 (both messages)", got)
	}
	l.park(a, 1, after)
	if got := len(l.onePerMessage()); got != 1 {
		t.Errorf("%d representatives once every pod has the new message, want 1", got)
	}
	if got := len(l.byVerdict[1]); got != 1 {
		t.Errorf("%d message groups kept under key 1, want 1 (the emptied one dropped)", got)
	}
	for _, p := range []types.UID{a.UID, b.UID, c.UID} {
		l.unpark(p)
	}
	if len(l.byVerdict) != 0 {
		t.Errorf("index keeps %d verdict keys with nobody parked", len(l.byVerdict))
	}
}

// The parker keeps the report in step with the lot: a release cancels the
// queued write, a pod bound or gone is forgotten, and unparking a pod that
// is not parked says nothing.
func TestParkerReports(t *testing.T) {
	rep := &recordingReporter{}
	p := &parker{lot: newParkingLot(), reporter: rep}
	a, b := cronPod("a"), cronPod("b")
	v := hopelessVerdict(shapes.ReasonTaint, "taint")
	p.park(a, 1, v, true)
	p.park(b, 1, v, false)
	p.unpark(a.UID)
	p.unpark(a.UID) // no longer parked: nothing to cancel
	p.forget(b.UID)
	if diff := cmp.Diff([]report{{"a", v.Message, true}, {"b", v.Message, false}}, rep.reports, cmp.AllowUnexported(report{})); diff != "" {
		t.Errorf("reports (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff([]types.UID{"a", "b"}, rep.cancelled); diff != "" {
		t.Errorf("cancelled (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff([]types.UID{"b"}, rep.forgotten); diff != "" {
		t.Errorf("forgotten (-want, +got):\n%s", diff)
	}
	if p.lot.len() != 0 {
		t.Errorf("%d pods left in the lot", p.lot.len())
	}
}
