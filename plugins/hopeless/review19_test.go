package hopeless

// Review 19: commit 111e4c7, a parked pod being deleted (a finalizer holds
// it, metadata.deletionTimestamp set, spec.nodeName empty) leaves the lot
// and its owner's count, gets no write, and PreEnqueue lets it through for
// the scheduling cycle to drop (kube-scheduler's skipPodSchedule).

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// startDeleting sets the pod's deletionTimestamp in the API server (as a
// delete of a pod held by a finalizer does) and waits until the plugin's
// informer has the deleting copy and the pod left the lot. It returns the
// deleting copy.
func (f *testPlugin) startDeleting(t *testing.T, pod *v1.Pod) *v1.Pod {
	t.Helper()
	cur, err := f.client.CoreV1().Pods(pod.Namespace).Get(f.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleting := cur.DeepCopy()
	now := metav1.NewTime(time.Now())
	deleting.DeletionTimestamp = &now
	deleting.DeletionGracePeriodSeconds = new(int64)
	if deleting, err = f.client.CoreV1().Pods(pod.Namespace).Update(f.ctx, deleting, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	waitFor(t, 5*time.Second, "the informer saw the delete start", func() bool {
		p, err := lister.Pods(pod.Namespace).Get(pod.Name)
		return err == nil && p.DeletionTimestamp != nil
	})
	waitFor(t, 5*time.Second, "the deleting pod left the lot", func() bool { return !f.parked(pod) })
	return deleting
}

// TestReview19HintKeepsDeletingPodGated: the design says a pod being
// deleting is let through by PreEnqueue "for the scheduling cycle to drop,
// as kube-scheduler drops any deleting pod". But a pod parked at
// PreEnqueue sits gated in the queue's unschedulable entities with
// HopelessPods as its pending plugin: PreEnqueue runs again only when a
// QueueingHint of HopelessPods says Queue (or at the five-minute flush).
// The deletion itself is a plain Pod/Update that matches no registered
// event; the next update that does (a toleration added, a resize) reaches
// isSchedulableAfterPodChange, which judges the deleting copy, finds it
// still hopeless and answers QueueSkip, although the pod is in no lot and
// on no count any more: Ballast keeps gating a pod it no longer parks.
// Vanilla v1.37.2 requeues it on that event (TaintToleration's
// isSchedulableAfterTargetPodTolerationChange always answers Queue) and the
// cycle drops it (skipPodSchedule, "skip schedule deleting pod").
//
// Sequence: Job pod report-1 (finalizer) is parked at PreEnqueue; its
// delete starts (deletionTimestamp set); it leaves the lot; a toleration
// that does not help is added to the deleting pod; the queue calls the
// hint for that update.
// Expected: Queue (PreEnqueue then lets the deleting pod through, as the
// design says). Got: QueueSkip; the pod stays gated by HopelessPods (and
// counted in scheduler_pending_pods{queue="gated"} and
// scheduler_unschedulable_pods{plugin="HopelessPods"}) until the flush,
// while ballast_hopeless_parked no longer counts it. Low severity.
// Fixed: every hint of the plugin queues a pod being deleted.
func TestReview19HintKeepsDeletingPodGated(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	pod := podOwnedBy("report-1", controllerRef("batch/v1", "Job", "report-1"))
	pod.Finalizers = []string{"example.com/keep"}
	f.parkViaPreEnqueue(t, pod)
	deleting := f.startDeleting(t, pod)

	updated := deleting.DeepCopy()
	updated.Spec.Tolerations = append(updated.Spec.Tolerations,
		v1.Toleration{Key: "other", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule})
	updated.ResourceVersion = "" // let the fake pick the next version
	var err error
	if updated, err = f.client.CoreV1().Pods("default").Update(f.ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	hint, err := registeredHint(t, f.plugin, fwk.TargetPod)(klog.Background(), updated, deleting, updated)
	if err != nil {
		t.Fatal(err)
	}
	if hint != fwk.Queue {
		t.Errorf("hint for an update of a pod being deleted (not parked any more): %v, want Queue so that PreEnqueue lets it through for the cycle to drop", hint)
	}
	if f.parked(pod) {
		t.Errorf("the deleting pod was parked again by the hint")
	}
}

// TestReview19DeletingPodParkedMetricBackToBaseline (passes): a parked pod
// whose delete starts takes ballast_hopeless_parked back to where it was,
// and a later PreEnqueue of the deleting copy (the five-minute flush) does
// not take it below.
func TestReview19DeletingPodParkedMetricBackToBaseline(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	pod := podOwnedBy("report-2", controllerRef("batch/v1", "Job", "report-2"))
	pod.Finalizers = []string{"example.com/keep"}
	f.createPod(t, pod)
	v, _, ok := f.plugin.verdicts.judge(pod)
	if !ok || !v.Hopeless {
		t.Fatalf("verdict %+v, want hopeless", v)
	}
	gauge := func() float64 {
		n, err := testutil.GetGaugeMetricValue(metricParked.WithLabelValues(string(v.Reason)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := gauge()
	if s := f.plugin.PreEnqueue(f.ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("PreEnqueue: %v, want parked", s)
	}
	if got := gauge(); got != base+1 {
		t.Fatalf("parked gauge %v after the park, want %v", got, base+1)
	}
	deleting := f.startDeleting(t, pod)
	if got := gauge(); got != base {
		t.Errorf("parked gauge %v after the delete started, want %v", got, base)
	}
	if s := f.plugin.PreEnqueue(f.ctx, deleting); !s.IsSuccess() {
		t.Errorf("PreEnqueue of the deleting pod: %v, want it let through", s)
	}
	if got := gauge(); got != base {
		t.Errorf("parked gauge %v after PreEnqueue of the deleting pod, want %v", got, base)
	}
	if want, got := f.freshOwnerSeries(t), f.ownerSeriesNow(t); !cmp.Equal(want, got) {
		t.Errorf("owner_parked_pods %v, want %v", got, want)
	}
}

// TestReview19DeletingBarePodGetsNoWriteWhenLeading (passes): a bare pod
// (no controller) parked at PreEnqueue on a standby has its condition and
// its own Hopeless event waiting for leadership; its delete starts before
// this replica leads. Expected and got: once it leads, neither the
// condition nor the event is written, and the writer's maps hold nothing
// of the pod.
func TestReview19DeletingBarePodGetsNoWriteWhenLeading(t *testing.T) {
	var leader atomic.Bool
	f := newConfiguredTestPlugin(t, "", func(c *components) { c.status.leading = leader.Load }, poolNode("w1", "web"))
	pod := cronPod("bare-1")
	pod.Finalizers = []string{"example.com/keep"}
	witness := cronPod("bare-witness") // stays parked: its write shows the writer ran
	f.parkViaPreEnqueue(t, pod)
	f.startDeleting(t, pod)
	leader.Store(true)
	f.parkViaPreEnqueue(t, witness)
	waitFor(t, 10*time.Second, "the witness's condition written", func() bool { return f.podCondition(witness.Name) != nil })
	time.Sleep(200 * time.Millisecond)
	p, err := f.client.CoreV1().Pods("default").Get(f.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := podScheduledFalse(p); c != nil {
		t.Errorf("the deleting pod got PodScheduled=False %q", c.Message)
	}
	// The fake recorder's events name no object: the witness has one,
	// the deleting pod must have none.
	if evs := f.podEvents(); len(evs) != 1 {
		t.Errorf("events %q, want the witness's only", evs)
	}
	w := f.status
	w.mu.Lock()
	defer w.mu.Unlock()
	_, r := w.reported[pod.UID]
	_, e := w.evented[pod.UID]
	_, rel := w.released[pod.UID]
	_, pe := w.pending[pod.UID]
	_, wr := w.writing[pod.UID]
	if r || e || rel || pe || wr {
		t.Errorf("the writer still holds the deleting pod: reported %v evented %v released %v pending %v writing %v", r, e, rel, pe, wr)
	}
}

// TestReview19StaleSnapshotAfterDeleteStarts (passes): the release loop
// read the lot before the pod's delete started and re-parks (new reason)
// or releases it after the forget. Expected and got: neither puts the
// deleting pod back in the lot or on its owner's count.
func TestReview19StaleSnapshotAfterDeleteStarts(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	pod := podOwnedBy("report-3", controllerRef("batch/v1", "Job", "report-3"))
	pod.Finalizers = []string{"example.com/keep"}
	f.parkViaPreEnqueue(t, pod)
	snap, ok := f.plugin.parking.lot.get(pod.UID)
	if !ok {
		t.Fatal("not parked")
	}
	deleting := f.startDeleting(t, pod)
	v := hopelessVerdict(snap.reason, "another reason")
	if f.plugin.parking.reparkIf(snap, deleting, snap.key, v, true) {
		t.Errorf("a stale snapshot re-parked the deleting pod")
	}
	if f.plugin.parking.unparkIf(snap) {
		t.Errorf("a stale snapshot unparked a pod no longer parked")
	}
	if f.parked(pod) {
		t.Errorf("the deleting pod is parked")
	}
	if want, got := f.freshOwnerSeries(t), f.ownerSeriesNow(t); !cmp.Equal(want, got) {
		t.Errorf("owner_parked_pods %v, want %v", got, want)
	}
}
