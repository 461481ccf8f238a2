package hopeless

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

func TestStatusWriterOncePerPod(t *testing.T) {
	pod, other := cronPod("report-1"), cronPod("report-2")
	w := newHeldWriter(t, pod, other)
	w.leader.Store(true)
	client, recorder := w.client, w.recorder
	w.start()

	for i := 0; i < 5; i++ {
		w.report(pod, reasonA, true)
	}
	// The event follows the condition: wait for both.
	w.waitWritten(t, pod.Name, true)
	if patches := w.statusPatches(); patches != 1 {
		t.Errorf("%d status patches for one parked pod reported 5 times, want 1", patches)
	}
	if n := len(recorder.Events); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	// A pod parked before any attempt gets its condition; one rejected at
	// PreFilter does not (the scheduler writes it), but still gets the event.
	w.report(other, reasonA, false)
	waitFor(t, 5*time.Second, "the second pod's event", func() bool { return len(recorder.Events) == 2 })
	if got, _ := client.CoreV1().Pods("default").Get(w.ctx, other.Name, metav1.GetOptions{}); got != nil && podScheduledFalse(got) != nil {
		t.Errorf("a pod rejected at PreFilter got Ballast's condition; the scheduler writes it")
	}
}

// A pod released and bound while its write waited must never end up bound
// with PodScheduled=False.
func TestStatusNeverLandsOnABoundPod(t *testing.T) {
	pod, later := cronPod("bound-1"), cronPod("later")
	w := newHeldWriter(t, pod, later)
	w.leader.Store(true)
	client, recorder := w.client, w.recorder
	w.report(pod, reasonA, true)
	w.report(later, reasonA, true)

	// The scheduler binds the pod before the writer gets to it.
	bound := pod.DeepCopy()
	bound.Spec.NodeName = "n1"
	if _, err := client.CoreV1().Pods("default").Update(w.ctx, bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.start()
	// The writer works in order: once the later pod has its condition and
	// event, the bound pod's turn has passed.
	w.waitWritten(t, later.Name, true)
	got, err := client.CoreV1().Pods("default").Get(w.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := podScheduledFalse(got); c != nil {
		t.Errorf("bound pod got PodScheduled=False %q", c.Message)
	}
	if n := len(recorder.Events); n != 1 {
		t.Errorf("%d events, want 1 (none for the bound pod)", n)
	}
}

// heldWriter is a status writer on a fake clock that does not lead until
// the test says so.
type heldWriter struct {
	*statusWriter
	ctx      context.Context
	client   *fake.Clientset
	recorder *events.FakeRecorder
	clock    *testingclock.FakeClock
	leader   atomic.Bool
}

func newHeldWriter(t *testing.T, objs ...runtime.Object) *heldWriter {
	t.Helper()
	registerMetrics()
	ctx := testContext(t)
	h := &heldWriter{ctx: ctx, client: fake.NewClientset(objs...), recorder: events.NewFakeRecorder(100),
		clock: testingclock.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))}
	h.statusWriter = newStatusWriter(h.client, h.recorder, 1000, h.clock)
	h.statusWriter.leading = h.leader.Load
	return h
}

// start runs the writer until the test ends.
func (h *heldWriter) start() { go h.run(h.ctx) }

// reasonA is the message the writer tests report.
const reasonA = shapes.MessagePrefix + "reason A"

// waitBlocked waits until the writer waits for leadership on its clock.
func (h *heldWriter) waitBlocked(t *testing.T) {
	t.Helper()
	waitFor(t, 5*time.Second, "the writer waits for leadership", h.clock.HasWaiters)
}

// podCondition returns the pod's PodScheduled=False condition, nil if it
// has none.
func (h *heldWriter) podCondition(name string) *v1.PodCondition {
	p, err := h.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return podScheduledFalse(p)
}

// waitWritten waits until the pod has its condition and, with event, an
// event was recorded (the event follows the condition).
func (h *heldWriter) waitWritten(t *testing.T, name string, event bool) {
	t.Helper()
	waitFor(t, 5*time.Second, "the condition of "+name+" written", func() bool {
		return h.podCondition(name) != nil && (!event || len(h.recorder.Events) > 0)
	})
}

