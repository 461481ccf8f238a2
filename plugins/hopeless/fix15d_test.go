package hopeless

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

// TestFix15dRecheckJudgesADriftedPodOnItsOwn: a pod whose key drifted while
// parked (its claim bound, and no claim event seen by the release path) is
// still under its old lot key; the re-check must neither apply its verdict
// to the key's other pods nor theirs to it, whichever it picks.
func TestFix15dRecheckJudgesADriftedPodOnItsOwn(t *testing.T) {
	for trial := range 6 {
		f, vols, pods := newDBRig(t, 2)
		vols.bind("data-db-0", "pv-db-0", "zone-a") // no claimChanged: its key drifts in the lot
		f.release.nodeChanged(nil, makeNode("db-node-1").Label("pool", "db").Label(v1.LabelTopologyZone, "zone-b").Obj())
		f.release.recheckParked(f.logger)
		if !f.activator.has("default/db-1") {
			t.Fatalf("trial %d: db-1 fits the new node but was not activated", trial)
		}
		if f.activator.has("default/db-0") {
			t.Fatalf("trial %d: db-0 (its zone-a volume) was activated", trial)
		}
		got, parked := f.parking.lot.get(pods[0].UID)
		_, key, _ := f.verdicts.judge(pods[0])
		if !parked || got.key != key {
			t.Fatalf("trial %d: db-0 parked=%v under key %v, want parked under its current key %v (%q)", trial, parked, got.key, key, got.message)
		}
	}
}
