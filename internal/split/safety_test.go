package split_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// TestSplitNeverDetachesWhatCannotBeAttached is finding 1 of the review of
// issue 11. The user guide, "Detach or attach instances from your Auto
// Scaling group" (ec2-auto-scaling-detach-attach-instances), considerations
// for attaching instances: "The AMI used to launch the instance must still
// exist." Fleets deregister the AMI their running nodes came from; detaching
// such an instance cannot be undone, so the split must leave it in the group
// and say so.
func TestSplitNeverDetachesWhatCannotBeAttached(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	w.emu.DeregisterImage("ami-cassandra")
	s := w.splitter(w.cloud, "run")
	var last split.Result
	w.run(ctx, s, "cassandra", 30, 30*time.Second, func(pass int, res split.Result, err error) bool {
		if err == nil {
			last = res
		}
		w.noneLoose(t)(pass, res, err)
		if res.Done {
			t.Fatal("the split is done, though no instance could move")
		}
		return false
	})
	if n := len(w.emu.GroupInstances("cassandra")); n != len(w.all()) {
		t.Errorf("%d instances left in cassandra, want all %d: none can be attached elsewhere", n, len(w.all()))
	}
	if !strings.Contains(strings.Join(last.Waiting, "\n"), "no longer exists") || len(last.Stranded) != len(w.all()) {
		t.Errorf("waiting %q, stranded %q: want every instance reported, its AMI gone", last.Waiting, last.Stranded)
	}
	if c := w.emu.Counts(); c["DetachInstances"] != 0 {
		t.Errorf("%d DetachInstances calls, want none", c["DetachInstances"])
	}
}

// TestSplitReturnsInstancesAWSRefuses: when AttachInstances refuses a
// detached instance for its zone's group (a ValidationError: any of the
// guide's attach considerations), the instance goes back to the split group,
// which still has room for it, rather than staying in no group.
func TestSplitReturnsInstancesAWSRefuses(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	w.refuseAttach(split.ZoneGroupName("cassandra", zones[0]))
	w.run(ctx, w.splitter(w.cloud, "run"), "cassandra", 40, 30*time.Second, w.noneLoose(t))
	for _, id := range w.ids[zones[0]] {
		if i, _ := w.emu.Instance(id); i.Group != "cassandra" {
			t.Errorf("instance %s is in %q, want back in cassandra", id, i.Group)
		}
	}
}

func isLockWrite(action string, form url.Values) bool {
	return action == "CreateOrUpdateTags" && form.Get("Tags.member.1.Key") == split.TagLock
}

// TestSplitLockClaimIsBounded is finding 2(a): Fischer's lock is safe only
// if a claim lands within Settle of the read that found the lock free. The
// SDK retries a throttled claim (and backs off up to 20 s each time); a claim
// must go in one attempt, and one that returned late is never relied on.
func TestSplitLockClaimIsBounded(t *testing.T) {
	ctx := context.Background()
	t.Run("throttled claim is not retried", func(t *testing.T) {
		w := newSplitWorld(t)
		f := awstest.Throttling(1)[0]
		f.Action = "CreateOrUpdateTags"
		w.emu.Inject(f)
		s := w.splitter(w.cloud, "run")
		_, err := s.Pass(ctx, "cassandra")
		if n := w.emu.Counts()["CreateOrUpdateTags"]; n != 1 {
			t.Errorf("%d claims sent, want 1 (no SDK retries); pass error %v", n, err)
		}
		if g, _ := w.emu.Group("cassandra"); g.Tags[split.TagLock] != "" {
			t.Errorf("lock %q taken by a retried claim", g.Tags[split.TagLock])
		}
	})
	t.Run("late claim is void", func(t *testing.T) {
		w := newSplitWorld(t)
		s, lt := w.tripped(t, "run")
		lt.before = func(action string, form url.Values) {
			if isLockWrite(action, form) {
				w.clock.Step(20 * time.Second) // the claim lands 20 s after it was decided
			}
		}
		_, _ = s.Pass(ctx, "cassandra")
		lt.mu.Lock()
		lt.before = nil
		lt.mu.Unlock()
		w.emu.Reset()
		w.clock.Step(split.DefaultLockSettle)
		for range 3 {
			_, err := s.Pass(ctx, "cassandra")
			for _, c := range w.emu.MutatingCalls() {
				if !isLockWrite(c.Action, c.Params) {
					t.Fatalf("split step %s made on a claim that landed late (pass error %v)", c.Action, err)
				}
			}
			w.clock.Step(split.DefaultLockSettle)
		}
		// Once it lapses, the split goes on.
		w.clock.Step(split.DefaultLockDuration)
		if _, err := w.finish(ctx, s, "cassandra"); err != nil {
			t.Fatal(err)
		}
		w.checkNothingLost(t)
	})
}