// waitIdle waits until the writer has handled everything queued: nothing
// pending, nothing being written.
func (h *heldWriter) waitIdle(t *testing.T) {
	t.Helper()
	waitFor(t, 5*time.Second, "the writer handled its queue", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.pending) == 0 && len(h.writing) == 0 && h.queue.Len() == 0
	})
}

func (h *heldWriter) lead() {
	h.leader.Store(true)
	h.clock.Step(leaderPoll)
}

func (h *heldWriter) statusPatches() int {
	n := 0
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "patch" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// Standby replicas run PreEnqueue too (their informers feed their queue);
// only the leader may write. Two replicas must make one event per pod.
func TestStandbyWritesNothing(t *testing.T) {
	pod := cronPod("standby-1")
	h := newHeldWriter(t, pod)
	h.report(pod, reasonA, true)
	h.start()
	h.waitBlocked(t)
	if n := h.statusPatches(); n != 0 || len(h.recorder.Events) != 0 {
		t.Fatalf("a standby wrote %d conditions and %d events", n, len(h.recorder.Events))
	}
	h.lead()
	h.waitWritten(t, pod.Name, false)
}

// A pod released while its write is in flight (the writer took the item
// and is reading the pod) gets neither the condition nor the event: the
// scheduler is about to try it, and "hopeless" would be a stale reason.
func TestReleaseDuringWriteWritesNothing(t *testing.T) {
	pod := cronPod("released-in-flight")
	h := newHeldWriter(t, pod)
	h.leader.Store(true)
	reading, proceed := make(chan struct{}), make(chan struct{})
	get := h.statusWriter.current
	h.statusWriter.current = func(ctx context.Context, namespace, name string) (*v1.Pod, error) {
		close(reading)
		<-proceed
		return get(ctx, namespace, name)
	}
	h.report(pod, reasonA, true)
	h.start()
	select {
	case <-reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never read the pod")
	}
	h.cancel(pod.UID) // released by the plugin now
	close(proceed)
	h.waitIdle(t)
	if n := h.statusPatches(); n != 0 || len(h.recorder.Events) != 0 {
		t.Errorf("a pod released during its write got %d condition patches and %d events", n, len(h.recorder.Events))
	}
}

// A write still queued when the pod is released is dropped.
func TestReleaseCancelsQueuedWrite(t *testing.T) {
	released, later := cronPod("released"), cronPod("later")
	h := newHeldWriter(t, released, later)
	h.report(released, reasonA, true)
	h.start()
	h.waitBlocked(t)
	h.cancel(released.UID)
	h.report(later, reasonA, true)
	h.lead()
	h.waitWritten(t, later.Name, true)
	if c := h.podCondition(released.Name); c != nil {
		t.Errorf("released pod got PodScheduled=False %q", c.Message)
	}
	if n := len(h.recorder.Events); n != 1 {
		t.Errorf("%d events, want 1 (none for the released pod)", n)
	}
	// Parked again for the same reason, it is reported: nothing was written.
	h.report(released, reasonA, true)
	h.waitWritten(t, released.Name, false)
}

// releasedAndOverwritten writes pod's report, releases the pod, has the
// scheduler overwrite the condition on the API server, and makes the
// writer's copy (current) the stale one that still holds reasonA.
func releasedAndOverwritten(t *testing.T, h *heldWriter, pod *v1.Pod) (restore func()) {
	t.Helper()
	h.leader.Store(true)
	h.report(pod, reasonA, true)
	h.start()
	h.waitWritten(t, pod.Name, true)
	h.waitIdle(t)
	stale, err := h.client.CoreV1().Pods("default").Get(h.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.cancel(pod.UID) // released
	attempted := stale.DeepCopy()
	attempted.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable,
		Message: "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: batch}."}}
	if _, err := h.client.CoreV1().Pods("default").UpdateStatus(h.ctx, attempted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	get := h.statusWriter.current
	h.statusWriter.current = func(context.Context, string, string) (*v1.Pod, error) { return stale, nil }
	return func() { h.statusWriter.current = get }
}

// A pod parked again, after its release, for the reason it was reported
// with gets its condition again when a scheduling attempt overwrote it,
// even while the informer's copy (what the writer reads first) still holds
// the condition as reported before the release.
func TestReparkAfterReleaseReadsPastAStaleCopy(t *testing.T) {
	pod := cronPod("reparked")
	h := newHeldWriter(t, pod)
	releasedAndOverwritten(t, h, pod)
	h.report(pod, reasonA, true) // hopeless again, for the same reason
	waitFor(t, 5*time.Second, "the condition written again", func() bool {
		c := h.podCondition(pod.Name)
		return c != nil && c.Message == reasonA
	})
	if n := len(h.recorder.Events); n != 1 {
		t.Errorf("%d events, want 1: a pod parked again for its reason gets no second event", n)
	}
}

// The plugin cancels the queued write of a pod it releases. (Its writer
// waits until the informers synced and no elector appeared: time enough
// for the release.)
func TestPluginReleaseCancelsWrite(t *testing.T) {
	// The writer holds its writes (a standby) until the pod is released:
	// what is tested is that the release drops the queued write.
	var leader atomic.Bool
	f := newConfiguredTestPlugin(t, "", func(c *components) { c.status.leading = leader.Load }, poolNode("w1", "web"))
	pod, later := cronPod("report-1"), cronPod("later")
	later.Spec.NodeSelector = map[string]string{"pool": "gpu"} // stays hopeless
	f.setActivator(&recordingActivator{})
	f.parkViaPreEnqueue(t, pod)
	if _, err := f.client.CoreV1().Nodes().Create(f.ctx, poolNode("b1", "batch", batchjobsTaint), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, releaseWithin, "the node that fits released the pod", func() bool { return !f.parked(pod) })
	leader.Store(true)
	f.parkViaPreEnqueue(t, later)
	waitFor(t, 10*time.Second, "the later pod's condition written", func() bool { return f.podCondition(later.Name) != nil })
	if c := f.podCondition(pod.Name); c != nil {
		t.Errorf("released pod got PodScheduled=False %q", c.Message)
	}
}

func TestLeaderCheck(t *testing.T) {
	newGauge := func() (*prometheus.Registry, *prometheus.GaugeVec) {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: leaderMetric}, []string{"name"})
		reg.MustRegister(g)
		return reg, g
	}

	// The binary runs with leader election (kube-scheduler's default). In
	// v1.37.2 the elector, and with it the gauge, is created only after
	// every informer handler synced (cmd/kube-scheduler/app/server.go), which
	// can take minutes on a large cluster: absence is never leadership, for
	// however long it lasts.
	// The gauge is read again only leaderRecheck after an answer other
	// than "leads" (step: the time the check then waits).
	clk := testingclock.NewFakePassiveClock(time.Now())
	step := func() { clk.SetTime(clk.Now().Add(leaderRecheck)) }
	on := &LeaderElection{Enabled: true}
	empty := prometheus.NewRegistry()
	standby := newLeaderCheck(empty, on, clk)
	for range 3 {
		if standby.leading() {
			t.Fatal("a replica with leader election on leads before its elector exists")
		}
		step()
	}
	reg, gauge := newGauge()
	gathers := &countingGatherer{Gatherer: reg}
	standby = newLeaderCheck(gathers, on, clk)
	gauge.WithLabelValues("kube-scheduler").Set(0)
	if standby.leading() {
		t.Error("a standby counts as leader")
	}
	for range 10 {
		clk.SetTime(clk.Now().Add(leaderRecheck / 20))
		if standby.leading() {
			t.Error("a standby counts as leader")
		}
	}
	if gathers.n != 1 {
		t.Errorf("a standby asked %d times within %v gathered the registry %d times, want once", 11, leaderRecheck/2, gathers.n)
	}
	step()
	// Another elector in the same process (none in kube-scheduler, whose
	// elector is always named kube-scheduler, whatever its lease is called)
	// does not make this one lead.
	gauge.WithLabelValues("some-controller").Set(1)
	if standby.leading() {
		t.Error("leads on another elector's gauge")
	}
	gauge.WithLabelValues("kube-scheduler").Set(1)
	if standby.leading() {
		t.Error("the gauge was read again before leaderRecheck passed")
	}
	step()
	if !standby.leading() {
		t.Error("the lease holder does not count as leader")
	}
	n := gathers.n
	for range 5 {
		if !standby.leading() {
			t.Error("the leader stopped leading")
		}
	}
	if gathers.n != n {
		t.Errorf("the leader gathered the registry %d more times, want none: leadership once seen is kept", gathers.n-n)
	}

	// Leader election off: the only scheduler of its profiles, from the start.
	off := newLeaderCheck(empty, &LeaderElection{Enabled: false}, clk)
	if !off.leading() {
		t.Error("not leading with leader election off")
	}

	// Not told (the plugin built outside cmd/scheduler, e.g. by a test or
	// another binary): the gauge decides when it exists, else it leads.
	unknown := newLeaderCheck(empty, nil, clk)
	if !unknown.leading() {
		t.Error("not leading with no elector and no configuration")
	}
	reg, gauge = newGauge()
	unknown = newLeaderCheck(reg, nil, clk)
	gauge.WithLabelValues("kube-scheduler").Set(0)
	if unknown.leading() {
		t.Error("a standby of an unconfigured binary counts as leader")
	}
}

