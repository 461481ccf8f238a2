package hopeless

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	st "k8s.io/kubernetes/pkg/scheduler/testing"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

func TestParkingLotIndexes(t *testing.T) {
	withClaim := func(name string) *v1.Pod {
		p := st.MakePod().Namespace("default").Name(name).UID(name).Obj()
		p.Spec.Volumes = []v1.Volume{{Name: "d", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + name}}}}
		return p
	}
	taint := shapes.Verdict{Hopeless: true, Reason: shapes.ReasonTaint, Message: "hopeless: taint"}
	requests := shapes.Verdict{Hopeless: true, Reason: shapes.ReasonInsufficientMaximum, Message: "hopeless: requests"}
	l := newParkingLot()
	a, b := withClaim("a"), withClaim("b")
	if _, had := l.park(a, 1, taint); had {
		t.Fatal("a new pod was reported as parked before")
	}
	l.park(b, 1, taint)
	if got := len(l.signatures()); got != 1 {
		t.Errorf("%d signatures for two pods of one signature, want 1", got)
	}
	if got := len(l.withSignature(1)); got != 2 {
		t.Errorf("%d pods of signature 1, want 2", got)
	}
	// Parked again under another signature (the pod was resized): it moves.
	old, had := l.park(b, 2, requests)
	if !had || old.reason != shapes.ReasonTaint || old.sig != 1 {
		t.Errorf("re-park returned %+v, %v", old, had)
	}
	if got := len(l.withSignature(1)); got != 1 {
		t.Errorf("%d pods left under the old signature, want 1", got)
	}
	if got := len(l.signatures()); got != 2 {
		t.Errorf("%d signatures, want 2", got)
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
	if len(l.ofClaim("default/data-b")) != 0 || len(l.withSignature(2)) != 0 || l.len() != 1 {
		t.Errorf("indexes keep an unparked pod: claim %v, signature %v, len %d", l.ofClaim("default/data-b"), l.withSignature(2), l.len())
	}
	if len(l.bySig) != 1 || len(l.byClaim) != 1 {
		t.Errorf("empty index entries are kept: %d signatures, %d claims", len(l.bySig), len(l.byClaim))
	}
}
