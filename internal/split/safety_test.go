package split_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/split"
)

// checkNoneLoose fails for every running instance that is in no group: the
// split group and its per-zone groups are the only places it may be (a
// Detaching instance is still in its group).
func (w *splitWorld) checkNoneLoose(t *testing.T, when string) {
	t.Helper()
	for _, i := range w.emu.AllInstances() {
		if i.EC2State == "running" && i.Group == "" {
			t.Errorf("%s: instance %s runs in no group (%s): lost to cluster-autoscaler, with its data", when, i.ID, i.LifecycleState)
		}
	}
}

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
	for pass := range 30 {
		res, err := s.Pass(ctx, "cassandra")
		if err != nil {
			t.Logf("pass %d: %v", pass, err)
		} else {
			last = res
		}
		w.checkNoneLoose(t, fmt.Sprintf("after pass %d", pass))
		if t.Failed() {
			t.FailNow()
		}
		if res.Done {
			t.Fatal("the split is done, though no instance could move")
		}
		w.clock.Step(30 * time.Second)
	}
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
	zone := split.ZoneGroupName("cassandra", zones[0])
	w.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "AttachInstances", Group: zone, Code: "ValidationError", Status: http.StatusBadRequest, Times: 1000})
	s := w.splitter(w.cloud, "run")
	for pass := range 40 {
		if _, err := s.Pass(ctx, "cassandra"); err != nil {
			t.Logf("pass %d: %v", pass, err)
		}
		w.checkNoneLoose(t, "after a pass")
		if t.Failed() {
			t.Fatalf("after pass %d", pass)
		}
		w.clock.Step(30 * time.Second)
	}
	for _, id := range w.ids[zones[0]] {
		if i, _ := w.emu.Instance(id); i.Group != "cassandra" {
			t.Errorf("instance %s is in %q, want back in cassandra", id, i.Group)
		}
	}
}

// lockTripper stands for what the SDK and the network do to the lock's
// writes: slow ones (the retryer's backoff under throttling lands a claim
// late) and a rival splitter's claim landing in the middle of a pass.
type lockTripper struct {
	mu     sync.Mutex
	before func(action string, form url.Values)
}

func (l *lockTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	l.mu.Lock()
	before := l.before
	l.mu.Unlock()
	if before != nil {
		before(form.Get("Action"), form)
	}
	return http.DefaultTransport.RoundTrip(r)
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
		lt := &lockTripper{}
		lt.before = func(action string, form url.Values) {
			if isLockWrite(action, form) {
				w.clock.Step(20 * time.Second) // the claim lands 20 s after it was decided
			}
		}
		s := w.splitter(w.client(t, &http.Client{Transport: lt}), "run")
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
		if _, err := w.finish(t, s, "cassandra"); err != nil {
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
	lt := &lockTripper{}
	s := w.splitter(w.client(t, &http.Client{Transport: lt}), "run")
	if _, err := s.Pass(ctx, "cassandra"); err != nil { // claims
		t.Fatal(err)
	}
	w.clock.Step(split.DefaultLockSettle)
	var once sync.Once
	lt.before = func(action string, _ url.Values) {
		if action == "CreateAutoScalingGroup" {
			once.Do(func() {
				now := w.clock.Now().UTC()
				rival := "other " + now.Format(time.RFC3339) + " " + now.Add(split.DefaultLockDuration).Format(time.RFC3339)
				if err := w.cloud.SetGroupTags(ctx, "cassandra", map[string]string{split.TagLock: rival}); err != nil {
					t.Error(err)
				}
			})
		}
	}
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

// TestSplitRefusesAbandonLaunchHooks: an attached instance goes through
// Pending (ec2-auto-scaling-lifecycle), and the per-zone groups copy the
// group's hooks; a launch hook whose default result is ABANDON could
// terminate an attached instance at its timeout. Such a group is not split.
func TestSplitRefusesAbandonLaunchHooks(t *testing.T) {
	ctx := context.Background()
	w := newSplitWorld(t)
	if err := w.cloud.PutLifecycleHook(ctx, asg.Hook{Group: "cassandra", Name: "bootstrap", Transition: "autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout: 300, DefaultResult: "ABANDON"}); err != nil {
		t.Fatal(err)
	}
	w.emu.Reset()
	s := w.splitter(w.cloud, "run")
	if _, err := s.Pass(ctx, "cassandra"); err == nil || !strings.Contains(err.Error(), "ABANDON") {
		t.Errorf("pass: %v, want a refusal naming the ABANDON launch hook", err)
	}
	if m := w.emu.MutatingCalls(); len(m) != 0 {
		t.Errorf("a refused split made %d writes", len(m))
	}
}
