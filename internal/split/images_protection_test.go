package split_test

import (
	"context"
	"testing"

	"github.com/ballast-k8s/ballast/internal/split"
)

// TestSplitLiftsTheAMIProtectionItSets: the split enables the deregistration
// protection of a batch's AMI before DetachInstances
// (API_EnableImageDeregistrationProtection: "When deregistration protection
// is enabled, the AMI can't be deregistered.") and must lift it once the
// batch is attached: left on, it keeps the operator's image pipeline from
// ever deregistering the AMI. An AMI protected by someone else before the
// split is left protected.
func TestSplitLiftsTheAMIProtectionItSets(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s := w.splitter(w.cloud, "run")
	sawProtected := false
	res, _ := w.run(ctx, s, "cassandra", 80, split.DefaultLockSettle, func(pass int, res split.Result, err error) bool {
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		sawProtected = sawProtected || w.emu.ImageProtected("ami-cassandra")
		return res.Done
	})
	if !res.Done {
		t.Fatalf("the split did not finish: waiting %q", res.Waiting)
	}
	if !sawProtected {
		t.Errorf("ami-cassandra was never protected from deregistration while a batch was detached")
	}
	if w.emu.ImageProtected("ami-cassandra") {
		t.Errorf("ami-cassandra is still protected from deregistration after the split")
	}
	if g, _ := w.emu.Group("cassandra"); g.Tags[split.TagImages] != "" {
		t.Errorf("the split group still carries %s=%q", split.TagImages, g.Tags[split.TagImages])
	}
}
