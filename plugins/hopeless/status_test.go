package hopeless

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	testingclock "k8s.io/utils/clock/testing"
)

func TestStatusWriterOncePerPod(t *testing.T) {
	registerMetrics()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pod, other := cronPod("report-1"), cronPod("report-2")
	client := fake.NewClientset(pod, other)
	recorder := events.NewFakeRecorder(100)
	w := newStatusWriter(client, recorder, 1000)
	go w.run(ctx)

	for i := 0; i < 5; i++ {
		w.report(pod, "hopeless: reason A", true)
	}
	var got *v1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		got, _ = client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		// The event follows the condition: wait for both.
		return got != nil && hasCondition(got, "hopeless: reason A") && len(recorder.Events) > 0, nil
	}); err != nil {
		t.Fatalf("condition and event not written: %v", got.Status.Conditions)
	}
	patches := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" && a.GetSubresource() == "status" {
			patches++
		}
	}
	if patches != 1 {
		t.Errorf("%d status patches for one parked pod reported 5 times, want 1", patches)
	}
	if n := len(recorder.Events); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
	// A pod parked before any attempt gets its condition; one rejected at
	// PreFilter does not (the scheduler writes it), but still gets the event.
	w.report(other, "hopeless: reason A", false)
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(recorder.Events) == 2, nil
	}); err != nil {
		t.Errorf("%d events, want 2", len(recorder.Events))
	}
	if got, _ := client.CoreV1().Pods("default").Get(ctx, other.Name, metav1.GetOptions{}); got != nil && podScheduledFalse(got) != nil {
		t.Errorf("a pod rejected at PreFilter got Ballast's condition; the scheduler writes it")
	}
}

func TestSignPod(t *testing.T) {
	pl, _ := newTestPlugin(t, "")
	frags, status := pl.SignPod(context.Background(), cronPod("p"))
	if !status.IsSuccess() {
		t.Fatalf("SignPod refused to sign, which turns off upstream batching: %v", status)
	}
	keys := map[string]bool{}
	for _, f := range frags {
		keys[f.Key] = true
	}
	for _, k := range []string{fwk.NodeSelectorSignerName, fwk.NodeAffinitySignerName, fwk.TolerationsSignerName, fwk.VolumesSignerName} {
		if !keys[k] {
			t.Errorf("SignPod lacks fragment %s", k)
		}
	}
}

func podScheduledFalse(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse {
			return c
		}
	}
	return nil
}

// A pod released and bound while its write waited must never end up bound
// with PodScheduled=False.
func TestStatusNeverLandsOnABoundPod(t *testing.T) {
	registerMetrics()
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pod, later := cronPod("bound-1"), cronPod("later")
	client := fake.NewClientset(pod, later)
	recorder := events.NewFakeRecorder(100)
	w := newStatusWriter(client, recorder, 1000)
	w.report(pod, "hopeless: reason A", true)
	w.report(later, "hopeless: reason A", true)

	// The scheduler binds the pod before the writer gets to it.
	bound := pod.DeepCopy()
	bound.Spec.NodeName = "n1"
	if _, err := client.CoreV1().Pods("default").Update(ctx, bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	go w.run(ctx)
	// The writer works in order: once the later pod has its condition, the
	// bound pod's turn has passed.
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := client.CoreV1().Pods("default").Get(ctx, later.Name, metav1.GetOptions{})
		// The event is recorded after the condition lands: wait for both.
		return err == nil && podScheduledFalse(got) != nil && len(recorder.Events) > 0, nil
	}); err != nil {
		t.Fatal("the later pod's condition and event were not written")
	}
	got, err := client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
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
	client   *fake.Clientset
	recorder *events.FakeRecorder
	clock    *testingclock.FakeClock
	leader   atomic.Bool
}

func newHeldWriter(t *testing.T, objs ...runtime.Object) *heldWriter {
	t.Helper()
	registerMetrics()
	h := &heldWriter{client: fake.NewClientset(objs...), recorder: events.NewFakeRecorder(100), clock: testingclock.NewFakeClock(time.Now())}
	h.statusWriter = newStatusWriter(h.client, h.recorder, 1000)
	h.statusWriter.clock = h.clock
	h.statusWriter.leading = h.leader.Load
	return h
}

// waitBlocked waits until the writer waits for leadership on its clock.
func (h *heldWriter) waitBlocked(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return h.clock.HasWaiters(), nil
	}); err != nil {
		t.Fatal("the writer does not wait for leadership")
	}
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
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pod := cronPod("standby-1")
	h := newHeldWriter(t, pod)
	h.report(pod, "hopeless: reason A", true)
	go h.run(ctx)
	h.waitBlocked(ctx, t)
	if n := h.statusPatches(); n != 0 || len(h.recorder.Events) != 0 {
		t.Fatalf("a standby wrote %d conditions and %d events", n, len(h.recorder.Events))
	}
	h.lead()
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := h.client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && podScheduledFalse(got) != nil, nil
	}); err != nil {
		t.Fatal("the new leader did not write the queued condition")
	}
}

