package hopeless

// Review 18e: an adversarial review of c37f54a and 7891b35: eventSaid (the
// API server asked for a pod's event before it is written, for pods older
// than this replica's leadership), unreport, the re-assert rule for a
// parked pod whose copy lacks the condition, and the standby's pending map.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/kubernetes/pkg/apis/core/validation"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestReview18eEventWrittenOnAPodBoundDuringTheEventLookup: a bare pod
// parked at PreEnqueue, older than this replica's leadership. Its write
// starts: the condition is written, eventDue records the event as
// written, and eventSaid lists the pod's events (events have no watch
// cache by default: the list reads the namespace's events from etcd, and
// takes its time). During that list the pod is released and bound (the
// informer's update runs podGone → forget, which takes the pod out of
// writing). The list returns "no event"; the writer writes the Hopeless
// event on the bound pod: nothing is checked between the list (an API
// call) and the event's write (another).
//
// Expected: no Hopeless event on a pod bound before the event's write
// (design.md: "a write checks before each API call that its pod is still
// parked"; status.go: "a write never lands on a bound pod").
// Got: the event is written.
// Root cause: status.go write: wanted/eventDue are checked before
// eventSaid (status.go:400 eventDue, :411 eventSaid); recorder.Eventf
// (status.go:429) follows the list with no check.
func TestReview18eEventWrittenOnAPodBoundDuringTheEventLookup(t *testing.T) {
	for _, how := range []string{"bound (forget)", "released (cancel)"} {
		t.Run(how, func(t *testing.T) {
			pod := cronPod("bare-bound-during-list")
			w := newOwnedWriter(t, pod)
			w.f.client.PrependReactor("list", "events", func(clienttesting.Action) (bool, runtime.Object, error) {
				if how == "released (cancel)" {
					w.cancel(pod.UID)
					return false, nil, nil
				}
				// Bound meanwhile: the API server has it on a node, the
				// informer's handler forgets it.
				cur, err := w.f.client.Tracker().Get(v1.SchemeGroupVersion.WithResource("pods"), pod.Namespace, pod.Name)
				if err != nil {
					t.Fatal(err)
				}
				bound := cur.(*v1.Pod).DeepCopy()
				bound.Spec.NodeName = "node-1"
				if err := w.f.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), bound, pod.Namespace); err != nil {
					t.Fatal(err)
				}
				w.forget(pod.UID)
				return false, nil, nil
			})
			w.report(pod, reasonA, true)
			w.drain()
			if n := w.rec.count(pod.UID); n != 0 {
				t.Errorf("pod %s %s while its event was looked for: %d Hopeless events written after that, want 0", pod.Name, how, n)
			}
		})
	}
}

// TestReview18ePodEventLongerThanTheAPIAllows: a bare pod whose required
// node affinity lists many values (a hostname allow-list of 80 nodes, all
// gone) is parked; the message names them all (shapes/messages.go
// describeNodeSelector), well over 1,024 bytes. The condition takes it;
// the pod's own event is handed to the events.k8s.io recorder as is: the
// API server refuses a note over 1,024 bytes (validation.NoteLengthLimit,
// the reason kube-scheduler truncates its own, schedule_one.go
// truncateMessage, and owners.go truncates the owner's note). The event
// is never written; evented says it was, so no report tries again, and
// after a failover eventSaid (which compares the full message) finds
// nothing either.
//
// Expected: a note the API server accepts (at most 1,024 bytes).
// Got: the full message.
// Root cause: status.go:429 recorder.Eventf(..., item.message) without the
// truncation owners.go:693 applies.
func TestReview18ePodEventLongerThanTheAPIAllows(t *testing.T) {
	pod := cronPod("bare-long")
	var hosts []string
	for i := range 80 {
		hosts = append(hosts, fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/10, i))
	}
	message := shapes.MessagePrefix + "no node or node group matches its node affinity (required node affinity kubernetes.io/hostname In [" +
		strings.Join(hosts, ",") + "])"
	if len(message) <= validation.NoteLengthLimit {
		t.Fatalf("setup: message of %d bytes", len(message))
	}
	h := newHeldWriter(t, pod)
	h.leader.Store(true)
	h.report(pod, message, true)
	h.start()
	h.waitIdle(t)
	select {
	case e := <-h.recorder.Events:
		note := strings.TrimPrefix(e, v1.EventTypeWarning+" "+EventReason+" ")
		if len(note) > validation.NoteLengthLimit {
			t.Errorf("the pod's own event has a note of %d bytes; the API server refuses more than %d", len(note), validation.NoteLengthLimit)
		}
	default:
		t.Fatal("no event")
	}
}

// rvPreconditions has the fake API server refuse a status patch whose
// metadata.resourceVersion is not the stored pod's, as the real one does;
// it counts the patches it let through.
func rvPreconditions(t *testing.T, client interface {
	PrependReactor(verb, resource string, reaction clienttesting.ReactionFunc)
	Tracker() clienttesting.ObjectTracker
}, applied *atomic.Int32) {
	client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		pa := a.(clienttesting.PatchAction)
		var patch struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(pa.GetPatch(), &patch); err != nil {
			t.Fatal(err)
		}
		cur, err := client.Tracker().Get(v1.SchemeGroupVersion.WithResource("pods"), pa.GetNamespace(), pa.GetName())
		if err != nil {
			return true, nil, err
		}
		if rv := cur.(*v1.Pod).ResourceVersion; patch.Metadata.ResourceVersion != rv {
			return true, nil, apierrors.NewConflict(v1.Resource("pods"), pa.GetName(), fmt.Errorf("resourceVersion %s, stored %s", patch.Metadata.ResourceVersion, rv))
		}
		applied.Add(1)
		return false, nil, nil
	})
}

