package split_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
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
	w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "AttachInstances", Group: zone, Code: "ValidationError", Status: http.StatusBadRequest, Times: 1000})
	lt := &lockTripper{}
	s := w.splitter(w.client(t, &http.Client{Transport: lt}), "run")
	var once sync.Once
	lt.before = func(action string, form url.Values) {
		if action != "AttachInstances" || form.Get("AutoScalingGroupName") != zone {
			return
		}
		once.Do(func() {
			g, _ := w.emu.Group("cassandra")
			// cluster-autoscaler scales the split group up to its maximum.
			if err := w.cloud.UpdateGroupSize(ctx, "cassandra", asg.Sizes{Desired: &g.MaxSize}); err != nil {
				t.Error(err)
			}
		})
	}
	for pass := range 40 {
		if _, err := s.Pass(ctx, "cassandra"); err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		w.clock.Step(30 * time.Second)
	}
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
	w := newSplitWorld(t, func(g *awstest.GroupSpec) {
		tags := map[string]string{}
		for k, v := range g.Tags {
			tags[k] = v
		}
		for n := len(tags); n < 44; n++ {
			tags[fmt.Sprintf("cost-center/%02d", n)] = "x"
		}
		g.Tags = tags
	})
	s := w.splitter(w.cloud, "run")
	for pass := range 40 {
		res, err := s.Pass(ctx, "cassandra")
		if err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		for _, name := range w.emu.GroupNames() {
			if g, _ := w.emu.Group(name); len(g.Tags) > 50 {
				t.Fatalf("after pass %d, group %s has %d tags; AWS allows 50 per group and refuses the write that makes more", pass, name, len(g.Tags))
			}
		}
		if res.Done {
			break
		}
		w.clock.Step(split.DefaultLockSettle)
	}
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
	ctx := context.Background()
	w := newSplitWorld(t)
	other := w.emu.CreateGroup(awstest.GroupSpec{Name: "batch-jobs", Zones: zones[:1], MinSize: 1, MaxSize: 1, InstanceType: "m5.large",
		Instances: map[string]int{zones[0]: 1}})
	stranger := other[zones[0]][0]
	if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagRecordPrefix + stranger: zones[0]}); err != nil {
		t.Fatal(err)
	}
	s := w.splitter(w.cloud, "run")
	res, err := w.passUntilDone(ctx, t, s, "cassandra", 80)
	if i, _ := w.emu.Instance(stranger); i.Group != "batch-jobs" {
		t.Errorf("instance %s of batch-jobs is now in %q", stranger, i.Group)
	}
	if !res.Done {
		t.Errorf("the split never finished because of a record of %s, which is in batch-jobs: last error %v, waiting %q, stranded %q", stranger, err, res.Waiting, res.Stranded)
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
	zone := split.ZoneGroupName("cassandra", zones[0])
	lt := &lockTripper{}
	s := w.splitter(w.client(t, &http.Client{Transport: lt}), "run")
	var once sync.Once
	lt.before = func(action string, form url.Values) {
		if action == "AttachInstances" && form.Get("AutoScalingGroupName") == zone {
			// The batch has left the group; the image pipeline cleans up.
			once.Do(func() { w.emu.DeregisterImage("ami-cassandra") })
		}
	}
	for pass := range 40 {
		if _, err := s.Pass(ctx, "cassandra"); err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		w.clock.Step(30 * time.Second)
	}
	w.checkNoneLoose(t, "after 40 passes")
}
