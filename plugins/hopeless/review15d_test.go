package hopeless

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// review15dVolumes is a claim and PV view the test changes as the PV
// controller and the informers would.
type review15dVolumes struct {
	mu     sync.Mutex
	claims map[string]*v1.PersistentVolumeClaim // namespace/name
	pvs    map[string]*v1.PersistentVolume
}

func newReview15dVolumes() *review15dVolumes {
	return &review15dVolumes{claims: map[string]*v1.PersistentVolumeClaim{}, pvs: map[string]*v1.PersistentVolume{}}
}

func (r *review15dVolumes) lookup() shapes.VolumeLookup {
	return shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			c, ok := r.claims[ns+"/"+name]
			return c, ok
		},
		PV: func(name string) (*v1.PersistentVolume, bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			p, ok := r.pvs[name]
			return p, ok
		},
	}
}

// bind has the PV controller bind claim to a zonal PV (an EBS volume of
// zone) and returns the bound claim.
func (r *review15dVolumes) bind(claim, pvName, zone string) *v1.PersistentVolumeClaim {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, ResourceVersion: "7"},
		Spec: v1.PersistentVolumeSpec{
			Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			ClaimRef: &v1.ObjectReference{Namespace: "default", Name: claim},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelTopologyZone, Operator: v1.NodeSelectorOpIn, Values: []string{zone}}},
			}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: claim, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pvName},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pvs[pvName] = pv
	r.claims["default/"+claim] = pvc
	return pvc
}

// TestReview15dRecheckAppliesOnePodsVerdictToAnotherPodsKey: the verdict
// key holds the pod's bound volumes (pvKey), so a pod's key changes when its
// claim is bound after the pod was parked. The claim handler (activate)
// re-parks the pod only when its message changed; when it did not (the pod
// fails every node at its node selector before and after the bind), the pod
// stays in the lot under the key it was parked with, beside pods whose key
// that still is. recheckParked then judges one pod per (lot key, message)
// and applies that pod's verdict to every pod of the lot key: if the pick is
// the pod whose key drifted, its verdict (hopeless because of ITS volume) is
// written onto the other pods (re-parked under its key, with a message that
// names its PV), and a pod of the lot key that the node change made
// placeable is not released.
//
// Here: a StatefulSet db selects pool=db, which no node carries yet; its
// pods are parked. The PV controller then binds the claims of db-0..db-9
// (Immediate binding) to EBS volumes in zone-a; db-10's claim is not bound
// yet. A pool=db node registers in zone-b. db-10 now fits it (its static
// predicates all pass) and must be activated; db-0..9 stay hopeless for
// their zone-a volumes. The re-check picks one of the eleven pods of the
// (key, message) group; when it is one of db-0..9 (10 times in 11), db-10
// is not activated and is re-parked with "PersistentVolume pv-db-N bound to
// claim data-db-N ..." - another pod's volume - until the queue's
// five-minute flush. (The shortcut predates 927c7f2; 927c7f2 keeps it: it
// still applies the representative's verdict to every pod of rep.key, and
// its new `key == rep.key` test only stops the skip of pods already
// carrying the message.) The test repeats the trial so that a lucky pick
// cannot hide it.
func TestReview15dRecheckAppliesOnePodsVerdictToAnotherPodsKey(t *testing.T) {
	for trial := range 4 {
		opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
		opts.IdentityLabels = sets.New(v1.LabelHostname)
		store := shapes.NewStore(opts, false)
		store.UpsertNode(makeNode("web-1").Label("pool", "web").Label(v1.LabelTopologyZone, "zone-a").Obj())
		vols := newReview15dVolumes()
		verdicts := newVerdictCache(store, vols.lookup(), func() bool { return true }, clock.RealClock{})
		reporter := &recordingReporter{}
		parking := &parker{lot: newParkingLot(), reporter: reporter}
		logger, ctx := ktesting.NewTestContext(t)
		indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		activator := &recordingActivator{}
		release := newReleaser(store, verdicts, parking, activator, corelisters.NewPodLister(indexer), func() bool { return true }, logger)
		pl := &HopelessPods{gateAtPreEnqueue: true, verdicts: verdicts, parking: parking, recheck: release.requestRecheck}

		var pods []*v1.Pod
		for i := range 11 {
			p := makePod(fmt.Sprintf("db-%d", i)).NodeSelector(map[string]string{"pool": "db"}).PVC(fmt.Sprintf("data-db-%d", i)).Obj()
			if err := indexer.Add(p); err != nil {
				t.Fatal(err)
			}
			if s := pl.PreEnqueue(ctx, p); s.Code() != fwk.UnschedulableAndUnresolvable {
				t.Fatalf("setup: PreEnqueue of %s: %v, want parked", p.Name, s)
			}
			pods = append(pods, p)
		}
		last := pods[10]
		// The PV controller binds db-0..9's claims; the claim informer
		// hands each bound claim to the release path.
		for i := range 10 {
			pvc := vols.bind(fmt.Sprintf("data-db-%d", i), fmt.Sprintf("pv-db-%d", i), "zone-a")
			release.claimChanged(pvc)
		}
		for i := range 10 {
			if !parking.lot.len0(pods[i]) {
				t.Fatalf("setup: %s released by its claim's bind; it is still hopeless", pods[i].Name)
			}
		}
		// A pool=db node registers in zone-b.
		release.nodeChanged(nil, makeNode("db-node-1").Label("pool", "db").Label(v1.LabelTopologyZone, "zone-b").Obj())
		release.recheckParked(logger)

		if v, _, ok := verdicts.judge(last); !ok || v.Hopeless {
			t.Fatalf("setup: %s's own verdict now is %+v, want it placeable", last.Name, v)
		}
		if v, _, _ := verdicts.judge(pods[0]); !v.Hopeless {
			t.Fatalf("setup: %s's own verdict now is %+v, want hopeless for its zone-a volume", pods[0].Name, v)
		}
		if !activator.has("default/" + last.Name) {
			got, parked := parking.lot.get(last.UID)
			t.Fatalf("trial %d: %s fits the new node (its claim is not bound; nodeSelector pool=db matches), but the re-check did not activate it: activated %v; it is parked=%v with\n  %q\n(the re-check judged one pod of its lot key, one whose claim was bound after it was parked, and applied that pod's verdict to the whole key)",
				trial, last.Name, activator.activated(), parked, got.message)
		}
	}
}

// len0 reports whether pod is parked (a helper that reads the lot).
func (l *parkingLot) len0(pod *v1.Pod) bool {
	_, ok := l.get(pod.UID)
	return ok
}

var _ = strings.Contains