// TestSplitStopsWhenItsLockIsTaken is finding 2(b): a rival claim can land
// in the middle of a pass (a late write, a clock skew); the holder re-reads
// the lock before it records a batch, detaches or attaches, and stops.
func TestSplitStopsWhenItsLockIsTaken(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	s, lt := w.tripped(t, "run")
	if _, err := s.Pass(ctx, "cassandra"); err != nil { // claims
		t.Fatal(err)
	}
	w.clock.Step(split.DefaultLockSettle)
	lt.beforeFirst(func(action string, _ url.Values) bool { return action == "CreateAutoScalingGroup" }, func() {
		now := w.clock.Now().UTC()
		rival := "other " + now.Format(time.RFC3339) + " " + now.Add(split.DefaultLockDuration).Format(time.RFC3339)
		if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagLock: rival}); err != nil {
			t.Error(err)
		}
	})
	w.emu.Reset()
	_, err := s.Pass(ctx, "cassandra")
	if !errors.Is(err, split.ErrLocked) {
		t.Errorf("pass error %v, want ErrLocked once the lock was taken", err)
	}
	for _, c := range w.emu.MutatingCalls() {
		if c.Action == "DetachInstances" || c.Action == "AttachInstances" ||
			(c.Action == "CreateOrUpdateTags" && strings.HasPrefix(c.Params.Get("Tags.member.1.Value"), "move ")) {
			t.Errorf("%s %v made after another splitter took the lock", c.Action, c.Params.Get("Tags.member.1.Value"))
		}
	}
}

// TestSplitOwnersNeverCollide is finding 6: two processes with the same host
// name and pid (a Job's pod re-created under its old name, pid 1 in both)
// named the same owner, and both held the lock. NewOwner draws a nonce.
func TestSplitOwnersNeverCollide(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	a, b := split.NewOwner("az-balancer-split"), split.NewOwner("az-balancer-split")
	if a == b {
		t.Fatalf("two owners named %q", a)
	}
	first, second := w.splitter(w.cloud, a), w.splitter(w.cloud, b)
	if _, err := first.Pass(ctx, "cassandra"); err != nil {
		t.Fatal(err)
	}
	w.clock.Step(split.DefaultLockSettle)
	if _, err := second.Pass(ctx, "cassandra"); !errors.Is(err, split.ErrLocked) {
		t.Errorf("the second process: %v, want ErrLocked", err)
	}
}

