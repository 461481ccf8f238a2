package hopeless

// Review 21: tests for 4c64764 (a PV update whose claimRef changed also
// re-judges the parked pods of the claim it was bound to). The two
// marked "(fails)" were fixed in cbc4e67.

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// boundClaim is claim default/name, fully bound to PV pv.
func boundClaim(name, pv string) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
}

// updatePV reads PV name, applies change, bumps its resourceVersion to rv
// (the fake does not) and writes it.
func updatePV(t *testing.T, f *testPlugin, name, rv string, change func(*v1.PersistentVolume)) {
	t.Helper()
	pv, err := f.client.CoreV1().PersistentVolumes().Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv.ResourceVersion = rv
	change(pv)
	if _, err := f.client.CoreV1().PersistentVolumes().Update(f.ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func fixAffinity(pv *v1.PersistentVolume) {
	pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values = []string{"n1"}
}

// TestReview21PVFixedWhileClaimRefElsewhereReleases (fails): VolumeBinding
// (checkBoundClaims) reads a fully bound claim's PV by the claim's
// spec.volumeName and checks only its node affinity, whatever the PV's
// claimRef says. volumeChanged finds the parked pods through the PV's
// claimRef only (the new one, and since 4c64764 the old one when the same
// update changed it), so a PV whose affinity is fixed in an update that
// does not itself move the claimRef away from the claim releases nobody
// when its claimRef is nil or names another claim at that time:
//   - "cleared, then fixed": the claimRef cleared in one update (the claim
//     re-judged, still hopeless: the affinity is still wrong), the affinity
//     fixed in the next. The fix of 4c64764 covers only both in one update.
//   - "names another claim": the PV's claimRef names default/other while
//     default/data-db-0 is fully bound to it (phase Bound).
//
// The pod stays parked until the queue's five-minute flush. (With a PV
// controller running, a nil claimRef is re-set to the claim within its
// sync period and a claim misbound to a PV of another claim turns Lost,
// which VolumeBinding rejects at PreFilter: both are windows, not forever.)
func TestReview21PVFixedWhileClaimRefElsewhereReleases(t *testing.T) {
	for name, tc := range map[string]struct {
		pv     func() *v1.PersistentVolume
		change func(t *testing.T, f *testPlugin)
	}{
		"cleared, then fixed": {
			pv: func() *v1.PersistentVolume { return localPV("pv-0", "data-db-0", "gone-node") },
			change: func(t *testing.T, f *testPlugin) {
				updatePV(t, f, "pv-0", "2", func(pv *v1.PersistentVolume) { pv.Spec.ClaimRef = nil })
				lister := f.handle.SharedInformerFactory().Core().V1().PersistentVolumes().Lister()
				waitFor(t, 5*time.Second, "the cleared claimRef reached the informer", func() bool {
					pv, err := lister.Get("pv-0")
					return err == nil && pv.ResourceVersion == "2"
				})
				time.Sleep(100 * time.Millisecond) // the handler of the first update ran
				updatePV(t, f, "pv-0", "3", fixAffinity)
			},
		},
		"names another claim": {
			pv: func() *v1.PersistentVolume { return localPV("pv-0", "other", "gone-node") },
			change: func(t *testing.T, f *testPlugin) {
				updatePV(t, f, "pv-0", "2", fixAffinity)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newTestPlugin(t, "", makeNode("n1").Obj(), tc.pv(), boundClaim("data-db-0", "pv-0"))
			activator := &recordingActivator{}
			f.setActivator(activator)
			pod := podWithClaim("db-0", "data-db-0")
			f.parkViaPreEnqueue(t, pod)
			tc.change(t, f)
			lister := f.handle.SharedInformerFactory().Core().V1().PersistentVolumes().Lister()
			waitFor(t, 5*time.Second, "the fixed PV reached the informer", func() bool {
				pv, err := lister.Get("pv-0")
				return err == nil && pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] == "n1"
			})
			if v, _, ok := f.plugin.verdicts.judge(pod); !ok || v.Hopeless {
				t.Fatalf("setup: judged against the fixed PV the pod is %+v (ok %v), want it placeable", v, ok)
			}
			waitFor(t, 5*time.Second, "the pod released", func() bool { return !f.parked(pod) && activator.has("default/db-0") })
		})
	}
}

// TestReview21PVFixedWhileJudgedReleases (fails): a PV change that lands
// between a judge's read of the PV and the park of the pod it judged is
// lost. PreEnqueue (the queue's goroutine) reads the PV with its wrong
// affinity; the PV informer then stores the fixed PV and runs
// volumeChanged, which finds no parked pod of the claim (not parked yet);
// PreEnqueue then parks the pod on its stale verdict. parkJudged asks for a
// re-check only when the node store's generations moved; claim and PV
// changes move no generation, so nothing judges the pod again until the
// queue's flush. Node changes are covered this way, claims and PVs are not.
func TestReview21PVFixedWhileJudgedReleases(t *testing.T) {
	bad := localPV("pv-0", "data-db-0", "gone-node")
	bad.ResourceVersion = "1"
	fixed := bad.DeepCopy()
	fixed.ResourceVersion = "2"
	fixAffinity(fixed)
	claim := boundClaim("data-db-0", "pv-0")
	claim.ResourceVersion = "1"

	current := bad
	var f *releaseRig
	armed := false
	lookup := shapes.VolumeLookup{
		Claim: onlyClaim(claim),
		PV: func(name string) (*v1.PersistentVolume, bool) {
			if name != "pv-0" {
				return nil, false
			}
			read := current
			if armed {
				// The informer stores the fixed PV right after this read
				// and runs its update handler.
				armed = false
				current = fixed
				f.release.volumeChanged(fixed)
			}
			return read, true
		},
	}
	f = newReleaseRig(t, lookup, makeNode("n1").Obj())
	go f.release.run(f.ctx)
	pod := podWithClaim("db-0", "data-db-0")
	if err := f.indexer.Add(pod); err != nil {
		t.Fatal(err)
	}
	armed = true
	if s := f.pl.PreEnqueue(f.ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue: %v, want the pod judged on the PV it read (hopeless)", s)
	}
	if v, _, _ := f.verdicts.judge(pod); v.Hopeless {
		t.Fatalf("setup: the pod is still hopeless against the fixed PV: %s", v.Message)
	}
	waitFor(t, 3*time.Second, "the pod released", func() bool {
		_, parked := f.parking.lot.get(pod.UID)
		return !parked && f.activator.has("default/db-0")
	})
}

// TestReview21ClaimRefChangesHold (passes): what 4c64764 handles holds
// through the real informers:
//   - the claimRef moved to a claim of another namespace in the update
//     that fixes the affinity releases the old claim's pod;
//   - the PV deleted (its claim's pod no longer carries its affinity:
//     VolumeBinding reports the PV missing, not a node conflict) releases
//     it, and the PV re-created under its name, fixed and unbound, parks
//     nobody again;
//   - a claimRef moved from one parked claim to another, both still
//     hopeless, activates nobody (no release storm), and odd PVs (nil
//     claimRef before and after, nil nodeAffinity) crash nothing.
func TestReview21ClaimRefChangesHold(t *testing.T) {
	t.Run("moved to another namespace with the fix", func(t *testing.T) {
		f, activator, pod := parkedOnGoneNode(t)
		updatePV(t, f, "pv-0", "2", func(pv *v1.PersistentVolume) {
			pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "elsewhere", Name: "data-db-0"}
			fixAffinity(pv)
		})
		waitFor(t, 5*time.Second, "the pod released", func() bool { return !f.parked(pod) && activator.has("default/db-0") })
	})
	t.Run("deleted, re-created fixed", func(t *testing.T) {
		f, activator, pod := parkedOnGoneNode(t)
		if err := f.client.CoreV1().PersistentVolumes().Delete(f.ctx, "pv-0", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the pod released", func() bool { return !f.parked(pod) && activator.has("default/db-0") })
		pv := localPV("pv-0", "", "n1")
		pv.Spec.ClaimRef = nil
		pv.ResourceVersion = "5"
		if _, err := f.client.CoreV1().PersistentVolumes().Create(f.ctx, pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		lister := f.handle.SharedInformerFactory().Core().V1().PersistentVolumes().Lister()
		waitFor(t, 5*time.Second, "the re-created PV reached the informer", func() bool { _, err := lister.Get("pv-0"); return err == nil })
		if s := f.plugin.PreEnqueue(f.ctx, pod); !s.IsSuccess() {
			t.Errorf("PreEnqueue against the re-created, fixed PV: %v", s)
		}
	})
	t.Run("moved between two hopeless claims, odd PVs", func(t *testing.T) {
		odd := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "odd"}}
		f := newTestPlugin(t, "", makeNode("n1").Obj(), localPV("pv-0", "data-db-0", "gone-node"), localPV("pv-1", "data-db-1", "gone-node"),
			boundClaim("data-db-0", "pv-0"), boundClaim("data-db-1", "pv-1"), odd)
		activator := &recordingActivator{}
		f.setActivator(activator)
		p0, p1 := podWithClaim("db-0", "data-db-0"), podWithClaim("db-1", "data-db-1")
		f.parkViaPreEnqueue(t, p0)
		f.parkViaPreEnqueue(t, p1)
		updatePV(t, f, "pv-0", "2", func(pv *v1.PersistentVolume) { pv.Spec.ClaimRef.Name = "data-db-1" })
		updatePV(t, f, "odd", "2", func(pv *v1.PersistentVolume) { pv.Labels = map[string]string{"a": "b"} })
		if err := f.client.CoreV1().PersistentVolumes().Delete(f.ctx, "odd", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		lister := f.handle.SharedInformerFactory().Core().V1().PersistentVolumes().Lister()
		waitFor(t, 5*time.Second, "the updates reached the informer", func() bool {
			pv, err := lister.Get("pv-0")
			_, oddErr := lister.Get("odd")
			return err == nil && pv.ResourceVersion == "2" && oddErr != nil
		})
		time.Sleep(200 * time.Millisecond)
		if !f.parked(p0) || !f.parked(p1) || len(activator.activated()) != 0 {
			t.Errorf("parked %v %v, activated %v; want both parked, none activated", f.parked(p0), f.parked(p1), activator.activated())
		}
	})
}

// onlyClaim looks up claim as default/data-db-0, and no other.
func onlyClaim(claim *v1.PersistentVolumeClaim) func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
	return func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
		if ns+"/"+name == "default/data-db-0" {
			return claim, true
		}
		return nil, false
	}
}

// parkedOnGoneNode parks db-0, whose claim data-db-0 is bound to pv-0 on a
// node that is gone, in a plugin with node n1 and a recording activator.
func parkedOnGoneNode(t *testing.T) (*testPlugin, *recordingActivator, *v1.Pod) {
	t.Helper()
	f := newTestPlugin(t, "", makeNode("n1").Obj(), localPV("pv-0", "data-db-0", "gone-node"), boundClaim("data-db-0", "pv-0"))
	activator := &recordingActivator{}
	f.setActivator(activator)
	pod := podWithClaim("db-0", "data-db-0")
	f.parkViaPreEnqueue(t, pod)
	return f, activator, pod
}
