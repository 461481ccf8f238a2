package split_test

import (
	"context"
	"fmt"
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
