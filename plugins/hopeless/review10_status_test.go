package hopeless

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFailoverWritesNoSecondEvent (review10): issue 10 asks for one event per
// parked pod, not one per replica. A standby runs PreEnqueue and queues its
// report (TestStandbyWritesNothing); when it takes over (the old leader's
// lease expired, or a rolling update of the two-replica deployment) it
// writes every queued report, although the old leader already wrote the
// condition and the event for the same reason. The writer skips the patch
// when the condition is already there (hasCondition), but records the event
// anyway: after every failover each parked pod shows a second, identical
// event. The event the previous leader wrote, in the API server, is the
// record that it was sent (eventSaid; review 18d: a condition is not, the
// scheduler writes it too).
func TestFailoverWritesNoSecondEvent(t *testing.T) {
	const msg = reasonA
	pod := cronPod("failover-1")
	// What the old leader wrote: the condition (and its event).
	pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable, Message: msg}}
	h := newHeldWriter(t, pod)
	if _, err := h.client.CoreV1().Events("default").Create(h.ctx, &v1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: pod.Name + ".old-leader", Namespace: "default"},
		InvolvedObject: v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "default", Name: pod.Name, UID: pod.UID},
		Reason:         EventReason, Message: msg, Type: v1.EventTypeWarning,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.report(pod, msg, true) // the standby's PreEnqueue parked it too
	h.start()
	h.waitBlocked(t)
	h.lead() // the standby takes over
	// Wait until the writer handled the item: nothing pending, nothing
	// being written. The event, if any, was recorded by then.
	h.waitIdle(t)
	if n := len(h.recorder.Events); n != 0 {
		t.Errorf("the new leader recorded %d event(s) for a pod whose condition already says %q: a second identical event after failover: %q",
			n, msg, <-h.recorder.Events)
	}
	if got, err := h.client.CoreV1().Pods("default").Get(h.ctx, pod.Name, metav1.GetOptions{}); err != nil || !hasCondition(got, msg) {
		t.Errorf("condition lost: %v", err)
	}
}
