package hopeless

// Review 22: tests for cbc4e67 (claims indexed by volumeName; a pod judged
// across a claim or PV change is judged again once parked: volumeGen,
// recheckClaims). The one marked "(fails)" was fixed in f049ddb.

import (
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestReview22RecheckClaimsStaleReparkLosesFix (fails): the re-judge that
// cbc4e67 adds (recheckClaims -> the run loop's activate) has the very
// window it closes for PreEnqueue: it judges a snapshot of the lot, then
// re-parks the pod with the (new) verdict key, without looking at
// volumeGen. A PV change whose handler snapshots the lot between the run
// loop's read of the PV and its re-park finds the old entry, judges the
// pod placeable, and its unparkIf fails (the entry is now the re-park);
// nothing judges the pod again, and it stays parked on a PV that has been
// fixed until the queue's flush.
//
//  1. PV pv-0 at rv1, wrong affinity. PreEnqueue reads rv1; the PV moves to
//     rv2 (a label: still wrong), whose handler finds no parked pod.
//     PreEnqueue parks the pod under the key of rv1 and, volumeGen having
//     moved, hands its claim to recheckClaims (cbc4e67).
//  2. The run loop judges the pod: it reads rv2 (a new key, still
//     hopeless) and is about to re-park it under that key.
//  3. The PV is fixed (rv3); its handler takes the lot's entry (key of rv1)
//     and reads rv3: placeable. The run loop re-parks (key of rv2); the
//     handler's unparkIf of the rv1 entry fails.
//
// Fix: the release path's judges (activate, recheckKey) read volumeGen
// before judging and, when it moved by the re-park, judge the pod again
// (or have recheckClaims do it); or a failed unparkIf of a placeable pod
// judges the current entry again.
func TestReview22RecheckClaimsStaleReparkLosesFix(t *testing.T) {
	rv1 := localPV("pv-0", "data-db-0", "gone-node")
	rv1.ResourceVersion = "1"
	rv2 := rv1.DeepCopy()
	rv2.ResourceVersion = "2"
	rv2.Labels = map[string]string{"touched": "yes"}
	rv3 := rv2.DeepCopy()
	rv3.ResourceVersion = "3"
	fixAffinity(rv3)
	claim := boundClaim("data-db-0", "pv-0")
	claim.ResourceVersion = "1"
	pod := podWithClaim("db-0", "data-db-0")

	var (
		mu       sync.Mutex
		current  = rv1
		stage    int // 0 setup, 1 PreEnqueue, 2 the run loop, 3 the handler of rv3
		runReads int
		h3in     = make(chan struct{})
		h3done   = make(chan struct{})
		f        *releaseRig
		parkedK1 verdictKey
	)
	lookup := shapes.VolumeLookup{
		Claim: onlyClaim(claim),
		PV: func(name string) (*v1.PersistentVolume, bool) {
			if name != "pv-0" {
				return nil, false
			}
			mu.Lock()
			switch stage {
			case 1:
				// PreEnqueue read rv1; the informer stores rv2 and runs
				// its handler, which finds no parked pod yet.
				stage = 2
				current = rv2
				mu.Unlock()
				f.release.volumeChanged(rv2)
				return rv1, true
			case 2:
				runReads++
				if runReads < 2 {
					read := current
					mu.Unlock()
					return read, true
				}
				// The run loop's resolve read rv2; the PV is fixed now and
				// its handler takes the lot's entry before the re-park.
				stage = 3
				current = rv3
				mu.Unlock()
				go func() { defer close(h3done); f.release.volumeChanged(rv3) }()
				select {
				case <-h3in:
				case <-time.After(3 * time.Second):
				}
				return rv2, true
			case 3:
				mu.Unlock()
				select {
				case <-h3in:
				default:
					close(h3in)
					// The run loop re-parks meanwhile.
					for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
						if e, ok := f.parking.lot.get(pod.UID); !ok || e.key != parkedK1 {
							break
						}
					}
				}
				return rv3, true
			}
			read := current
			mu.Unlock()
			return read, true
		},
	}
	f = newReleaseRig(t, lookup, makeNode("n1").Obj())
	f.release.claimChanged(claim, false) // the PVC informer's add: indexed
	if err := f.indexer.Add(pod); err != nil {
		t.Fatal(err)
	}
	_, parkedK1 = f.verdicts.requirements(pod) // the key of rv1
	f.verdicts.forget(pod.UID)
	go f.release.run(f.ctx)
	mu.Lock()
	stage = 1
	mu.Unlock()
	if s := f.pl.PreEnqueue(f.ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue: %v, want the pod parked on rv1", s)
	}
	select {
	case <-h3done:
	case <-time.After(5 * time.Second):
		t.Fatal("setup: the run loop never judged the pod again (recheckClaims)")
	}
	if v, _, _ := f.verdicts.judge(pod); v.Hopeless {
		t.Fatalf("setup: the pod is still hopeless against the fixed PV: %s", v.Message)
	}
	time.Sleep(200 * time.Millisecond)
	if e, parked := f.parking.lot.get(pod.UID); parked {
		t.Logf("still parked: key of rv1 %v, entry's key %v (re-parked by the run loop on rv2)", parkedK1 == e.key, e.key)
	}
	waitFor(t, 3*time.Second, "the pod released", func() bool {
		_, parked := f.parking.lot.get(pod.UID)
		return !parked && f.activator.has("default/db-0")
	})
}

// TestReview22ClaimIndexHolds (passes): the volumeName index follows a
// claim deleted (also via a tombstone carrying a stale volumeName) and
// re-created under the same name on another PV, a claim unbound, and a
// relist's update that moves it; no entry is left behind.
func TestReview22ClaimIndexHolds(t *testing.T) {
	f := newReleaseRig(t, shapes.VolumeLookup{
		Claim: func(string, string) (*v1.PersistentVolumeClaim, bool) { return nil, false },
		PV:    func(string) (*v1.PersistentVolume, bool) { return nil, false },
	})
	r := f.release
	r.claimChanged(boundClaim("c", "pv-a"), false)
	r.claimChanged(boundClaim("c", "pv-zzz"), true) // tombstone, stale volumeName
	if r.claimsNaming("pv-a").Len() != 0 || len(r.volumeOfClaim) != 0 || len(r.claimsOfVolume) != 0 {
		t.Fatalf("after delete: %v %v", r.claimsOfVolume, r.volumeOfClaim)
	}
	r.claimChanged(boundClaim("c", "pv-b"), false)
	r.claimChanged(boundClaim("c", "pv-c"), false) // relist: re-created meanwhile
	if !r.claimsNaming("pv-c").Has("default/c") || r.claimsNaming("pv-b").Len() != 0 {
		t.Fatalf("after move: %v", r.claimsOfVolume)
	}
	r.claimChanged(boundClaim("c", ""), false)
	if len(r.volumeOfClaim) != 0 || len(r.claimsOfVolume) != 0 {
		t.Fatalf("after unbind: %v %v", r.claimsOfVolume, r.volumeOfClaim)
	}
	r.volumeChanged(&v1.PersistentVolume{}) // odd PV: no name, no claimRef
}