// TestSplitCopiesAbandonLaunchHooks: a launch hook whose default result is
// ABANDON (the API default, API_PutLifecycleHook) is no reason to refuse a
// split. An attached instance goes through none of the group's lifecycle
// hooks (user guide, lifecycle-hooks, "Lifecycle hook availability",
// footnote 1: they do not apply "when you attach or detach instances"), so
// the per-zone groups get the hook, for the instances they launch, and the
// moved instances are attached to them, none lost. (It asserted a refusal
// before review 14a, on the premise that attached instances go through
// launch hooks.)
func TestSplitCopiesAbandonLaunchHooks(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	bootstrap := asg.Hook{Group: "cassandra", Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout: 300, DefaultResult: "ABANDON"}
	if err := w.cloud.PutLifecycleHook(ctx, bootstrap); err != nil {
		t.Fatal(err)
	}
	s := w.splitter(w.cloud, "run")
	if _, err := w.finish(ctx, s, "cassandra"); err != nil {
		t.Fatalf("split: %v", err)
	}
	w.checkNothingLost(t)
	for _, z := range zones {
		zg := split.ZoneGroupName("cassandra", z)
		if !slices.ContainsFunc(w.emu.Hooks(zg), func(h awstest.Hook) bool {
			return h.Name == bootstrap.Name && h.Transition == bootstrap.Transition && h.DefaultResult == "ABANDON"
		}) {
			t.Errorf("%s has hooks %+v, want cassandra's launch hook %s with its default ABANDON", zg, w.emu.Hooks(zg), bootstrap.Name)
		}
	}
}

// TestSplitChecksTheAMIOfARecordedBatchBeforeDetaching (review 11): the AMI
// check (checkImages) leaves out the instances of the batch in flight, so a
// batch recorded by a pass whose DetachInstances failed (or that crashed
// right after recording it) is detached by a later pass without asking
// DescribeImages again. If the AMI was deregistered in between, every
// instance of the batch is detached although no group will ever take it:
// the user guide, "Detach or attach instances from your Auto Scaling group"
// (ec2-auto-scaling-detach-attach-instances), considerations for attaching:
// "The AMI used to launch the instance must still exist." That holds for the
// split group too, so the "attach back" fallback cannot help: the instances
// run in no group.
func TestSplitChecksTheAMIOfARecordedBatchBeforeDetaching(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	// The first DetachInstances fails (a crash between recording the batch
	// and detaching it has the same outcome).
	w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "DetachInstances", Code: "ValidationError", Status: http.StatusBadRequest, Times: 1})
	s := w.splitter(w.cloud, "run")
	recorded := false
	w.run(ctx, s, "cassandra", 10, split.DefaultLockSettle, func(pass int, _ split.Result, err error) bool {
		t.Logf("pass %d: %v", pass, err)
		g, _ := w.emu.Group("cassandra")
		recorded = strings.HasPrefix(g.Tags[split.TagState], "move ")
		return recorded
	})
	if !recorded {
		t.Fatal("no batch recorded")
	}
	if c := w.emu.Counts(); c["DetachInstances"] != 1 {
		t.Fatalf("%d DetachInstances calls, want the one that failed", c["DetachInstances"])
	}
	// The operator rolls the AMI and deregisters the old one now.
	w.emu.DeregisterImage("ami-cassandra")
	w.run(ctx, s, "cassandra", 30, 30*time.Second, w.noneLoose(t))
}

// TestSplitReprotectsInstancesSentBack (review 11): an instance of the batch
// that AttachInstances refused for its zone's group is attached back to the
// split group ("!" in the state tag) and stays there, stranded. If it was
// protected from scale-in ("*"), the split never sets the protection again:
// DetachInstances dropped it, and a later pass only reports the instance.
// API_AttachInstances: the attached instance takes the group's
// NewInstancesProtectedFromScaleIn (false here), and the split group keeps
// its discovery tags while the split waits, so cluster-autoscaler may
// scale the operator's protected instance in. The package doc promises
// "sets the scale-in protection again where an instance had it".
func TestSplitReprotectsInstancesSentBack(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	zone := split.ZoneGroupName("cassandra", zones[0])
	protected := w.ids[zones[0]][1]
	if i, _ := w.emu.Instance(protected); !i.ProtectedFromScaleIn {
		t.Fatalf("instance %s not protected before the split", protected)
	}
	w.refuseAttach(zone)
	w.run(ctx, w.splitter(w.cloud, "run"), "cassandra", 40, 30*time.Second, w.noneLoose(t))
	i, _ := w.emu.Instance(protected)
	if i.Group != "cassandra" || i.LifecycleState != "InService" {
		t.Fatalf("instance %s is %s in %q, want InService back in cassandra", protected, i.LifecycleState, i.Group)
	}
	if !i.ProtectedFromScaleIn {
		t.Errorf("instance %s, protected from scale-in before the split, is back in cassandra without its protection", protected)
	}
}

