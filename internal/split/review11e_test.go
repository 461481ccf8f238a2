package split_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
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
	const ami = "ami-shared-node"
	w := newSplitWorld(t, func(g *awstest.GroupSpec) { g.ImageID = ami })
	staging := map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/staging": "owned"}
	kafka := w.emu.CreateGroup(awstest.GroupSpec{Name: "kafka", Zones: zones, MinSize: 0, MaxSize: 10, InstanceType: "i3.xlarge",
		Tags: staging, ImageID: ami, Instances: map[string]int{zones[0]: 3, zones[1]: 1, zones[2]: 1}})
	var kafkaIDs []string
	for _, z := range zones {
		kafkaIDs = append(kafkaIDs, kafka[z]...)
	}
	kafkaMoving := func() string {
		for _, id := range kafkaIDs {
			i, _ := w.emu.Instance(id)
			if i.EC2State == "running" && (i.LifecycleState == "Detaching" || i.Group == "") {
				return fmt.Sprintf("%s (%s, group %q)", id, i.LifecycleState, i.Group)
			}
		}
		return ""
	}
	stagingSplitter := split.New(w.cloud, w.clock, split.Options{Selector: asg.AutoDiscovery("staging"), Owner: "run-staging"})
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
			if m := kafkaMoving(); m != "" {
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
	for pass := range 60 {
		if _, err := prod.Pass(ctx, "cassandra"); err != nil {
			t.Logf("prod pass %d of cassandra: %v", pass, err)
		}
		if raced != "" {
			break
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if raced == "" {
		t.Fatalf("the race never ran: prod's split of cassandra lifted no AMI protection, or staging's kafka batch never left (kafka moving: %q)", kafkaMoving())
	}
	// The image pipeline deregisters the AMI whenever EC2 lets it, while
	// staging's batch is on its way; both splits carry on.
	deregistered := ""
	logged := map[string]bool{}
	for pass := range 60 {
		if m := kafkaMoving(); m != "" && deregistered == "" && !w.emu.ImageProtected(ami) {
			if err := w.emu.DeregisterImage(ami); err == nil {
				deregistered = fmt.Sprintf("after staging's pass %d, while its kafka instance %s was on its way", pass, m)
			}
		}
		for _, p := range []struct {
			s     *split.Splitter
			group string
		}{{prod, "cassandra"}, {stagingSplitter, "kafka"}} {
			if _, err := p.s.Pass(ctx, p.group); err != nil && !logged[requestID.ReplaceAllString(err.Error(), "")] {
				logged[requestID.ReplaceAllString(err.Error(), "")] = true
				t.Logf("pass %d of %s: %v", pass, p.group, err)
			}
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if deregistered != "" {
		t.Errorf("EC2 deregistered %s %s: staging's split recorded and enabled its protection, but prod's split of cassandra lifted it on a read of the other splits taken before staging recorded it", ami, deregistered)
	}
	w.checkNoneLoose(t, "after 60 more passes of each split")
}
