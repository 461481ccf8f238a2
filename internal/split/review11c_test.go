package split_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

var requestID = regexp.MustCompile(`RequestID: [^,]*`)

// TestReview11cSharedAMIProtectionLiftedUnderAnotherBatch (review 11c): two
// node groups of one cluster launch from the same AMI (one launch template,
// or the same pinned EKS AMI built by the operator's pipeline: the common
// case), and `run --enforce=split` splits both. The split of the first
// ("cassandra") enables the AMI's deregistration protection
// (API_EnableImageDeregistrationProtection: "When deregistration protection
// is enabled, the AMI can't be deregistered.") and records it in its own
// split-images tag. The split of the second ("kafka") finds the AMI already
// protected, takes it for "protected by someone else: theirs to lift", and
// records nothing. Once cassandra's batch is attached, its split lifts the
// protection (API_DisableImageDeregistrationProtection) while kafka's batch
// is still detaching: kafka has a target group, so its instances stay
// Detaching for the deregistration delay (300 s by default). The image
// pipeline then deregisters the AMI, which EC2 now allows, and
// AttachInstances refuses kafka's detached instances for every group (user
// guide, ec2-auto-scaling-detach-attach-instances: "The AMI used to launch
// the instance must still exist."): they run in no group, lost to
// cluster-autoscaler with their local data. Root cause: protectImages
// (internal/split/split.go) treats a protection another of Ballast's own
// batches set as the operator's, and the lift in steps() does not ask
// whether another group's batch still needs it.
func TestReview11cSharedAMIProtectionLiftedUnderAnotherBatch(t *testing.T) {
	ctx := context.Background()
	const ami = "ami-shared-node"
	w := newSplitWorld(t, func(g *awstest.GroupSpec) { g.ImageID = ami })
	kafka := w.emu.CreateGroup(awstest.GroupSpec{Name: "kafka", Zones: zones, MinSize: 0, MaxSize: 10, InstanceType: "i3.xlarge",
		Tags: caTags(nil), ImageID: ami, TargetGroupARNs: []string{"arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/kafka/0123456789abcdef"},
		Instances: map[string]int{zones[0]: 3, zones[1]: 1, zones[2]: 1}})
	var kafkaIDs []string
	for _, z := range zones {
		kafkaIDs = append(kafkaIDs, kafka[z]...)
	}
	s := w.splitter(w.cloud, "run")
	// kafkaMoving reports an instance of kafka's that has left (or is
	// leaving) its group and is not yet in a group of its own zone.
	kafkaMoving := func() string {
		for _, id := range kafkaIDs {
			i, _ := w.emu.Instance(id)
			if i.EC2State == "running" && (i.LifecycleState == "Detaching" || i.Group == "") {
				return fmt.Sprintf("%s (%s, group %q)", id, i.LifecycleState, i.Group)
			}
		}
		return ""
	}
	deregistered := ""
	logged := map[string]bool{}
	for pass := range 60 {
		for _, g := range []string{"cassandra", "kafka"} {
			if _, err := s.Pass(ctx, g); err != nil && !logged[requestID.ReplaceAllString(err.Error(), "")] {
				logged[requestID.ReplaceAllString(err.Error(), "")] = true
				t.Logf("pass %d of %s: %v", pass, g, err)
			}
		}
		if g, _ := w.emu.Group("kafka"); pass == 3 {
			t.Logf("after pass 3: kafka's %s=%q, cassandra's protected AMI: %t", split.TagImages, g.Tags[split.TagImages], w.emu.ImageProtected(ami))
		}
		if m := kafkaMoving(); m != "" && deregistered == "" && !w.emu.ImageProtected(ami) {
			// The image pipeline cleans up the old AMI: EC2 lets it.
			if err := w.emu.DeregisterImage(ami); err == nil {
				deregistered = fmt.Sprintf("after pass %d, while kafka's instance %s was on its way, the protection of %s was already lifted (by cassandra's split) and EC2 deregistered it", pass, m, ami)
			}
		}
		w.clock.Step(split.DefaultLockSettle)
	}
	if deregistered != "" {
		t.Errorf("%s", deregistered)
	}
	w.checkNoneLoose(t, "after 60 passes of each split")
}

// TestReview11cCrashNeverLeavesTheAMIProtected (review 11c): the split
// enables the deregistration protection of a batch's AMI
// (API_EnableImageDeregistrationProtection) and only then records it in
// split-images, in a later step (detach() in steps). A splitter that dies
// between the two (OOM kill, node drained, `split` interrupted: the reply
// of EnableImageDeregistrationProtection lost) leaves the AMI protected and
// unrecorded; the resumed split finds it protected, takes it for the
// operator's ("Protected by someone else: theirs to lift", protectImages)
// and never lifts it. Left on, "it keeps the operator's image pipeline from
// ever deregistering the AMI" (TestSplitLiftsTheAMIProtectionItSets);
// DeregisterImage fails on it for good (API_EnableImageDeregistrationProtection:
// "When deregistration protection is enabled, the AMI can't be
// deregistered."). TestSplitResumesAfterCrash does not see it: its end
// state has no AMIs. Crashes after each call in turn, as that test does.
func TestReview11cCrashNeverLeavesTheAMIProtected(t *testing.T) {
	clean := newSplitWorld(t)
	if _, err := clean.finish(t, clean.splitter(clean.cloud, "cli"), "cassandra"); err != nil {
		t.Fatal(err)
	}
	total := len(clean.emu.Calls())
	var protectedAfter []int
	for n := 1; n <= total; n++ {
		w := newSplitWorld(t)
		ctx, cancel := context.WithCancel(context.Background())
		crashing := w.client(t, &http.Client{Transport: &crashAfter{n: n, cancel: cancel}})
		_, _ = finish(ctx, w.clock, w.splitter(crashing, "cli"), "cassandra")
		cancel()
		last := w.emu.Calls()[len(w.emu.Calls())-1].Action
		if _, err := w.finish(t, w.splitter(w.cloud, "cli"), "cassandra"); err != nil {
			t.Fatalf("crash after call %d (%s), resuming: %v", n, last, err)
		}
		if w.emu.ImageProtected("ami-cassandra") {
			protectedAfter = append(protectedAfter, n)
			t.Errorf("crash after call %d (%s): ami-cassandra is still protected from deregistration once the resumed split is done; no tag records it, nothing will lift it", n, last)
		}
	}
	t.Logf("%d crash points, the AMI left protected after %v", total, protectedAfter)
}