// TestSplitLateRecordNeverOverwritesAnotherBatch (review 11): the holder
// re-reads the lock before a guarded write, but the write itself is not
// bounded: SetGroupTags goes through the SDK retryer (5 attempts, up to 20 s
// of backoff each, aws/client.go) with no deadline, the HTTP client has no
// response timeout, and the process can be paused (a laptop running
// `az-balancer split` suspended, a frozen pod) between the re-read and the
// request. Auto Scaling's CreateOrUpdateTags has no condition: "If the
// specified tag already exists, it is updated" (API_CreateOrUpdateTags). So
// a record that lands after the lock lapsed and another splitter recorded
// and detached its own batch overwrites that batch's record: the other
// batch's instances, detached, are on no record and are never attached.
func TestSplitLateRecordNeverOverwritesAnotherBatch(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	a, lt := w.tripped(t, "a")
	b := w.splitter(w.cloud, "b")
	moving := w.ids[zones[1]][0]
	recordOfABatch := func(action string, form url.Values) bool {
		return action == "CreateOrUpdateTags" && form.Get("Tags.member.1.Key") == split.TagState && strings.HasPrefix(form.Get("Tags.member.1.Value"), "move ")
	}
	lt.beforeFirst(recordOfABatch, func() {
		// A's record of its first batch is held up past its lock; B
		// takes the group over and gets as far as detaching zone b's batch.
		w.clock.Step(split.DefaultLockDuration + time.Second)
		detached := false
		w.run(ctx, b, "cassandra", 80, split.DefaultLockSettle, func(pass int, _ split.Result, err error) bool {
			t.Logf("B pass %d while A's write is held up: %v", pass, err)
			i, _ := w.emu.Instance(moving)
			detached = i.LifecycleState == "Detaching" || i.Group == ""
			return detached
		})
		if !detached {
			t.Error("B never detached zone b's batch")
		}
	})
	w.run(ctx, a, "cassandra", 5, split.DefaultLockSettle, func(pass int, _ split.Result, err error) bool {
		t.Logf("A pass %d: %v", pass, err)
		return err != nil
	})
	lt.mu.Lock()
	lt.before = nil
	lt.mu.Unlock()
	w.passUntilDone(ctx, t, b, "cassandra", 80)
	w.checkNoneLoose(t, "after the split")
	w.checkNothingLost(t)
}

// TestSplitDoesNotStrandOnAFullZoneGroup (review 11): AttachInstances fails
// with a ValidationError when the zone group is full (API_AttachInstances:
// "If the number of instances being attached plus the desired capacity of
// the group exceeds the maximum size of the group, the operation fails"), a
// condition that passes. The per-zone groups carry cluster-autoscaler's
// discovery tags from their creation, so cluster-autoscaler may raise one's
// desired capacity to its maximum while a batch is detaching (pods pending
// in that zone). attachOrReturn takes every ValidationError for a refusal
// for good: the batch is marked "!", attached back to the split group and
// left there, "stranded", and the operator is told to terminate instances
// that hold local data for the split to finish. A full group is waited for
// (or its maximum raised), never a reason to strand an instance.
func TestSplitDoesNotStrandOnAFullZoneGroup(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	zone := split.ZoneGroupName("cassandra", zones[0])
	s, lt := w.tripped(t, "run")
	lt.beforeFirst(attachTo(zone), func() {
		g, _ := w.emu.Group(zone)
		// cluster-autoscaler scales the zone group up to its maximum.
		if err := w.cloud.UpdateGroupSize(ctx, zone, asg.Sizes{Desired: &g.MaxSize}); err != nil {
			t.Error(err)
		}
	})
	var last split.Result
	w.run(ctx, s, "cassandra", 60, 30*time.Second, func(pass int, res split.Result, err error) bool {
		if err == nil {
			last = res
		}
		w.noneLoose(t)(pass, res, err)
		return res.Done
	})
	if len(last.Stranded) > 0 {
		t.Errorf("stranded after cluster-autoscaler filled %s for a moment: %q", zone, last.Stranded)
	}
	for _, id := range w.ids[zones[0]] {
		if i, _ := w.emu.Instance(id); i.Group != zone {
			t.Errorf("instance %s is in %q, want %s", id, i.Group, zone)
		}
	}
}

