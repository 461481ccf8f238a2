package split_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ballast-k8s/ballast/internal/split"
)

// liftRace runs, once, between a split's read of the other splits' AMI
// records and its DisableImageDeregistrationProtection, what another
// process (another cluster's az-balancer) does in that time.
type liftRace struct {
	split.Cloud
	between func() bool // reports whether it ran
}

func (c *liftRace) SetImageProtection(ctx context.Context, id string, on bool) error {
	if !on && c.between != nil && c.between() {
		c.between = nil
	}
	return c.Cloud.SetImageProtection(ctx, id, on)
}

// TestReview11eAMILiftRacesAnotherSplitsRecord (review 11e, against
// 9b02441, review 11d #1): the lift of an AMI's deregistration protection
// reads which other splits record the AMI (imagesOfOtherSplits,
// DescribeAutoScalingGroups), then disables it
// (API_DisableImageDeregistrationProtection), two calls with nothing
// between them that the other split can see. Another cluster's
// az-balancer splitting another group of the same AMI, in between,
// finds the AMI protected and recorded by this split, records it too,
// "enables" it (a no-op: already protected) and detaches its batch
// (recordImages says this is "so that neither lifts it under the
// other's batch"). This split then disables it on its stale read: the
// AMI is unprotected while the other split's batch is detached, EC2 lets
// the image pipeline deregister it (API_EnableImageDeregistrationProtection:
// only "When deregistration protection is enabled, the AMI can't be
// deregistered."), and AttachInstances refuses the batch for every group
// (user guide, ec2-auto-scaling-detach-attach-instances: "The AMI used to
// launch the instance must still exist."). Nothing re-enables it before
// that batch is attached: recordImages runs only for the next batch. The
// window is short (one pass's two calls), so the severity is low; a
// re-read after the lift (and re-enable if another split now records the
// AMI), or the other split checking the protection again after its
// detach, closes it.
func TestReview11eAMILiftRacesAnotherSplitsRecord(t *testing.T) {
	ctx := context.Background()
	w := newSharedAMI(t, inCluster("staging"))
	ami := w.ami
	stagingSplitter := w.splitterOf(w.cloud, "staging", "run-staging")
	raced := ""
	race := &liftRace{Cloud: w.cloud}
	race.between = func() bool {
		// Only at the lift after prod's last batch: before, prod's next
		// batch protects the AMI again in the same pass.
		for _, i := range w.emu.AllInstances() {
			if i.Group == "cassandra" && i.EC2State == "running" {
				return false
			}
		}
		// The other cluster's passes, until its batch is on its way.
		t.Logf("prod's split of cassandra lifts the protection of %s", ami)
		for pass := range 10 {
			res, err := stagingSplitter.Pass(ctx, "kafka")
			if err != nil {
				t.Logf("staging pass %d of kafka: %v", pass, err)
			}
			t.Logf("staging pass %d: %d steps, waiting %v", pass, len(res.Steps), res.Waiting)
			if len(res.Steps) == 0 {
				w.clock.Step(split.DefaultLockSettle) // only if its lock had to be claimed again
			}
			if m := w.moving(); m != "" {
				raced = m
				return true
			}
		}
		return true
	}
	// Staging's split of kafka started earlier: its lock is claimed (and
	// settles while prod's split runs).
	if _, err := stagingSplitter.Pass(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	prod := w.splitter(race, "run")
	w.run(ctx, prod, "cassandra", 60, split.DefaultLockSettle, func(pass int, _ split.Result, err error) bool {
		if err != nil {
			t.Logf("prod pass %d of cassandra: %v", pass, err)
		}
		return raced != ""
	})
	if raced == "" {
		t.Fatalf("the race never ran: prod's split of cassandra lifted no AMI protection, or staging's kafka batch never left (kafka moving: %q)", w.moving())
	}
	// The image pipeline deregisters the AMI whenever EC2 lets it, while
	// staging's batch is on its way; both splits carry on.
	deregistered := ""
	for pass := range 60 {
		if m := w.pipelineDeregisters(); m != "" {
			deregistered = fmt.Sprintf("after staging's pass %d, while its kafka instance %s was on its way", pass, m)
		}
		w.passEach(ctx, t, pass, splitOf{prod, "cassandra"}, splitOf{stagingSplitter, "kafka"})
		w.clock.Step(split.DefaultLockSettle)
	}
	if deregistered != "" {
		t.Errorf("EC2 deregistered %s %s: staging's split recorded and enabled its protection, but prod's split of cassandra lifted it on a read of the other splits taken before staging recorded it", ami, deregistered)
	}
	w.checkNoneLoose(t, "after 60 more passes of each split")
}
