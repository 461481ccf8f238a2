package hopeless

// Review 18d: an adversarial review of the status writer rework (94aa5aa):
// evented, cancel keeping a released pod reported, owed events, and the
// restart/failover assumption of a first report that finds its condition.

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
)

// secondReplica is another scheduler replica's status writer on the same
// API server as w (a restart, or a standby), driven synchronously like w.
// It has no owner report: the pods it is given are bare, for which the
// owner report's park answers false anyway.
func (w *ownedWriter) secondReplica(leading *atomic.Bool) (*statusWriter, *hookRecorder) {
	rec := &hookRecorder{FakeRecorder: events.NewFakeRecorder(1000), client: w.f.client, n: map[string]int{}}
	s := newStatusWriter(w.f.client, rec, 1000, w.f.clock)
	s.leading = leading.Load
	return s, rec
}

// drainWriter processes what is pending in s, until nothing is.
func drainWriter(ctx context.Context, s *statusWriter) {
	for i := 0; i < 20; i++ {
		s.mu.Lock()
		var uids []types.UID
		for uid := range s.pending {
			uids = append(uids, uid)
		}
		s.mu.Unlock()
		if len(uids) == 0 {
			return
		}
		for _, uid := range uids {
			s.process(ctx, uid)
		}
	}
}

// schedulerWrites sets the PodScheduled=False condition as the scheduler's
// handleSchedulingFailure does after an attempt.
func (w *ownedWriter) schedulerWrites(t *testing.T, name, message string) {
	t.Helper()
	cur := w.getPod(t, name)
	found := false
	for i := range cur.Status.Conditions {
		if cur.Status.Conditions[i].Type == v1.PodScheduled {
			cur.Status.Conditions[i].Status = v1.ConditionFalse
			cur.Status.Conditions[i].Message = message
			found = true
		}
	}
	if !found {
		cur.Status.Conditions = append(cur.Status.Conditions, v1.PodCondition{Type: v1.PodScheduled,
			Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable, Message: message})
	}
	if _, err := w.f.client.CoreV1().Pods("default").UpdateStatus(w.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestReview18dAppliedPatchReportedAsFailedLosesTheEvent: a bare pod parked
// at PreEnqueue. Its condition patch is applied by the API server, but the
// answer is an error (a timeout after the commit: "the server was unable
// to return a response in the time allotted"). unreport forgets the first
// report. The queue's five-minute flush runs PreEnqueue again: a first
// report, which finds its condition on the pod and takes it for a previous
// replica's write "with its event": evented is set, no event is written.
// Every later report is a no-op: the bare parked pod never gets an event.
//
// Expected: one Hopeless event. Got: none, for good.
// Root cause: status.go write, the "said already" case (!item.again &&
// !item.owed) trusts a condition on the pod to mean the event was
// written; unreport (a failed first write) forgets the report while the
// write may have landed.
func TestReview18dAppliedPatchReportedAsFailedLosesTheEvent(t *testing.T) {
	pod := cronPod("bare-timeout")
	w := newOwnedWriter(t, pod)
	var once atomic.Bool
	tracker := w.f.client.Tracker()
	w.f.client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" || once.Swap(true) {
			return false, nil, nil
		}
		// Applied, then the answer is lost.
		if _, _, err := clienttesting.ObjectReaction(tracker)(a); err != nil {
			t.Fatalf("applying the patch: %v", err)
		}
		return true, nil, apierrors.NewServerTimeout(v1.Resource("pods"), "patch", 1)
	})
	w.report(pod, reasonA, true)
	w.drain()
	if w.podCondition(t, pod.Name) == nil {
		t.Fatalf("setup: the patch was not applied")
	}
	for range 3 { // the five-minute flushes: PreEnqueue parks it again
		w.report(pod, reasonA, true)
		w.drain()
	}
	if n := w.rec.count(pod.UID); n != 1 {
		t.Errorf("bare parked pod %s: %d Hopeless events, want 1", pod.Name, n)
	}
}

