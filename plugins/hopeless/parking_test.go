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
	if got := len(l.onePerVerdict()); got != 1 {
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
	if got := len(l.onePerVerdict()); got != 2 {
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
