package split_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestSplitReturnsToAFullSplitGroup (review 11b): the fix of review 11 #7
// raises a full zone group's maximum before attaching, but the way back is
// not covered. When AWS refuses a detached instance for its zone's group
// for good, attachOrReturn marks it "!" and attaches it back to the split
// group, "which still has room for them". It has not, always: the split
// group keeps cluster-autoscaler's discovery tags until the split is done,
// so cluster-autoscaler may raise its desired capacity to its maximum
// (Launch is suspended, so no instance comes of it) while the batch is
// detaching. API_AttachInstances: "If the number of instances being
// attached plus the desired capacity of the group exceeds the maximum size
// of the group, the operation fails." Then the attach back fails, and every
// later pass retries it (toReturn) without raising the maximum: the
// instance runs in no group for good, lost to cluster-autoscaler with its
// local volume.
func TestSplitReturnsToAFullSplitGroup(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	zone := split.ZoneGroupName("cassandra", zones[0])
	w.refuseAttach(zone)
	s, lt := w.tripped(t, "run")
	lt.beforeFirst(attachTo(zone), func() {
		g, _ := w.emu.Group("cassandra")
		// cluster-autoscaler scales the split group up to its maximum.
		if err := w.cloud.UpdateGroupSize(ctx, "cassandra", asg.Sizes{Desired: &g.MaxSize}); err != nil {
			t.Error(err)
		}
	})
	w.run(ctx, s, "cassandra", 40, 30*time.Second, logged(t))
	w.checkNoneLoose(t, fmt.Sprintf("after %d passes", 40))
}

// TestSplitRecordsStayWithinTheTagLimit (review 11b, e23bff4): a batch
// leaves room in the split group's 50 tags for its per-instance records,
// counting TagState when it is missing, but not TagSizes, which the same
// pass writes first when the split starts (step 2: split-sizes and
// split-state=started, then the first batch with its records). User guide,
// "Tag Auto Scaling groups and instances" (ec2-auto-scaling-tagging), tag
// restrictions: "The maximum number of tags per resource is 50."; the
// CreateOrUpdateTags call over it fails (API_CreateOrUpdateTags, error
// LimitExceeded). The emulator does not enforce the limit,
// so this test counts the tags after every pass. A group with 44 tags of its
// own (4 instances in its first zone) gets 45 with the lock, then
// split-sizes, split-state and 4 records: 51.
func TestSplitRecordsStayWithinTheTagLimit(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t, awstest.WithOwnTags(44))
	w.run(ctx, w.splitter(w.cloud, "run"), "cassandra", 40, split.DefaultLockSettle, func(pass int, res split.Result, err error) bool {
		logged(t)(pass, res, err)
		for _, name := range w.emu.GroupNames() {
			if g, _ := w.emu.Group(name); len(g.Tags) > 50 {
				t.Fatalf("after pass %d, group %s has %d tags; AWS allows 50 per group and refuses the write that makes more", pass, name, len(g.Tags))
			}
		}
		return res.Done
	})
}

// TestSplitIgnoresARecordOfAnotherGroupsInstance (review 11b, 766218e): a
// per-instance record (split-state/<id>) names an instance that is in no
// batch and belongs to another Auto Scaling group (a tag copied with the
// group's others by an operator's script, or an instance attached elsewhere
// by hand after a split detached it). Step 4b takes every recorded instance
// that is in neither the split group nor a per-zone group, and not
// terminated, for one "detached on a record another write overwrote", and
// writes it as the batch in flight. AttachInstances refuses a member of
// another group (user guide, ec2-auto-scaling-detach-attach-instances:
// "The instance can't be a member of another Auto Scaling group"), so it is
// marked "!" and attached back to the split group, refused again, on every
// pass: the split never finishes, on a tag, and each pass fails. Bad input
// gets a logged skip, never a stalled split.
func TestSplitIgnoresARecordOfAnotherGroupsInstance(t *testing.T) {
	testRecordOfAnotherIgnored(t, "batch-jobs", "")
}

// testRecordOfAnotherIgnored: a record on cassandra of the instance of a
// group named other (recordOfAnother) leaves that instance where it is, and
// the split finishes; why says why other is not one of the split's own.
func testRecordOfAnotherIgnored(t *testing.T, other, why string) {
	ctx := context.Background()
	w := newSplitWorld(t)
	stranger := w.recordOfAnother(ctx, t, other)
	res, err := w.passUntilDone(ctx, t, w.splitter(w.cloud, "run"), "cassandra", 80)
	if i, _ := w.emu.Instance(stranger); i.Group != other {
		t.Errorf("instance %s of %s is now in %q", stranger, other, i.Group)
	}
	if !res.Done {
		t.Errorf("the split never finished because of a record of %s, which is in %s%s: last error %v, waiting %q, stranded %q", stranger, other, why, err, res.Waiting, res.Stranded)
	}
}

// TestSplitSurvivesAnEmptyRecordKey (review 11b, 766218e): a malformed
// per-instance record, the key ballast.k8s.io/split-state/ with no instance
// ID (CreateOrUpdateTags accepts any key up to 128 characters). records()
// yields the ID "", which EC2 does not know; step 4b takes it for a
// detached instance and records "move <zone> " (a batch of no instance) on
// every pass, so the split never finishes.
func TestSplitSurvivesAnEmptyRecordKey(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagRecordPrefix: zones[0]}); err != nil {
		t.Fatal(err)
	}
	s := w.splitter(w.cloud, "run")
	res, err := w.passUntilDone(ctx, t, s, "cassandra", 80)
	if !res.Done {
		t.Errorf("the split never finished because of a malformed record key: last error %v, waiting %q", err, res.Waiting)
	}
	w.checkNothingLost(t)
}

// TestSplitAMIDeregisteredWhileDetaching (review 11b, cd4eaf0): the AMIs of
// a batch are checked again right before DetachInstances, but the batch is
// attached only once it has left the group, after the deregistration delay
// of the group's target groups (300 s by default; the package doc). An AMI
// deregistered in that window (an image pipeline's cleanup) leaves each
// instance attachable nowhere: AttachInstances refuses it for its zone's
// group and for the split group alike (user guide,
// ec2-auto-scaling-detach-attach-instances: "The AMI used to launch the
// instance must still exist."). attachOrReturn's way back fails, every later
// pass retries it: the instances run in no group for good. Checking cannot
// close the window; EC2 can (API_EnableImageDeregistrationProtection:
// "Enables deregistration protection for an AMI. When deregistration
// protection is enabled, the AMI can't be deregistered."), set on the
// batch's own AMIs before DetachInstances and lifted once it is attached.
func TestSplitAMIDeregisteredWhileDetaching(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s, lt := w.tripped(t, "run")
	// The batch has left the group; the image pipeline cleans up.
	lt.beforeFirst(attachTo(split.ZoneGroupName("cassandra", zones[0])), func() { w.emu.DeregisterImage("ami-cassandra") })
	w.run(ctx, s, "cassandra", 40, 30*time.Second, logged(t))
	w.checkNoneLoose(t, "after 40 passes")
}
