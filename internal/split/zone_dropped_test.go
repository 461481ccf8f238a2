package split_test

import (
	"testing"

	"github.com/ballast-k8s/ballast/internal/split"
)

// TestZoneDroppedWithItsBatchOnlyOnItsRecords (beside review 14a's
// TestReview14aZoneDroppedWithItsBatchInFlight): the batch's zone is
// dropped from the group while the batch is detaching, and a late write
// put TagState back to "started" (the case of the per-instance records,
// step 4b). The records still name the zone, so its per-zone group is
// described and the instances are taken back on record and attached to
// it, though the group no longer lists the zone: none runs in no group,
// and each ends InService in its zone's group.
func TestZoneDroppedWithItsBatchOnlyOnItsRecords(t *testing.T) {
	ctx, w, s, mi := newLeavingWorld(t)
	if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagState: "started"}); err != nil {
		t.Fatal(err)
	}
	w.dropZone(ctx, t, mi.Zone)
	w.passes(ctx, t, s, 40)
	w.checkNoneLoose(t, "40 passes after the batch's zone was dropped and its TagState overwritten")
	zg := split.ZoneGroupName("cassandra", mi.Zone)
	for _, id := range w.ids[mi.Zone] {
		i, _ := w.emu.Instance(id)
		if i.Group != zg || i.LifecycleState != "InService" {
			t.Errorf("instance %s of the dropped zone %s is %s in %q, want InService in %s", id, mi.Zone, i.LifecycleState, i.Group, zg)
		}
		if g, _ := w.emu.Group("cassandra"); g.Tags[split.TagRecordPrefix+id] != "" {
			t.Errorf("instance %s is still recorded on cassandra (%s)", id, g.Tags[split.TagRecordPrefix+id])
		}
	}
}
