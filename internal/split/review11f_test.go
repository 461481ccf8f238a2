package split_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// ownedRace runs, once, right after a split reads that an AMI is already
// protected from deregistration (OwnedImages, DescribeImages), what
// another process does before that split reads the other splits' records.
type ownedRace struct {
	split.Cloud
	ami     string
	between func() bool // reports whether it ran
}

func (c *ownedRace) OwnedImages(ctx context.Context, ids []string) (map[string]bool, error) {
	out, err := c.Cloud.OwnedImages(ctx, ids)
	if err == nil && out[c.ami] && c.between != nil && c.between() {
		c.between = nil
	}
	return out, err
}

// TestReview11fAMIRecordRacesAnotherSplitsLift (review 11f, against
// da44af4, review 11e #3): da44af4 closed the lifter's side of the race
// ("Record, then enable, on its side; lift, then read, on this one: one
// of the two sees the other"), but recordImages does not record first: for
// an AMI it finds already protected (OwnedImages) it reads the other
// splits' records and, when none records the AMI, takes the protection
// for someone else's ("theirs to lift") and neither records nor enables
// it. Another cluster's split that lifts the AMI between those two reads
// (its last batch attached: it reads the records, finds none, disables
// the protection, reads again, finds none, deletes its split-images tag)
// leaves it unprotected, and this split detaches its batch anyway: nothing
// re-enables it (snapshot's re-enable covers only the AMIs the split
// recorded). The image pipeline deregisters the AMI while the batch is
// detached (API_EnableImageDeregistrationProtection: only "When
// deregistration protection is enabled, the AMI can't be deregistered."),
// and AttachInstances refuses the batch for every group (user guide,
// ec2-auto-scaling-detach-attach-instances: "The AMI used to launch the
// instance must still exist."): the instances run in no group.
func TestReview11fAMIRecordRacesAnotherSplitsLift(t *testing.T) {
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
	prodImages := func() string {
		g, _ := w.emu.Group("cassandra")
		return g.Tags[split.TagImages]
	}
	race := &ownedRace{Cloud: w.cloud, ami: ami}
	stagingSplitter := split.New(race, w.clock, split.Options{Selector: asg.AutoDiscovery("staging"), Owner: "run-staging"})
	// Staging's split of kafka claims its lock first.
	if _, err := stagingSplitter.Pass(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	// Prod's split of cassandra, until its last batch is on its way (the
	// AMI protected and recorded by prod alone).
	prod := w.splitter(w.cloud, "run")
	last := false
	for pass := range 60 {
		if _, err := prod.Pass(ctx, "cassandra"); err != nil {
			t.Logf("prod pass %d of cassandra: %v", pass, err)
		}
		inService := 0
		for _, i := range w.emu.AllInstances() {
			if i.Group == "cassandra" && i.LifecycleState == "InService" {
				inService++
			}
		}
		if inService == 0 && w.emu.ImageProtected(ami) && prodImages() != "" {
			last = true
			break
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if !last {
		t.Fatal("prod's split of cassandra never had its last batch on its way")
	}
	raced := false
	race.between = func() bool {
		// Prod's passes until it lifted the protection and deleted its record.
		for pass := range 20 {
			if _, err := prod.Pass(ctx, "cassandra"); err != nil {
				t.Logf("prod pass %d of cassandra (during staging's pass): %v", pass, err)
			}
			if !w.emu.ImageProtected(ami) && prodImages() == "" {
				t.Logf("prod lifted the protection of %s after staging read it protected", ami)
				raced = true
				return true
			}
			w.clock.Step(split.DefaultLockSettle)
		}
		return false
	}
	for pass := range 20 {
		res, err := stagingSplitter.Pass(ctx, "kafka")
		if err != nil {
			t.Logf("staging pass %d of kafka: %v", pass, err)
		}
		t.Logf("staging pass %d: %d steps, waiting %v", pass, len(res.Steps), res.Waiting)
		if kafkaMoving() != "" {
			break
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if !raced {
		t.Fatalf("the race never ran (kafka moving: %q, AMI protected: %t)", kafkaMoving(), w.emu.ImageProtected(ami))
	}
	if m := kafkaMoving(); m != "" && !w.emu.ImageProtected(ami) {
		t.Errorf("staging's kafka instance %s is on its way while %s is not protected from deregistration", m, ami)
	}
	// The image pipeline deregisters the AMI whenever EC2 lets it, while
	// staging's batch is on its way; both splits carry on.
	deregistered := ""
	for pass := range 40 {
		if m := kafkaMoving(); m != "" && deregistered == "" && !w.emu.ImageProtected(ami) {
			if err := w.emu.DeregisterImage(ami); err == nil {
				deregistered = m
			}
		}
		for _, p := range []struct {
			s     *split.Splitter
			group string
		}{{prod, "cassandra"}, {stagingSplitter, "kafka"}} {
			if _, err := p.s.Pass(ctx, p.group); err != nil && pass < 3 {
				t.Logf("pass %d of %s: %v", pass, p.group, requestID.ReplaceAllString(err.Error(), ""))
			}
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if deregistered != "" {
		t.Errorf("EC2 deregistered %s while staging's kafka instance %s was on its way", ami, deregistered)
	}
	w.checkNoneLoose(t, "after 40 more passes of each split")
}

// TestReview11fRefusalMidSplitStrandsTheBatchInFlight (review 11f, against
// aabbe85/17c2170, the refusals wrapped in ErrRefused): steps refuses a
// group with a launch hook whose DefaultResult is ABANDON on every pass,
// whatever the split's state, before it looks at the batch in flight. A
// launch hook added to the split group while a batch is detaching (a
// bootstrap hook rolled out by the platform team, in the hour a split
// takes) makes every later pass return ErrRefused: the batch, already
// detached, is never attached, and its instances run in no group, outside
// cluster-autoscaler's view, with their local data (issue 11 #1: "every
// batch stays recorded until it is attached"). The loop reports the
// refusal as SplitBlocked and does not fail (review 11c #6), so nothing
// but an event says so. The zone groups were created with the hooks the
// split group had then; the new hook reaches them only through step 3,
// which the refusal also skips, so attaching the batch in flight is no
// more dangerous than it was before the hook was added.
//
// The same holds for the split's own sizes tag edited into something the
// split cannot read while a batch is detaching: the batch is attached,
// then the split waits, refused, for the tag to be fixed.
//
// Review 14a: the launch hook is no longer refused at all (an attached
// instance goes through no lifecycle hook: user guide, lifecycle-hooks,
// "Lifecycle hook availability", footnote 1, "Does not apply when you
// attach or detach instances"); its row keeps its scenario and now wants
// the split finished with nothing lost, where it wanted a refusal once the
// batch in flight was attached.
func TestReview11fRefusalMidSplitStrandsTheBatchInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(ctx context.Context, w *splitWorld) error
		refused bool // the split stops, refused, once the batch in flight is attached
	}{
		{name: "a launch hook with DefaultResult ABANDON", change: func(ctx context.Context, w *splitWorld) error {
			// The platform team adds a bootstrap launch hook to the group.
			return w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING",
				HeartbeatTimeout: 300, DefaultResult: "ABANDON"})
		}},
		{name: "a malformed split-sizes tag", change: func(ctx context.Context, w *splitWorld) error {
			return w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagSizes: "min=3;max=10"})
		}, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, w, s, _ := newLeavingWorld(t)
			if err := tc.change(ctx, w); err != nil {
				t.Fatal(err)
			}
			if !tc.refused {
				if res, err := w.passUntilDone(ctx, t, s, "cassandra", 100); !res.Done || err != nil {
					t.Errorf("the split is not done 100 passes after %s mid-split (waiting %v, last error %v)", tc.name, res.Waiting, err)
				}
				w.checkNothingLost(t)
				return
			}
			if last := w.passes(ctx, t, s, 20); !errors.Is(last, split.ErrRefused) {
				t.Errorf("last pass: %v, want a refusal (ErrRefused) once the batch in flight is attached", last)
			}
			w.checkNoneLoose(t, "20 passes after "+tc.name+" mid-split")
		})
	}
}