// countingGatherer counts the gathers of a registry.
type countingGatherer struct {
	prometheus.Gatherer
	n int
}

func (c *countingGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.n++
	return c.Gatherer.Gather()
}

// What the writer does when the condition patch does not simply succeed.
func TestStatusWriteOutcomes(t *testing.T) {
	conflict := apierrors.NewConflict(v1.Resource("pods"), "report-1", fmt.Errorf("changed"))
	tests := []struct {
		name string
		// react answers the n-th status patch (from 1); handled false passes
		// it on to the tracker.
		react         func(h *heldWriter, n int) (handled bool, err error)
		wantCondition bool
		wantEvents    int
		// wantReportedAgain: a later report of the same message is written.
		wantReportedAgain bool
	}{
		{name: "written", react: func(*heldWriter, int) (bool, error) { return false, nil },
			wantCondition: true, wantEvents: 1},
		{name: "conflict: the latest version is patched", react: func(_ *heldWriter, n int) (bool, error) { return n == 1, conflict },
			wantCondition: true, wantEvents: 1},
		{name: "conflict: bound meanwhile, nothing is written", react: func(h *heldWriter, n int) (bool, error) {
			bound := cronPod("report-1")
			bound.Spec.NodeName = "n1"
			if err := h.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), bound, "default"); err != nil {
				return true, err
			}
			return true, conflict
		}},
		{name: "API error: reported again later", react: func(h *heldWriter, n int) (bool, error) {
			return n == 1, apierrors.NewInternalError(fmt.Errorf("etcd"))
		}, wantReportedAgain: true},
		{name: "pod gone", react: func(h *heldWriter, n int) (bool, error) {
			return true, apierrors.NewNotFound(v1.Resource("pods"), "report-1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := cronPod("report-1")
			h := newHeldWriter(t, pod)
			h.leader.Store(true)
			var patches atomic.Int32
			h.client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() != "status" {
					return false, nil, nil
				}
				handled, err := tt.react(h, int(patches.Add(1)))
				return handled, nil, err
			})
			h.report(pod, reasonA, true)
			h.start()
			h.waitIdle(t)
			if got := h.podCondition(pod.Name) != nil; got != tt.wantCondition {
				t.Errorf("condition written %v, want %v", got, tt.wantCondition)
			}
			if n := len(h.recorder.Events); n != tt.wantEvents {
				t.Errorf("%d events, want %d", n, tt.wantEvents)
			}
			// Written again by a later report: not reported, or reported
			// as released (the write may have been applied: the next
			// report checks the API server).
			h.mu.Lock()
			_, reported := h.reported[pod.UID]
			_, released := h.released[pod.UID]
			h.mu.Unlock()
			if again := !reported || released; again != tt.wantReportedAgain {
				t.Errorf("a later report written again: %v (reported %v, released %v), want %v", again, reported, released, tt.wantReportedAgain)
			}
		})
	}
}