// TestReview18dFailoverAfterAReleaseDuplicatesTheEvent: two replicas. The
// standby B runs PreEnqueue too: it reports the bare pod, and its write
// waits for leadership. The leader A writes the condition and the event.
// A node appears that fits the pod's static predicates: both release paths
// release it (cancel: B keeps it reported, as released, not evented). A's
// attempt fails at Filter (Insufficient cpu). Failover: B leads. The node
// goes; the queue's flush runs PreEnqueue on B: parked again, same reason.
// B's report is an "again" item with an owed event (B's evented has no
// entry): it writes the condition and a second event.
//
// Expected: one Hopeless event for the pod and reason. Got: two.
// Root cause: status.go report: "event = event && w.evented[pod.UID] !=
// message" and the owed flag treat "this replica wrote no event" as "no
// event was written"; a standby's evented never holds the leader's writes.
func TestReview18dFailoverAfterAReleaseDuplicatesTheEvent(t *testing.T) {
	pod := cronPod("bare-failover")
	a := newOwnedWriter(t, pod) // the leader
	var bLeads atomic.Bool
	b, bRec := a.secondReplica(&bLeads) // the standby

	a.report(pod, reasonA, true)
	b.report(pod, reasonA, true)
	a.drain()
	if a.rec.count(pod.UID) != 1 || a.podCondition(t, pod.Name) == nil {
		t.Fatalf("setup: leader wrote %d events, condition %v", a.rec.count(pod.UID), a.podCondition(t, pod.Name))
	}
	a.cancel(pod.UID) // released on both replicas
	b.cancel(pod.UID)
	a.schedulerWrites(t, pod.Name, "0/3 nodes are available: 3 Insufficient cpu.")

	bLeads.Store(true) // failover
	b.report(pod, reasonA, true)
	drainWriter(a.ctx, b)
	if n := a.rec.count(pod.UID) + bRec.count(pod.UID); n != 1 {
		t.Errorf("bare pod %s, one reason, after a failover: %d Hopeless events (leader %d, new leader %d), want 1",
			pod.Name, n, a.rec.count(pod.UID), bRec.count(pod.UID))
	}
	if c := a.podCondition(t, pod.Name); c == nil || c.Message != reasonA {
		t.Errorf("condition %v, want %q", c, reasonA)
	}
}

// TestReview18dRestartAfterAPreFilterRejectionDuplicatesTheEvent: a bare
// pod passes PreEnqueue (the store had a node that fit, deleted before the
// cycle) and is rejected at PreFilter: the writer writes its event, the
// scheduler its condition, "0/3 nodes are available: <message>.". The
// scheduler restarts (an upgrade): the new replica's queue runs PreEnqueue
// on every pending pod; this one is parked, a first report. The condition
// on the pod is the scheduler's wording, not the plugin's message, so the
// "said already, with its event" case does not match: the new replica
// writes the condition and a second event.
//
// Expected: one Hopeless event. Got: two.
// Root cause: status.go write, the restart/failover case matches only the
// plugin's own wording (hasCondition, exact message) while the pod's
// event is also written for pods whose condition the scheduler writes.
func TestReview18dRestartAfterAPreFilterRejectionDuplicatesTheEvent(t *testing.T) {
	pod := cronPod("bare-restart")
	a := newOwnedWriter(t, pod)
	a.report(pod, reasonA, false) // rejected at PreFilter
	a.drain()
	a.schedulerWrites(t, pod.Name, "0/3 nodes are available: "+reasonA+".")
	if a.rec.count(pod.UID) != 1 {
		t.Fatalf("setup: %d events", a.rec.count(pod.UID))
	}
	var leads atomic.Bool
	leads.Store(true)
	b, bRec := a.secondReplica(&leads) // after the restart
	b.report(a.getPod(t, pod.Name), reasonA, true)
	drainWriter(a.ctx, b)
	if n := a.rec.count(pod.UID) + bRec.count(pod.UID); n != 1 {
		t.Errorf("bare pod %s, one reason, across a restart: %d Hopeless events, want 1", pod.Name, n)
	}
}

