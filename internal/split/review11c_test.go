package split_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

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
	w := newSharedAMI(t, kafkaTargetGroup)
	s := w.splitter(w.cloud, "run")
	logKafka := func(pass int) {
		if g, _ := w.emu.Group("kafka"); pass == 3 {
			t.Logf("after pass 3: kafka's %s=%q, cassandra's protected AMI: %t", split.TagImages, g.Tags[split.TagImages], w.emu.ImageProtected(w.ami))
		}
	}
	if pass, m := w.passesWithPipeline(ctx, t, 60, logKafka, splitOf{s, "cassandra"}, splitOf{s, "kafka"}); m != "" {
		t.Errorf("after pass %d, while kafka's instance %s was on its way, the protection of %s was already lifted (by cassandra's split) and EC2 deregistered it", pass, m, w.ami)
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
	if _, err := clean.finish(context.Background(), clean.splitter(clean.cloud, "cli"), "cassandra"); err != nil {
		t.Fatal(err)
	}
	total := len(clean.emu.Calls())
	var protectedAfter []int
	for n := 1; n <= total; n++ {
		w := newSplitWorld(t)
		ctx, cancel := context.WithCancel(context.Background())
		crashing := w.client(t, &http.Client{Transport: &crashAfter{n: n, cancel: cancel}})
		_, _ = w.finish(ctx, w.splitter(crashing, "cli"), "cassandra")
		cancel()
		last := w.emu.Calls()[len(w.emu.Calls())-1].Action
		if _, err := w.finish(context.Background(), w.splitter(w.cloud, "cli"), "cassandra"); err != nil {
			t.Fatalf("crash after call %d (%s), resuming: %v", n, last, err)
		}
		if w.emu.ImageProtected("ami-cassandra") {
			protectedAfter = append(protectedAfter, n)
			t.Errorf("crash after call %d (%s): ami-cassandra is still protected from deregistration once the resumed split is done; no tag records it, nothing will lift it", n, last)
		}
	}
	t.Logf("%d crash points, the AMI left protected after %v", total, protectedAfter)
}

// TestReview11cSplitWithoutRoomNeverStarts (review 11c): a group with 46 or
// more tags of its own has no room for one per-instance record once the
// split adds its lock, split-sizes and split-state (user guide,
// ec2-auto-scaling-tagging: "The maximum number of tags per resource is
// 50."; API_CreateOrUpdateTags fails with LimitExceeded over it). The split
// finds that out only at step 5, after steps 1-3 changed the group for
// good: Launch and Terminate suspended, its minimum set to 0, and three
// per-zone groups created. Then it waits for room on every pass, for ever
// ("waits for room for its record tag"), and with 48 tags every pass fails
// at step 2. Meanwhile cluster-autoscaler still discovers the group and
// scales it up in vain (Launch suspended: no instance comes of it) and cannot
// scale it down (Terminate suspended), and its minimum is gone. Tags are
// bad input: a split that cannot move a single instance must say so before
// its first write and change nothing (as it does for a group named like one
// of its per-zone groups that it did not create).
func TestReview11cSplitWithoutRoomNeverStarts(t *testing.T) {
	for _, own := range []int{46, 48} {
		t.Run(fmt.Sprintf("%d tags", own), func(t *testing.T) {
			ctx := context.Background()
			w := newSplitWorld(t, awstest.WithOwnTags(own))
			s := w.splitter(w.cloud, "run")
			res, _ := w.passUntilDone(ctx, t, s, "cassandra", 30)
			if res.Done {
				return
			}
			g, _ := w.emu.Group("cassandra")
			// AZRebalance suspended is what the balancer does to every multi-zone group anyway.
			susp := slices.DeleteFunc(w.emu.Suspended("cassandra"), func(p string) bool { return p == "AZRebalance" })
			if len(susp) > 0 || g.MinSize != 3 || len(w.emu.GroupNames()) != 1 {
				t.Errorf("a split that never recorded an instance (waiting %q) left cassandra with processes %v suspended, min %d (was 3), and groups %v",
					res.Waiting, susp, g.MinSize, w.emu.GroupNames())
			}
		})
	}
}

// TestReview11cRecordOfAGroupNamedLikeAZoneGroup (review 11c, fix ec828b3):
// a per-instance record naming an instance of another group is deleted as
// ignored only when that group's name does not start with "<group>-":
// snapshot takes every such group for one of the split's own per-zone
// groups, though those are exactly "<group>-<zone>" for the group's zones.
// An unrelated group "cassandra-backup" (a common naming) is not one of
// them. The instance then counts as detached on a record another write
// overwrote (step 4b), is written as the batch in flight, and
// AttachInstances refuses it for good (user guide,
// ec2-auto-scaling-detach-attach-instances: "The instance can't be a member
// of another Auto Scaling group"), for the zone group and for the split
// group alike: every pass fails, and the split never finishes. Same input as
// TestSplitIgnoresARecordOfAnotherGroupsInstance, another group name.
func TestReview11cRecordOfAGroupNamedLikeAZoneGroup(t *testing.T) {
	testRecordOfAnotherIgnored(t, "cassandra-backup", " (not one of the split's per-zone groups)")
}