// TestSplitBackMarksFitTheStateTag (review 11): a batch is cut so that its
// record fits the state tag (256 characters), counting the "*" marks but
// not the "!" marks attachOrReturn adds when AWS refuses instances. A full
// batch whose instances are refused no longer fits: CreateOrUpdateTags
// refuses the value (Auto Scaling Tag, Value: "Length Constraints: Maximum
// length of 256"), attachOrReturn stops before attaching them back, and
// every later pass does the same: the batch runs in no group for good.
func TestSplitBackMarksFitTheStateTag(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t, awstest.WithInstances(20, map[string]int{zones[0]: 12, zones[1]: 1, zones[2]: 1}))
	w.refuseAttach(split.ZoneGroupName("cassandra", zones[0]))
	w.run(ctx, w.splitter(w.cloud, "run"), "cassandra", 30, 30*time.Second, func(pass int, _ split.Result, err error) bool {
		if err != nil {
			t.Logf("pass %d: %.300s", pass, err)
		}
		if g, _ := w.emu.Group("cassandra"); pass == 1 {
			t.Logf("state tag (%d characters): %s", len(g.Tags[split.TagState]), g.Tags[split.TagState])
		}
		return false
	})
	w.checkNoneLoose(t, "after 30 passes")
}

// lostReply forwards every request, and for the first AttachInstances to
// group it drops AWS's answer, as a connection reset after the request
// landed does; the SDK retries it.
type lostReply struct {
	group string
	once  sync.Once
}

func (l *lostReply) RoundTrip(r *http.Request) (*http.Response, error) {
	form, err := readForm(r)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && form.Get("Action") == "AttachInstances" && form.Get("AutoScalingGroupName") == l.group {
		lost := false
		l.once.Do(func() { lost = true })
		if lost {
			resp.Body.Close()
			return nil, errors.New("read: connection reset by peer")
		}
	}
	return resp, err
}

// TestSplitAttachWhoseReplyWasLost (review 11): AttachInstances lands, its
// reply is lost, and the SDK retries it (a connection error is retryable).
// The retry answers ValidationError, "already part of" the zone group: AWS
// refuses to attach an instance that is a member of a group (user guide,
// ec2-auto-scaling-detach-attach-instances: the instance "can't be a member
// of another Auto Scaling group"). attachOrReturn takes that for a refusal,
// marks the whole batch "!" and tries to attach it back to the split group,
// which fails alike. The next pass finds the instances in their zone group
// ("attached after all") and goes on, but a "!" instance is never protected
// from scale-in again: the instance protected before the split ends
// unprotected in its zone group.
func TestSplitAttachWhoseReplyWasLost(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	zone := split.ZoneGroupName("cassandra", zones[0])
	protected := w.ids[zones[0]][1]
	s := w.splitter(w.client(t, &http.Client{Transport: &lostReply{group: zone}}), "run")
	w.run(ctx, s, "cassandra", 60, 30*time.Second, func(pass int, res split.Result, err error) bool {
		if err != nil {
			t.Logf("pass %d: %.400s", pass, err)
		}
		w.checkNoneLoose(t, fmt.Sprintf("after pass %d", pass))
		return res.Done || t.Failed()
	})
	i, _ := w.emu.Instance(protected)
	if i.Group != zone || !i.ProtectedFromScaleIn {
		t.Errorf("instance %s, protected before the split, is %s in %q, protected=%v; want protected in %s", protected, i.LifecycleState, i.Group, i.ProtectedFromScaleIn, zone)
	}
}
