package hopeless

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	testingclock "k8s.io/utils/clock/testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
)

// TestRvRereportReadErrorWritesSecondEvent: a re-report after a release
// (statusItem.again) whose API read fails transiently is "unreported": the
// writer forgets the message it already wrote the pod's event for, so the
// next report of the same reason is a first report again and writes a
// second event for the same pod and reason.
func TestRvRereportReadErrorWritesSecondEvent(t *testing.T) {
	pod := cronPod("rv-reread-error")
	h := newHeldWriter(t, pod)
	restore := releasedAndOverwritten(t, h, pod)
	var armed atomic.Bool
	h.client.PrependReactor("get", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		if armed.CompareAndSwap(true, false) {
			return true, nil, apierrors.NewInternalError(fmt.Errorf("etcdserver: request timed out"))
		}
		return false, nil, nil
	})
	armed.Store(true)
	h.report(pod, reasonA, true) // parked again for the same reason: the re-read fails
	waitFor(t, 5e9, "the re-read", func() bool { return !armed.Load() })
	h.waitIdle(t)
	restore()                    // the informer caught up with the scheduler's overwrite
	h.report(pod, reasonA, true) // a later PreEnqueue, same reason
	waitFor(t, 5e9, "the condition written again", func() bool {
		c := h.podCondition(pod.Name)
		return c != nil && c.Message == reasonA
	})
	h.waitIdle(t)
	if n := len(h.recorder.Events); n != 1 {
		t.Errorf("%d events for one pod and one reason, want 1: a failed re-read after a release made the writer forget the event it wrote", n)
	}
}

// TestRvReleaseDuringRereadWritesCondition: the writer checks that an item
// is still wanted before its API calls, so that a pod released while its
// write waits gets nothing. The re-read that a re-report after a release
// now makes is an API call after that check with none after it: a pod
// released during the re-read still gets PodScheduled=False "hopeless"
// written, a stale reason on a pod the scheduler is about to try.
func TestRvReleaseDuringRereadWritesCondition(t *testing.T) {
	pod := cronPod("rv-released-during-reread")
	h := newHeldWriter(t, pod)
	releasedAndOverwritten(t, h, pod)
	before := h.statusPatches()
	var armed atomic.Bool
	h.client.PrependReactor("get", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		if armed.CompareAndSwap(true, false) {
			h.cancel(pod.UID) // released by the plugin while the writer reads
		}
		return false, nil, nil
	})
	armed.Store(true)
	h.report(pod, reasonA, true) // parked again for the same reason
	waitFor(t, 5e9, "the re-read", func() bool { return !armed.Load() })
	h.waitIdle(t)
	if n := h.statusPatches() - before; n != 0 {
		c := h.podCondition(pod.Name)
		t.Errorf("a pod released during the writer's re-read got %d condition patches (now %q)", n, c.Message)
	}
}

// A standby that takes the lease is seen leading within leaderRecheck of
// the last read, by a writer polling every leaderPoll; once seen, kept, and
// the gauge no longer gathered.
func TestRvStandbyStartsWithinRecheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: leaderMetric}, []string{"name"})
	reg.MustRegister(gauge)
	gauge.WithLabelValues(electorName).Set(0)
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	gathers := &countingGatherer{Gatherer: reg}
	c := newLeaderCheck(gathers, &LeaderElection{Enabled: true}, clk)
	if c.leading() {
		t.Fatal("standby leads")
	}
	gauge.WithLabelValues(electorName).Set(1) // takes the lease right after the read
	polls := 0
	for !c.leading() {
		polls++
		if polls > 10 {
			t.Fatal("the new leader is not seen leading within 10 polls")
		}
		clk.SetTime(clk.Now().Add(leaderPoll))
	}
	if polls != int(leaderRecheck/leaderPoll) {
		t.Errorf("seen leading after %d polls, want %d", polls, leaderRecheck/leaderPoll)
	}
	n := gathers.n
	for range 3 {
		clk.SetTime(clk.Now().Add(leaderRecheck))
		if !c.leading() {
			t.Error("stopped leading")
		}
	}
	if gathers.n != n {
		t.Error("gathered after leadership was seen")
	}
}

// A re-report after a release whose pod the scheduler bound meanwhile (the
// informer's copy stale, unbound, with the condition) writes nothing.
func TestRvRereportOfABoundPodWritesNothing(t *testing.T) {
	pod := cronPod("rv-bound-meanwhile")
	h := newHeldWriter(t, pod)
	releasedAndOverwritten(t, h, pod)
	cur, err := h.client.CoreV1().Pods("default").Get(h.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.NodeName = "n1"
	if _, err := h.client.CoreV1().Pods("default").Update(h.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := h.statusPatches()
	h.report(pod, reasonA, true)
	waitFor(t, 5*time.Second, "the re-read", func() bool {
		n := 0
		for _, a := range h.client.Actions() {
			if a.GetVerb() == "get" {
				n++
			}
		}
		return n >= 3
	})
	h.waitIdle(t)
	if n := h.statusPatches() - before; n != 0 || len(h.recorder.Events) != 1 {
		t.Errorf("bound pod: %d more patches, %d events", n, len(h.recorder.Events))
	}
}

// The same root cause on the patch: a re-report after a release whose
// condition patch fails transiently forgets the report, and the next park
// for the same reason writes a second event. (Pre-existing before 9ee3429:
// the inlined error path deleted reported the same way.)
func TestRvRereportPatchErrorWritesSecondEvent(t *testing.T) {
	pod := cronPod("rv-repatch-error")
	h := newHeldWriter(t, pod)
	restore := releasedAndOverwritten(t, h, pod)
	restore() // the informer's copy is up to date: no re-read
	var armed atomic.Bool
	h.client.PrependReactor("patch", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		if armed.CompareAndSwap(true, false) {
			return true, nil, apierrors.NewTooManyRequests("throttled", 1)
		}
		return false, nil, nil
	})
	armed.Store(true)
	h.report(pod, reasonA, true)
	waitFor(t, 5*time.Second, "the failed patch", func() bool { return !armed.Load() })
	h.waitIdle(t)
	h.report(pod, reasonA, true)
	waitFor(t, 5*time.Second, "the condition written again", func() bool {
		c := h.podCondition(pod.Name)
		return c != nil && c.Message == reasonA
	})
	h.waitIdle(t)
	if n := len(h.recorder.Events); n != 1 {
		t.Errorf("%d events for one pod and one reason, want 1", n)
	}
}