// TestReview11fSplitDoneWithAnInstanceInARemovedZone (review 11f): the
// balancer suspends AZRebalance on every multi-zone group, and the split
// suspends it too; the user guide (suspend-resume-considerations) says
// "If you suspend the Launch and Terminate processes, or AZRebalance, and
// then you make changes to your Auto Scaling group, for example, by ...
// changing the Availability Zones that are specified, your group can
// become unbalanced": an operator who drops a zone (a subnet) from the
// group leaves its instances running in that zone, still members of the
// group. The split takes its zones from the group's AvailabilityZones
// (snapshot) and batches, per zone, only the instances of those zones:
// an instance of a zone no longer listed is never moved, never counted as
// blocked, and the split ends "done": the group is emptied to max 0, its
// discovery tags deleted (cluster-autoscaler and the balancer forget it)
// while the instance still runs in it with its data, outside both views.
func TestReview11fSplitDoneWithAnInstanceInARemovedZone(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	if err := w.cloud.SuspendProcesses(ctx, "cassandra", asg.ProcessAZRebalance); err != nil {
		t.Fatal(err)
	}
	asc := w.rawAutoscaling(nil)
	if _, err := asc.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: awssdk.String("cassandra"),
		AvailabilityZones: zones[:2]}); err != nil {
		t.Fatal(err)
	}
	left := w.ids[zones[2]][0]
	if i, _ := w.emu.Instance(left); i.Group != "cassandra" || i.EC2State != "running" {
		t.Fatalf("instance %s of the dropped zone is %s in %q, want running in cassandra", left, i.EC2State, i.Group)
	}
	res, err := w.passUntilDone(ctx, t, w.splitter(w.cloud, "run"), "cassandra", 100)
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	g, _ := w.emu.Group("cassandra")
	i, _ := w.emu.Instance(left)
	if res.Done && i.Group == "cassandra" && i.EC2State == "running" {
		t.Errorf("the split of cassandra is done (max %d, tags %v) while instance %s of zone %s, dropped from the group's zones, still runs in it: no per-zone group took it and nothing discovers the group any more",
			g.MaxSize, g.Tags, left, zones[2])
	}
}
