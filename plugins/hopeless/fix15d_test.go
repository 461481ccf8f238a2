package hopeless

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestFix15dRecheckJudgesADriftedPodOnItsOwn: a pod whose key drifted while
// parked (its claim bound, and no claim event seen by the release path) is
// still under its old lot key; the re-check must neither apply its verdict
// to the key's other pods nor theirs to it, whichever it picks.
func TestFix15dRecheckJudgesADriftedPodOnItsOwn(t *testing.T) {
	for trial := range 6 {
		opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
		opts.IdentityLabels = sets.New(v1.LabelHostname)
		store := shapes.NewStore(opts, false)
		store.UpsertNode(makeNode("web-1").Label("pool", "web").Label(v1.LabelTopologyZone, "zone-a").Obj())
		vols := newReview15dVolumes()
		verdicts := newVerdictCache(store, vols.lookup(), func() bool { return true }, clock.RealClock{})
		parking := &parker{lot: newParkingLot(), reporter: &recordingReporter{}}
		logger, ctx := ktesting.NewTestContext(t)
		indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		activator := &recordingActivator{}
		release := newReleaser(store, verdicts, parking, activator, corelisters.NewPodLister(indexer), func() bool { return true }, logger)
		pl := &HopelessPods{gateAtPreEnqueue: true, verdicts: verdicts, parking: parking, recheck: release.requestRecheck}
		var pods []*v1.Pod
		for i := range 2 {
			p := makePod(fmt.Sprintf("db-%d", i)).NodeSelector(map[string]string{"pool": "db"}).PVC(fmt.Sprintf("data-db-%d", i)).Obj()
			if err := indexer.Add(p); err != nil {
				t.Fatal(err)
			}
			if s := pl.PreEnqueue(ctx, p); s.Code() != fwk.UnschedulableAndUnresolvable {
				t.Fatalf("setup: PreEnqueue of %s: %v, want parked", p.Name, s)
			}
			pods = append(pods, p)
		}
		vols.bind("data-db-0", "pv-db-0", "zone-a") // no claimChanged: its key drifts in the lot
		release.nodeChanged(nil, makeNode("db-node-1").Label("pool", "db").Label(v1.LabelTopologyZone, "zone-b").Obj())
		release.recheckParked(logger)
		if !activator.has("default/db-1") {
			t.Fatalf("trial %d: db-1 fits the new node but was not activated", trial)
		}
		if activator.has("default/db-0") {
			t.Fatalf("trial %d: db-0 (its zone-a volume) was activated", trial)
		}
		got, parked := parking.lot.get(pods[0].UID)
		_, key, _ := verdicts.judge(pods[0])
		if !parked || got.key != key {
			t.Fatalf("trial %d: db-0 parked=%v under key %v, want parked under its current key %v (%q)", trial, parked, got.key, key, got.message)
		}
	}
}