// A pod released while its write is in flight (the writer took the item
// and is reading the pod) gets neither the condition nor the event: the
// scheduler is about to try it, and "hopeless" would be a stale reason.
func TestReleaseDuringWriteWritesNothing(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	h.report(pod, "hopeless: reason A", true)
	go h.run(ctx)
	select {
	case <-reading:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never read the pod")
	}
	h.cancel(pod.UID) // released by the plugin now
	close(proceed)
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.writing) == 0 && h.queue.Len() == 0, nil
	}); err != nil {
		t.Fatal("the write never finished")
	}
	if n := h.statusPatches(); n != 0 || len(h.recorder.Events) != 0 {
		t.Errorf("a pod released during its write got %d condition patches and %d events", n, len(h.recorder.Events))
	}
}

// A write still queued when the pod is released is dropped.
func TestReleaseCancelsQueuedWrite(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	released, later := cronPod("released"), cronPod("later")
	h := newHeldWriter(t, released, later)
	h.report(released, "hopeless: reason A", true)
	go h.run(ctx)
	h.waitBlocked(ctx, t)
	h.cancel(released.UID)
	h.report(later, "hopeless: reason A", true)
	h.lead()
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := h.client.CoreV1().Pods("default").Get(ctx, later.Name, metav1.GetOptions{})
		// The event follows the condition: wait for both.
		return err == nil && podScheduledFalse(got) != nil && len(h.recorder.Events) > 0, nil
	}); err != nil {
		t.Fatal("the later pod's condition and event were not written")
	}
	got, _ := h.client.CoreV1().Pods("default").Get(ctx, released.Name, metav1.GetOptions{})
	if c := podScheduledFalse(got); c != nil {
		t.Errorf("released pod got PodScheduled=False %q", c.Message)
	}
	if n := len(h.recorder.Events); n != 1 {
		t.Errorf("%d events, want 1 (none for the released pod)", n)
	}
	// Parked again for the same reason, it is reported: nothing was written.
	h.report(released, "hopeless: reason A", true)
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := h.client.CoreV1().Pods("default").Get(ctx, released.Name, metav1.GetOptions{})
		return err == nil && podScheduledFalse(got) != nil, nil
	}); err != nil {
		t.Fatal("the pod parked again was not reported")
	}
}

// The plugin cancels the queued write of a pod it releases. (Its writer
// waits until the informers synced and no elector appeared: time enough
// for the release.)
func TestPluginReleaseCancelsWrite(t *testing.T) {
	pl, client := newTestPlugin(t, "", testNode("w1", map[string]string{"pool": "web"}))
	pod, later := cronPod("report-1"), cronPod("later")
	later.Spec.NodeSelector = map[string]string{"pool": "gpu"} // stays hopeless
	pl.handle.(interface{ SetPodActivator(fwk.PodActivator) }).SetPodActivator(&recordingActivator{})
	// The writer holds its writes (a standby) until the pod is released:
	// what is tested is that the release drops the queued write.
	// (The writer reads leading only once an item is queued, after this.)
	var leader atomic.Bool
	pl.status.leading = leader.Load
	parkViaPreEnqueue(t, pl, client, pod)
	_, ctx := ktesting.NewTestContext(t)
	fitting := testNode("b1", map[string]string{"pool": "batch"}, v1.Taint{Key: "dedicated", Value: "batchjobs", Effect: v1.TaintEffectNoSchedule})
	if _, err := client.CoreV1().Nodes().Create(ctx, fitting, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, releaseWithin, true, func(context.Context) (bool, error) {
		_, parked := pl.lot.get(pod.UID)
		return !parked, nil
	}); err != nil {
		t.Fatal("the node that fits did not release the pod")
	}
	leader.Store(true)
	parkViaPreEnqueue(t, pl, client, later)
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := client.CoreV1().Pods("default").Get(ctx, later.Name, metav1.GetOptions{})
		return err == nil && podScheduledFalse(got) != nil, nil
	}); err != nil {
		t.Fatal("the later pod's condition was not written")
	}
	got, _ := client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
	if c := podScheduledFalse(got); c != nil {
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
	on := &LeaderElection{Enabled: true}
	empty := prometheus.NewRegistry()
	standby := newLeaderCheck(empty, on)
	for range 3 {
		if standby.leading() {
			t.Fatal("a replica with leader election on leads before its elector exists")
		}
	}
	reg, gauge := newGauge()
	standby = newLeaderCheck(reg, on)
	gauge.WithLabelValues("kube-scheduler").Set(0)
	if standby.leading() {
		t.Error("a standby counts as leader")
	}
	// Another elector in the same process (none in kube-scheduler, whose
	// elector is always named kube-scheduler, whatever its lease is called)
	// does not make this one lead.
	gauge.WithLabelValues("some-controller").Set(1)
	if standby.leading() {
		t.Error("leads on another elector's gauge")
	}
	gauge.WithLabelValues("kube-scheduler").Set(1)
	if !standby.leading() {
		t.Error("the lease holder does not count as leader")
	}

	// Leader election off: the only scheduler of its profiles, from the start.
	off := newLeaderCheck(empty, &LeaderElection{Enabled: false})
	if !off.leading() {
		t.Error("not leading with leader election off")
	}

	// Not told (the plugin built outside cmd/scheduler, e.g. by a test or
	// another binary): the gauge decides when it exists, else it leads.
	unknown := newLeaderCheck(empty, nil)
	if !unknown.leading() {
		t.Error("not leading with no elector and no configuration")
	}
	reg, gauge = newGauge()
	unknown = newLeaderCheck(reg, nil)
	gauge.WithLabelValues("kube-scheduler").Set(0)
	if unknown.leading() {
		t.Error("a standby of an unconfigured binary counts as leader")
	}
}
