package hopeless

// Review 18h: an adversarial review of 71873f2 and a5c6d9f (the stale
// pass: findStale, tellStale, setProfile).

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/component-base/metrics"
)

type metricsMetric = metrics.Metric

// staleRounds runs f as leader for d, a round a second.
func staleRounds(f *ownerFixture, d time.Duration) {
	for i := 0; i < int(d/ownerRound); i++ {
		f.clock.Step(ownerRound)
		f.round(f.ctx, true)
	}
}

// oldLeaderWrote has a leader (another process, gone afterwards) write the
// Warning event of each CronJob chain, then forget its pods if left.
func oldLeaderWrote(t *testing.T, objs []runtime.Object, pods []*v1.Pod, left bool) *ownerFixture {
	t.Helper()
	old := newOwnerFixture(t, objs...)
	for _, p := range pods {
		old.park(p, taintMessage)
	}
	old.settle(t)
	old.round(old.ctx, true)
	if w := warnings(old.events(t)); len(w) == 0 {
		t.Fatalf("setup: the old leader wrote no Warning event: %+v", old.events(t))
	}
	if left {
		for _, p := range pods {
			old.remove(p.UID)
		}
	}
	ownerMetrics.remove(old.ownerReport) // its process is gone
	return old
}

// TestReview18hJobInformerNotSyncedLiveEventToldNoPods: a rollout. The old
// leader wrote "3 pods of this CronJob are parked"; the pods stay parked.
// The new replica parks them again at once, but its Job informer has not
// synced a minute later (the Jobs list fails or is slow: a big cluster,
// an apiserver under load). The pods wait for their Job (ownerJobWait only
// runs once the informer synced), so they are in no group; the stale pass
// finds the CronJob's event held by no report and patches it.
//
// Expected: the event keeps claiming the 3 parked pods. Got: Normal "No
// pods of this CronJob are parked any more" while all 3 are parked.
func TestReview18hJobInformerNotSyncedLiveEventToldNoPods(t *testing.T) {
	jobs, pods := cronJobChain("report", 3)
	old := oldLeaderWrote(t, jobs, pods, false)
	next := newOwnerFixture(t, jobs...)
	next.client, next.ownerReport.client = old.client, old.client
	next.meta.PrependReactor("list", "jobs", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errFake("etcdserver: request timed out"))
	})
	for _, p := range pods {
		next.park(p, taintMessage) // PreEnqueue at start: parked again at once
	}
	staleRounds(next, ownerStaleDelay+10*ownerRound)
	next.mu.Lock()
	pending := len(next.pending)
	next.mu.Unlock()
	if pending != len(pods) {
		t.Fatalf("setup: %d pods wait for their Job, want %d", pending, len(pods))
	}
	for _, e := range old.events(t) {
		if e.Type != v1.EventTypeWarning || !strings.HasPrefix(e.Message, "3 pods of this CronJob are parked") {
			t.Errorf("the CronJob's event while its 3 pods are parked (waiting for the Job informer): %s %q; want Warning \"3 pods ... parked\"", e.Type, e.Message)
		}
	}
}

type errFake string

func (e errFake) Error() string { return string(e) }

// failPatches makes the patches of the first event patched fail with err;
// it returns the name of that event and how often it was patched.
func failPatches(f *ownerFixture, err error) (name *string, tries *int) {
	name, tries = new(string), new(int)
	f.client.PrependReactor("patch", "events", func(a clienttesting.Action) (bool, runtime.Object, error) {
		n := a.(clienttesting.PatchAction).GetName()
		if *name == "" {
			*name = n
		}
		if n != *name {
			return false, nil, nil
		}
		*tries++
		return true, nil, err
	})
	return name, tries
}

// TestReview18hStaleRetryHammersTheAPI: the stale pass finds an event
// whose patch fails (a 500, a 429, a webhook). tellStale retries it every
// round (ownerRound, 1 s) for ownerGiveUp (10 min): ~600 patches of one
// event, where flush backs off (ownerRetry: 2 s doubling to a minute,
// ~15 tries in 10 minutes).
func TestReview18hStaleRetryHammersTheAPI(t *testing.T) {
	jobs, pods := cronJobChain("report", 2)
	old := oldLeaderWrote(t, jobs, pods, true)
	next := newOwnerFixture(t, jobs...)
	next.client, next.ownerReport.client = old.client, old.client
	_, tries := failPatches(next, apierrors.NewInternalError(errFake("boom")))
	staleRounds(next, ownerStaleDelay+ownerGiveUp)
	if *tries > 30 {
		t.Errorf("one failing stale event was patched %d times in %v; want a backoff like flush's (ownerRetry, ~15)", *tries, ownerGiveUp)
	}
}