// TestReview18dOrphanedAcrossARestartGetsNoEvent: db-0 of StatefulSet db
// is parked at PreEnqueue; the leader writes its condition (the pod is
// counted on its owner's event, none of its own). The StatefulSet is
// deleted with propagationPolicy Orphan while the scheduler restarts (or
// before the old leader wrote the owed event and lost its lease). The new
// replica's first report of the now bare pod finds the condition and takes
// it for "said already, with its event": evented, no event, for good.
//
// Expected: one Hopeless event of the orphaned pod. Got: none.
// Root cause: status.go write, the "said already" case: a condition on the
// pod says nothing of its own event when it was written while the pod had
// a controller.
func TestReview18dOrphanedAcrossARestartGetsNoEvent(t *testing.T) {
	pod := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	a := newOwnedWriter(t, pod)
	a.report(pod, reasonA, true)
	a.drain()
	if a.podCondition(t, pod.Name) == nil || a.rec.count(pod.UID) != 0 {
		t.Fatalf("setup: condition %v, own events %d", a.podCondition(t, pod.Name), a.rec.count(pod.UID))
	}
	cur := a.getPod(t, pod.Name)
	cur.OwnerReferences = nil
	orphan, err := a.f.client.CoreV1().Pods("default").Update(a.ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var leads atomic.Bool
	leads.Store(true)
	b, bRec := a.secondReplica(&leads) // after the restart
	for range 3 {                      // the first park, then the five-minute flushes
		b.report(orphan, reasonA, true)
		drainWriter(a.ctx, b)
	}
	if n := bRec.count(pod.UID); n != 1 {
		t.Errorf("orphaned parked pod db-0: %d Hopeless events of its own, want 1", n)
	}
}

// TestReview18dStandbyQueueGrowsUnderChurn: a standby replica runs
// PreEnqueue and reports (its informers feed its queue), but writes
// nothing: its writer blocks in process, waiting for leadership, on the
// first item. Every later report adds the pod's UID to the workqueue;
// forget drops pending, not the queued UID. Under churn (pods created,
// parked, deleted: CronJob pods, say) a standby's queue, and its dirty
// set, grow without bound for as long as it stands by (days).
//
// Expected: the UIDs of forgotten pods leave the queue (a bounded queue).
// Got: one entry per pod ever parked.
// Root cause: status.go report queues w.queue.Add(uid) on a standby;
// forget/cancel (status.go:203-226) cannot take a UID out of the
// workqueue, and the only consumer is blocked in waitForLeadership
// (status.go process).
func TestReview18dStandbyQueueGrowsUnderChurn(t *testing.T) {
	h := newHeldWriter(t)
	h.start()
	const n = 500
	for i := range n {
		p := cronPod(fmt.Sprintf("churn-%d", i))
		p.UID = types.UID(fmt.Sprintf("churn-%d", i))
		h.report(p, reasonA, true)
		if i == 0 {
			h.waitBlocked(t)
		}
		h.forget(p.UID) // deleted
	}
	h.mu.Lock()
	maps := len(h.reported) + len(h.evented) + len(h.released) + len(h.pending) + len(h.writing)
	h.mu.Unlock()
	if maps != 0 {
		t.Errorf("writer maps hold %d entries of forgotten pods", maps)
	}
	if l := h.queue.Len(); l > 1 {
		t.Errorf("standby writer queue holds %d UIDs of %d pods, all forgotten; want at most 1", l, n)
	}
}

// TestReview18dLateSchedulerConditionStaysForGood: a bare pod parked at
// PreEnqueue has the plugin's condition and event. It is released (a node
// appeared) and attempted; Filter rejects it. During that cycle the node
// is deleted: the queue moves the pod back (a move request during the
// cycle) and PreEnqueue parks it again, same reason, an "again" item. The
// writer reads the pod from the API server before the scheduler's status
// patch for the failed attempt lands (handleSchedulingFailure patches
// after AddUnschedulablePodIfNotPresent; with async API calls the patch is
// queued): the plugin's condition is still there, so it writes nothing.
// The scheduler's "Insufficient cpu" lands after. The five-minute flushes
// report the pod again: reported, not released, evented: nothing is
// written, the pod stays parked at PreEnqueue with a condition that says
// it was tried and found no room, for good.
//
// Expected: the pod's condition says its hopeless reason again, at the
// latest after a flush. Got: "Insufficient cpu" for good.
// Root cause: status.go report returns early for a pod reported and not
// released (again := released && gated); the write that consumed the
// release ("again", status.go write default case) judged a read taken
// before the attempt's condition landed.
func TestReview18dLateSchedulerConditionStaysForGood(t *testing.T) {
	pod := cronPod("bare-late")
	w := newOwnedWriter(t, pod)
	w.report(pod, reasonA, true)
	w.drain()
	w.cancel(pod.UID) // released; the attempt fails at Filter
	w.report(pod, reasonA, true)
	w.drain() // reads the pod before the scheduler's patch lands
	w.schedulerWrites(t, pod.Name, "0/3 nodes are available: 3 Insufficient cpu.")
	for range 3 { // the five-minute flushes
		w.report(w.getPod(t, pod.Name), reasonA, true)
		w.drain()
	}
	if c := w.podCondition(t, pod.Name); c == nil || c.Message != reasonA {
		t.Errorf("pod parked at PreEnqueue for %q carries condition %v for good", reasonA, c)
	}
}

// TestReview18dNoWriteAfterReleaseOrForget (passes): for each way a write
// can be pending (first report, again, owed, event-only) a release or a
// forget before the write starts leaves no API write, and a pod re-created
// under the name (new UID) gets none of its predecessor's.
func TestReview18dNoWriteAfterReleaseOrForget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gated   bool
		again   bool
		recreat bool
		forget  bool
	}{
		{"first, released", true, false, false, false},
		{"first, forgotten", true, false, false, true},
		{"event only, released", false, false, false, false},
		{"again, released", true, true, false, false},
		{"first, re-created", true, false, true, true},
		{"event only, re-created", false, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := cronPod("nw")
			w := newOwnedWriter(t, pod)
			if tc.again {
				w.report(pod, reasonA, true)
				w.drain()
				w.cancel(pod.UID)
				w.schedulerWrites(t, pod.Name, "0/3 nodes are available: 3 Insufficient cpu.")
			}
			before := len(w.f.client.Actions())
			events := w.rec.count(pod.UID)
			w.report(pod, reasonA, tc.gated)
			if tc.forget {
				w.forget(pod.UID)
			} else {
				w.cancel(pod.UID)
			}
			if tc.recreat {
				if err := w.f.client.CoreV1().Pods("default").Delete(w.ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				np := cronPod("nw")
				np.UID = "nw-2"
				if _, err := w.f.client.CoreV1().Pods("default").Create(w.ctx, np, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				before = len(w.f.client.Actions())
			}
			// Whatever is still in the queue is processed.
			w.process(w.ctx, pod.UID)
			w.drain()
			for _, a := range w.f.client.Actions()[before:] {
				if a.GetVerb() == "patch" {
					t.Errorf("a write after the pod's release/forget: %v %s", a.GetVerb(), a.GetSubresource())
				}
			}
			if n := w.rec.count(pod.UID) - events; n != 0 {
				t.Errorf("%d events after the release/forget", n)
			}
			if w.rec.count("nw-2") != 0 {
				t.Errorf("an event on the re-created pod")
			}
		})
	}
}

