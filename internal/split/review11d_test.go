package split_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestReview11dAMIProtectionLiftedUnderAnotherClustersBatch (review 11d):
// the fix of TestReview11cSharedAMIProtectionLiftedUnderAnotherBatch looks
// for other splits recording an AMI only among the groups the splitter's own
// selector discovers (imagesOfOtherSplits: DescribeGroups with the
// selector's tag keys, ANDed). An AMI is an account-wide resource shared by
// every cluster of the account (one image pipeline, one EKS-optimized AMI
// copied once): a "staging" cluster's az-balancer, splitting its "kafka"
// group, finds the AMI already protected by prod's split of "cassandra",
// cannot see prod's split-images tag (cassandra has no
// k8s.io/cluster-autoscaler/staging tag), takes the protection for
// "someone else's: theirs to lift" and records nothing. Prod's split lifts
// the protection once its own batch is attached
// (API_DisableImageDeregistrationProtection), since no group it can see
// records the AMI, while kafka's batch is still detaching (a target group:
// Detaching for the deregistration delay, 300 s by default). EC2 then lets
// the pipeline deregister it (API_EnableImageDeregistrationProtection: only
// "When deregistration protection is enabled, the AMI can't be
// deregistered."), and AttachInstances refuses kafka's instances for every
// group (user guide, ec2-auto-scaling-detach-attach-instances: "The AMI used
// to launch the instance must still exist."): they run in no group, with
// their local data. Root cause: internal/split/split.go imagesOfOtherSplits
// (used by recordImages and the lift in steps) reads only the selector's
// groups; the record of who needs an AMI belongs on the AMI (an image tag)
// or the reading must span every group of the account.
func TestReview11dAMIProtectionLiftedUnderAnotherClustersBatch(t *testing.T) {
	ctx := context.Background()
	w := newSharedAMI(t, inCluster("staging"), kafkaTargetGroup)
	prod := splitOf{w.splitter(w.cloud, "run"), "cassandra"}
	staging := splitOf{w.splitterOf(w.cloud, "staging", "run-staging"), "kafka"}
	if pass, m := w.passesWithPipeline(ctx, t, 60, nil, prod, staging); m != "" {
		t.Errorf("after pass %d, while staging's kafka instance %s was on its way, prod's split of cassandra had lifted the protection of %s (it cannot see kafka's split) and EC2 deregistered it", pass, m, w.ami)
	}
	w.checkNoneLoose(t, "after 60 passes of each split")
}

// TestReview11dSplitWithoutRoomForTheZoneGroupNameNeverStarts (review 11d):
// a per-zone group is named "<group>-<zone>" (ZoneGroupName), and
// CreateAutoScalingGroup refuses a name longer than 255 characters
// (API_CreateAutoScalingGroup, AutoScalingGroupName: "Maximum length of
// 255."). For a group whose name leaves no room for "-us-east-1a" (or a
// Local Zone's longer name), the split finds out at step 3, after steps 1
// and 2 changed the group for good: Launch and Terminate suspended (no
// replacement of an unhealthy instance, cluster-autoscaler's scale-ups and
// scale-downs in vain) and its minimum set to 0. Every pass then fails at
// CreateAutoScalingGroup, a plain error (not split.ErrRefused), so with
// --enforce=split every loop fails and /healthz restarts the balancer. Like
// the missing tag room (review 11c), a split that cannot create its
// per-zone groups must say so before its first write and change nothing.
// Root cause: internal/split/split.go steps: no check of the zone groups'
// names before step 1. Suggested fix: refuse (split.ErrRefused) when
// len(ZoneGroupName(group, z)) > 255 for a zone of the group.
func TestReview11dSplitWithoutRoomForTheZoneGroupNameNeverStarts(t *testing.T) {
	ctx := context.Background()
	long := "cassandra-" + strings.Repeat("x", 240) // 250 characters: valid, but "-us-east-1a" makes 261
	w := newSplitWorld(t)
	w.emu.CreateGroup(awstest.GroupSpec{Name: long, Zones: zones, MinSize: 3, MaxSize: 10, InstanceType: "i3.xlarge",
		Tags: caTags(nil), Instances: map[string]int{zones[0]: 4, zones[1]: 1, zones[2]: 1}})
	var last error
	failed := 0
	w.run(ctx, w.splitter(w.cloud, "run"), long, 5, split.DefaultLockSettle, func(_ int, _ split.Result, err error) bool {
		if err != nil {
			last = err
			failed++
		}
		return errors.Is(err, split.ErrRefused)
	})
	// The group's name makes the errors long: their end says what failed.
	tail := ""
	if last != nil {
		msg := requestID.ReplaceAllString(last.Error(), "")
		tail = "..." + msg[max(0, len(msg)-170):]
	}
	g, _ := w.emu.Group(long)
	susp := slices.DeleteFunc(w.emu.Suspended(long), func(p string) bool { return p == "AZRebalance" })
	if len(susp) > 0 || g.MinSize != 3 {
		t.Errorf("a split that can create none of its per-zone groups left the group with processes %v suspended and min %d (was 3); %d passes failed, the last with %s", susp, g.MinSize, failed, tail)
	}
	if !errors.Is(last, split.ErrRefused) {
		t.Errorf("the split's last error is not a refusal (split.ErrRefused), so with --enforce=split every loop fails: %s", tail)
	}
}