// TestReview18eConflictRetryRewritesAConditionAlreadyThere: failover. The
// old leader wrote the pod's condition (resourceVersion 2); the new
// leader's informer still has version 1 (lag), so its first report judges
// the copy without the condition and patches with version 1: Conflict.
// The writer reads the latest version, which carries the very condition,
// and patches again without looking at it: a write of the same condition
// (a new lastTransitionTime, a new resourceVersion, an update event to
// every pod watcher) on a pod whose condition was already right. The same
// holds for every first report whose informer copy lags (a restart, a
// re-created informer), and for the "again" path.
//
// Expected: no applied patch (the latest version holds the condition).
// Got: one.
// Root cause: status.go:377-384: after IsConflict, latest() is patched
// unconditionally; hasCondition is not asked of the version read.
func TestReview18eConflictRetryRewritesAConditionAlreadyThere(t *testing.T) {
	stale := cronPod("bare-lag")
	stale.ResourceVersion = "1"
	api := stale.DeepCopy()
	api.ResourceVersion = "2"
	api.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse,
		Reason: v1.PodReasonUnschedulable, Message: reasonA}}
	w := newOwnedWriter(t, api)
	w.current = func(context.Context, string, string) (*v1.Pod, error) { return stale.DeepCopy(), nil }
	var applied atomic.Int32
	rvPreconditions(t, w.f.client, &applied)
	w.report(stale, reasonA, true)
	w.drain()
	if n := applied.Load(); n != 0 {
		t.Errorf("%d condition patches applied to a pod whose API version already carries it, want 0", n)
	}
}

// TestReview18eRepeatedReportsCostNoWrites (passes): a bare pod parked at
// PreEnqueue and reported 50 times over (flushes, hints) with the
// informer's copy, which carries the condition once written; released and
// re-parked five times with a copy predating the condition (the release
// loop's snapshot): one condition patch, one event, one event list, and a
// read of the API server per re-park only.
func TestReview18eRepeatedReportsCostNoWrites(t *testing.T) {
	pod := cronPod("bare-repeat")
	w := newOwnedWriter(t, pod)
	w.report(pod, reasonA, true)
	w.drain()
	base := len(w.f.client.Actions())
	for range 50 {
		w.report(w.getPod(t, pod.Name), reasonA, true)
		w.drain()
	}
	for range 5 {
		w.cancel(pod.UID)
		w.report(pod, reasonA, true) // the snapshot, no condition
		w.drain()
	}
	patches, lists, gets := 0, 0, 0
	for _, a := range w.f.client.Actions() {
		switch a.GetVerb() {
		case "patch":
			patches++
		case "list":
			if a.GetResource().Resource == "events" {
				lists++
			}
		}
	}
	for _, a := range w.f.client.Actions()[base:] {
		if a.GetVerb() == "get" {
			gets++
		}
	}
	gets -= 50 // the test's own getPod
	if patches != 1 || lists != 1 || w.rec.count(pod.UID) != 1 {
		t.Errorf("%d patches, %d event lists, %d events, want 1 each", patches, lists, w.rec.count(pod.UID))
	}
	if gets > 5*2 {
		t.Errorf("%d reads for 5 re-parks", gets)
	}
}

// TestReview18eStandbyReportsWrittenOnceLeading (passes): reports made
// while standing by (including reports with the copy lacking the
// condition, releases and re-parks, and a forgotten pod) are written once
// this replica leads: each parked pod gets its condition and one event,
// the forgotten and released ones nothing.
func TestReview18eStandbyReportsWrittenOnceLeading(t *testing.T) {
	parked, released, gone := cronPod("sb-parked"), cronPod("sb-released"), cronPod("sb-gone")
	h := newHeldWriter(t, parked, released, gone)
	h.start()
	for range 3 {
		h.report(parked, reasonA, true)
		h.report(released, reasonA, true)
		h.report(gone, reasonA, true)
		h.cancel(released.UID)
	}
	h.waitBlocked(t)
	h.forget(gone.UID)
	h.report(parked, reasonA, true)
	if n := h.statusPatches(); n != 0 {
		t.Fatalf("%d writes while standing by", n)
	}
	h.lead()
	waitFor(t, 5*time.Second, "the writer leads", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.leads
	})
	h.waitIdle(t)
	if h.podCondition(parked.Name) == nil || h.podCondition(released.Name) != nil || h.podCondition(gone.Name) != nil {
		t.Errorf("conditions: parked %v, released %v, gone %v", h.podCondition(parked.Name), h.podCondition(released.Name), h.podCondition(gone.Name))
	}
	if n := len(h.recorder.Events); n != 1 {
		t.Errorf("%d events, want 1 (the parked pod's)", n)
	}
	if n := h.statusPatches(); n != 1 {
		t.Errorf("%d status patches, want 1", n)
	}
}

// TestReview18eFailoverEventOfAnOlderPodFound (passes): the old leader
// wrote a bare pod's event; the new leader, leading since after the pod
// was created (within the skew), finds it and writes none.
func TestReview18eFailoverEventOfAnOlderPodFound(t *testing.T) {
	pod := cronPod("bare-older")
	a := newOwnedWriter(t, pod)
	pod.CreationTimestamp = metav1.NewTime(a.f.clock.Now())
	a.report(pod, reasonA, true)
	a.drain()
	var bLeads atomic.Bool
	bLeads.Store(true)
	b, bRec := a.secondReplica(&bLeads)
	a.f.clock.Step(30 * time.Second) // the lease expires, B leads
	b.leads, b.leadSince = true, a.f.clock.Now()
	b.report(pod, reasonA, true)
	drainWriter(a.ctx, b)
	if n := a.rec.count(pod.UID) + bRec.count(pod.UID); n != 1 {
		t.Errorf("%d events across the failover, want 1", n)
	}
}