// TestPodEventWithoutListOnEvents: without list on events (the replacement
// static pod's user system:kube-scheduler, unless granted), eventSaid is
// refused; the bare pod's event is written anyway, once by this replica,
// and the condition too.
func TestPodEventWithoutListOnEvents(t *testing.T) {
	pod := cronPod("bare-no-list")
	h := newHeldWriter(t, pod)
	h.leader.Store(true)
	var lists atomic.Int32
	h.client.PrependReactor("list", "events", func(clienttesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return true, nil, apierrors.NewForbidden(v1.Resource("events"), "", fmt.Errorf("user cannot list events"))
	})
	h.report(pod, reasonA, true)
	h.start()
	h.waitIdle(t)
	h.report(pod, reasonA, true) // the five-minute flush
	h.waitIdle(t)
	if n := len(h.recorder.Events); n != 1 || lists.Load() == 0 {
		t.Errorf("%d events (%d refused lists), want 1 written despite the refusal", n, lists.Load())
	}
	if h.podCondition(pod.Name) == nil {
		t.Error("no condition")
	}
}

// TestPodEventLookedForOnlyForOlderPods: the API server is asked for a
// pod's event only for a pod that may have one from before this replica
// led; a pod created later (a minute of clock skew allowed) is not: with
// thousands of bare parked pods, a list per event would scan them all.
func TestPodEventLookedForOnlyForOlderPods(t *testing.T) {
	old := cronPod("bare-old")
	h := newHeldWriter(t, old)
	young := cronPod("bare-young")
	young.CreationTimestamp = metav1.NewTime(h.clock.Now().Add(2 * eventCheckSkew))
	if _, err := h.client.CoreV1().Pods("default").Create(h.ctx, young, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.leader.Store(true)
	lists := countEventLists(h.client)
	h.start()
	waitFor(t, 5*time.Second, "the writer leads", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.leads
	})
	h.report(young, reasonA, true)
	h.waitIdle(t)
	if n := lists.Load(); n != 0 {
		t.Errorf("%d event lists for a pod created after this replica led, want 0", n)
	}
	h.report(old, reasonA, true)
	h.waitIdle(t)
	if n := lists.Load(); n != 1 {
		t.Errorf("%d event lists for a pod older than this replica's leadership, want 1", n)
	}
	if n := len(h.recorder.Events); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

// TestPodEventsLookedForOncePerNamespace: after a restart, the events of
// many older bare pods of one namespace are looked for with one list (the
// events have no watch cache: a list per pod reads the namespace's events
// from etcd each time), and an event found there is not written again.
func TestPodEventsLookedForOncePerNamespace(t *testing.T) {
	var objs []runtime.Object
	var pods []*v1.Pod
	for i := range 5 {
		p := cronPod(fmt.Sprintf("bare-%d", i))
		pods, objs = append(pods, p), append(objs, p)
	}
	h := newHeldWriter(t, objs...)
	if _, err := h.client.CoreV1().Events("default").Create(h.ctx, &v1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "bare-0.before-restart", Namespace: "default"},
		InvolvedObject: v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "default", Name: "bare-0", UID: "bare-0"},
		Reason:         EventReason, Message: reasonA, Type: v1.EventTypeWarning,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.leader.Store(true)
	lists := countEventLists(h.client)
	for _, p := range pods {
		h.report(p, reasonA, false)
	}
	h.start()
	h.waitIdle(t)
	if n := lists.Load(); n != 1 {
		t.Errorf("%d event lists for 5 pods of one namespace, want 1", n)
	}
	if n := len(h.recorder.Events); n != 4 {
		t.Errorf("%d events, want 4 (bare-0's was written before the restart)", n)
	}
}

// countEventLists counts the event lists the client is asked for, and lets
// each through.
func countEventLists(client *fake.Clientset) *atomic.Int32 {
	var lists atomic.Int32
	client.PrependReactor("list", "events", func(clienttesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return false, nil, nil
	})
	return &lists
}