// TestReview18hStaleFailingEventBlocksTheOthers: two stale events, the
// first's patch fails (a webhook refuses it, a 500 on its shard). The
// second, which would succeed, is not told for ownerGiveUp (10 minutes):
// tellStale returns on the first failure, and the failing event stays at
// the head of the list.
func TestReview18hStaleFailingEventBlocksTheOthers(t *testing.T) {
	aJobs, aPods := cronJobChain("alpha", 1)
	bJobs, bPods := cronJobChain("beta", 1)
	objs := append(aJobs, bJobs...)
	old := oldLeaderWrote(t, objs, append(aPods, bPods...), true)
	next := newOwnerFixture(t, objs...)
	next.client, next.ownerReport.client = old.client, old.client
	failing, _ := failPatches(next, apierrors.NewInternalError(errFake("boom")))
	staleRounds(next, ownerStaleDelay+2*time.Minute)
	for _, e := range old.events(t) {
		if e.Name != *failing && e.Type == v1.EventTypeWarning {
			t.Errorf("two minutes into the stale pass, the event %s (its patch would succeed) is still %s %q: it waits behind %s, which fails", e.Name, e.Type, e.Message, *failing)
		}
	}
}

// TestReview18hStaleListKeptOnStandby: the stale pass finds 100 stale
// events (a node group came up after a pile-up on 100 CronJobs); the
// leader loses the lease a few seconds later, before its write budget
// told them all. As a standby it keeps the rest (full Event objects,
// managedFields and all) for as long as the process runs; when it leads
// again, hours later, it patches them from that list.
func TestReview18hStaleListKeptOnStandby(t *testing.T) {
	const n = 100
	var objs []runtime.Object
	var pods []*v1.Pod
	for i := 0; i < n; i++ {
		j, p := cronJobChain("cron"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), 1)
		objs = append(objs, j...)
		pods = append(pods, p...)
	}
	old := newOwnerFixture(t, objs...)
	for _, p := range pods {
		old.park(p, taintMessage)
	}
	old.settle(t)
	for i := 0; i < n; i++ { // the old leader's budget: 2/s
		old.clock.Step(ownerRound)
		old.round(old.ctx, true)
	}
	if w := warnings(old.events(t)); len(w) != n {
		t.Fatalf("setup: %d Warning events, want %d", len(w), n)
	}
	for _, p := range pods {
		old.remove(p.UID)
	}
	ownerMetrics.remove(old.ownerReport)
	next := newOwnerFixture(t, objs...)
	next.client, next.ownerReport.client = old.client, old.client
	staleRounds(next, ownerStaleDelay+3*ownerRound)
	for i := 0; i < 3600; i++ { // an hour as a standby
		next.clock.Step(ownerRound)
		next.round(next.ctx, false)
	}
	next.mu.Lock()
	kept := len(next.stale)
	next.mu.Unlock()
	if kept != 0 {
		t.Errorf("an hour after it stopped leading, the report still keeps %d stale events of %d found; want none kept on a standby", kept, n)
	}
}

var _ = schema.GroupVersionResource{}

// TestReview18hHeldReparkedBetweenFindAndTell (passes): a pod of the
// stale event's owner parks again, with the same message, after findStale
// and before tellStale: the re-check of held spares the event, and the
// report's own write makes it Warning "1 pod".
func TestReview18hHeldReparkedBetweenFindAndTell(t *testing.T) {
	jobs, pods := cronJobChain("report", 1)
	old := oldLeaderWrote(t, jobs, pods, true)
	next := newOwnerFixture(t, jobs...)
	next.client, next.ownerReport.client = old.client, old.client
	next.findStale(next.ctx)
	if len(next.stale) != 1 {
		t.Fatalf("setup: %d stale", len(next.stale))
	}
	next.park(pods[0], taintMessage)
	next.settle(t)
	next.tellStale(next.ctx, next.clock.Now())
	staleRounds(next, 2*ownerUpdateInterval)
	if w := warnings(old.events(t)); len(w) != 1 || !strings.HasPrefix(w[0].Message, "1 pod of this CronJob is parked") {
		t.Errorf("events %+v", old.events(t))
	}
}

// TestReview18hHeldNoDeadlockWithCollector (passes): scrapes of the owner
// metrics run while the stale pass checks held and pods park: held takes
// ownerMetrics.mu and each report's mu in turn, never nested.
func TestReview18hHeldNoDeadlockWithCollector(t *testing.T) {
	jobs, pods := cronJobChain("report", 20)
	old := oldLeaderWrote(t, jobs, pods, true)
	a, b := twoReplicas(t, jobs...)
	a.client, a.ownerReport.client, b.client, b.ownerReport.client = old.client, old.client, old.client, old.client
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			ch := make(chan metricsMetric, 1000)
			ownerMetrics.CollectWithStability(ch)
		}
	}()
	for i := 0; i < 50; i++ {
		for _, p := range pods {
			b.park(p, taintMessage)
		}
		a.findStale(a.ctx)
		a.tellStale(a.ctx, a.clock.Now())
		for _, p := range pods {
			b.remove(p.UID)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the collector did not finish: deadlock")
	}
}
