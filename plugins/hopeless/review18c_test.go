package hopeless

// Review 18c: an adversarial review of the review-18b fixes (82a8ec6): the
// status writer's ownEvent (an orphaned parked pod gets its own event), the
// pod informer's UID change, verdictCache.live and the owner report's
// ten-minute give-up.

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	fwk "k8s.io/kube-scheduler/framework"
)

// hookRecorder is a fake event recorder that runs after (if set) once an
// event was recorded.
type hookRecorder struct {
	*events.FakeRecorder
	// client, if set, gets each event as a core/v1 Event, as the real
	// recorder writes it to the API server (where other replicas see it).
	client kubernetes.Interface
	seq    atomic.Int32
	mu     sync.Mutex
	n      map[string]int // events by involved pod name
	after  func(pod *v1.Pod)
}

func (r *hookRecorder) Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	r.FakeRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
	pod, _ := regarding.(*v1.Pod)
	if r.client != nil && pod != nil {
		_, err := r.client.CoreV1().Events(pod.Namespace).Create(context.Background(), &v1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%d", pod.Name, r.seq.Add(1)), Namespace: pod.Namespace},
			InvolvedObject: v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
			Reason:         reason, Message: fmt.Sprintf(note, args...), Type: eventtype,
		}, metav1.CreateOptions{})
		if err != nil {
			panic(err)
		}
	}
	r.mu.Lock()
	if pod != nil {
		r.n[string(pod.UID)]++
	}
	after := r.after
	r.mu.Unlock()
	if after != nil && pod != nil {
		after(pod)
	}
}

func (r *hookRecorder) count(uid types.UID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[string(uid)]
}

// ownedWriter is a leading status writer with an owner report, driven
// synchronously: the test calls process itself (no run loop), so that the
// order of reports, cancels and writes is the test's.
type ownedWriter struct {
	*statusWriter
	f   *ownerFixture
	rec *hookRecorder
	ctx context.Context
}

func newOwnedWriter(t *testing.T, objs ...runtime.Object) *ownedWriter {
	t.Helper()
	f := newOwnerFixture(t, objs...)
	rec := &hookRecorder{FakeRecorder: events.NewFakeRecorder(1000), client: f.client, n: map[string]int{}}
	w := newStatusWriter(f.client, rec, 1000, f.clock)
	w.owners = f.ownerReport
	w.leading = func() bool { return true }
	return &ownedWriter{statusWriter: w, f: f, rec: rec, ctx: f.ctx}
}

// drain processes what is pending, until nothing is.
func (w *ownedWriter) drain() { drainWriter(w.ctx, w.statusWriter) }

func (w *ownedWriter) getPod(t *testing.T, name string) *v1.Pod {
	t.Helper()
	p, err := w.f.client.CoreV1().Pods("default").Get(w.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReview18cOrphanEventThenFailedConditionDuplicatesEvent: 82a8ec6
// queues an event-only item when a reported pod becomes bare. If the pod's
// first write (the condition, queued while it still had a controller) is
// in flight then and fails, unreport forgets the report (reported and
// ownEvent) but leaves the event-only item queued: it writes the pod's
// event, and the next PreEnqueue report, finding nothing reported, queues
// the condition and the event again. One pod, one reason, two events.
//
// Sequence: db-0 of StatefulSet db parked at PreEnqueue (reason A); the
// writer takes its item and reads the pod; meanwhile db-0 is orphaned and
// parked again (same reason): event-only item queued; the condition patch
// answers 500; the event-only item is written; PreEnqueue parks db-0 again.
// Expected: one Hopeless event of db-0. Got: two.
// Root cause: status.go unreport (forgets reported/ownEvent while an item
// queued for that report is still pending).
func TestReview18cOrphanEventThenFailedConditionDuplicatesEvent(t *testing.T) {
	pod := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	w := newOwnedWriter(t, pod)
	var fail atomic.Bool
	w.f.client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" && fail.Load() {
			return true, nil, apierrors.NewInternalError(errors.New("etcd leader changed"))
		}
		return false, nil, nil
	})
	orphan := pod.DeepCopy()
	orphan.OwnerReferences = nil
	w.report(pod, reasonA, true)
	get := w.current
	var once sync.Once
	w.current = func(ctx context.Context, ns, name string) (*v1.Pod, error) {
		once.Do(func() { w.report(orphan, reasonA, true) }) // orphaned and parked again meanwhile
		return get(ctx, ns, name)
	}
	fail.Store(true)
	w.process(w.ctx, pod.UID) // the condition write fails
	fail.Store(false)
	w.drain() // the event-only item
	w.report(orphan, reasonA, true)
	w.drain()
	if n := w.rec.count(pod.UID); n != 1 {
		t.Errorf("pod db-0, parked for one reason: %d Hopeless events, want 1", n)
	}
	if w.podCondition(t, pod.Name) == nil {
		t.Errorf("no PodScheduled=False condition on db-0")
	}
}

func (w *ownedWriter) podCondition(t *testing.T, name string) *v1.PodCondition {
	return podScheduledFalse(w.getPod(t, name))
}

// TestReview18cOrphanedWhileReleasedGetsNoEvent: a pod of a controller,
// parked at PreEnqueue and reported (its condition written, no event of its
// own), is released; while released its controller is deleted with
// propagationPolicy Orphan; PreEnqueue parks it again for the same reason.
// report queues {gated, again, event}: but write returns at "said already"
// when the condition is still there (the release let no scheduling attempt
// overwrite it), before the event. ownEvent keeps the pod, so no later
// report queues the event again: the bare parked pod never gets one.
//
// Expected: one Hopeless event of the orphaned pod. Got: none, for good.
// Root cause: status.go write, the hasCondition early returns skip
// item.event (an event added to an item by report's ownEvent branch).
func TestReview18cOrphanedWhileReleasedGetsNoEvent(t *testing.T) {
	pod := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	w := newOwnedWriter(t, pod)
	w.report(pod, reasonA, true)
	w.drain()
	if w.podCondition(t, pod.Name) == nil || w.rec.count(pod.UID) != 0 {
		t.Fatalf("setup: condition %v, events %d", w.podCondition(t, pod.Name), w.rec.count(pod.UID))
	}
	w.cancel(pod.UID) // released
	cur := w.getPod(t, pod.Name)
	cur.OwnerReferences = nil // orphaned
	orphan, err := w.f.client.CoreV1().Pods("default").Update(w.ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.report(orphan, reasonA, true) // parked again, same reason
	w.drain()
	w.report(orphan, reasonA, true) // and once more, later
	w.drain()
	if n := w.rec.count(pod.UID); n != 1 {
		t.Errorf("orphaned parked pod db-0: %d Hopeless events, want 1 (owner report counts it bare: %v)", n, w.f.counts())
	}
}

// TestReview18cReleaseRightAfterTheEventDuplicatesIt: a bare pod parked at
// PreFilter (the scheduler writes its condition; the writer its event). The
// writer records the event; before process removes the item from writing,
// the pod is released: cancel sees the write in flight and forgets the
// report, although its event was written. The pod is tried, rejected at
// PreFilter for the same reason again: a second event.
//
// Expected: one Hopeless event. Got: two.
// Root cause: status.go cancel treats an in-flight write as not written
// (writing is cleared only after write returns, process).
func TestReview18cReleaseRightAfterTheEventDuplicatesIt(t *testing.T) {
	pod := cronPod("bare-1")
	w := newOwnedWriter(t, pod)
	var once sync.Once
	w.rec.after = func(p *v1.Pod) { once.Do(func() { w.cancel(p.UID) }) }
	w.report(pod, reasonA, false)
	w.drain()
	w.report(pod, reasonA, false) // rejected again at PreFilter, same reason
	w.drain()
	if n := w.rec.count(pod.UID); n != 1 {
		t.Errorf("pod bare-1, parked for one reason: %d Hopeless events, want 1", n)
	}
}

// TestReview18cReleaseDuringARewriteForgetsTheEvent: a bare pod parked
// at PreEnqueue gets its condition and event. It is released and parked
// again for the same reason (an "again" item: the condition only). While
// that write reads the pod, the pod is released again: cancel sees a write
// in flight and forgets the report entirely, although the pod's event was
// written by the first item. The scheduler's attempt overwrites the
// condition (Insufficient cpu); PreEnqueue parks the pod again for reason
// A: a first report, condition and a second event.
//
// Expected: one Hopeless event. Got: two.
// Root cause: status.go cancel (queued || inFlight deletes reported and
// ownEvent, whatever earlier items wrote).
func TestReview18cReleaseDuringARewriteForgetsTheEvent(t *testing.T) {
	pod := cronPod("bare-2")
	w := newOwnedWriter(t, pod)
	w.report(pod, reasonA, true)
	w.drain()
	if w.rec.count(pod.UID) != 1 || w.podCondition(t, pod.Name) == nil {
		t.Fatalf("setup: %d events, condition %v", w.rec.count(pod.UID), w.podCondition(t, pod.Name))
	}
	w.cancel(pod.UID)            // released
	w.report(pod, reasonA, true) // parked again: again item
	get := w.current
	var once sync.Once
	w.current = func(ctx context.Context, ns, name string) (*v1.Pod, error) {
		once.Do(func() { w.cancel(pod.UID) }) // released again meanwhile
		return get(ctx, ns, name)
	}
	w.drain()
	w.current = get
	// The scheduler's attempt overwrites the condition.
	cur := w.getPod(t, pod.Name)
	for i := range cur.Status.Conditions {
		if cur.Status.Conditions[i].Type == v1.PodScheduled {
			cur.Status.Conditions[i].Message = "0/3 nodes are available: 3 Insufficient cpu."
		}
	}
	if _, err := w.f.client.CoreV1().Pods("default").UpdateStatus(w.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.report(pod, reasonA, true) // parked again, same reason
	w.drain()
	if n := w.rec.count(pod.UID); n != 1 {
		t.Errorf("pod bare-2, parked for one reason: %d Hopeless events, want 1", n)
	}
}

// TestReview18cStatusWriterRandomHistories: random histories of three
// pods, one reason: parks (gated or not), controller changes (orphaned,
// adopted) followed by a park, releases, deletions (forget, re-created
// under a new UID) and writes, whose condition patch answers ok, 409 once,
// 409 twice, or 500, with a report or a release running while the pod is
// read. Checked after every step: released and pending are subsets of
// reported, evented holds only pods not forgotten; no pod got two events; no write landed on a pod
// not parked. At the end, every parked pod is parked once more and the
// writes succeed: every bare parked pod has its event, every one its
// condition.
func TestReview18cStatusWriterRandomHistories(t *testing.T) {
	var failures []string
	kinds := map[string]bool{}
	for seed := int64(1); seed <= 120; seed++ {
		if msg := runStatusHistory(t, seed); msg != "" {
			kind := strings.Fields(msg)[2] + " " + strings.Fields(msg)[3]
			if !kinds[kind] {
				kinds[kind] = true
				failures = append(failures, msg)
			}
		}
	}
	for _, f := range failures {
		t.Error(f)
	}
}

func runStatusHistory(t *testing.T, seed int64) string {
	rnd := rand.New(rand.NewSource(seed))
	ref := controllerRef("apps/v1", "StatefulSet", "db")
	type mpod struct {
		pod    *v1.Pod
		parked bool
		gated  bool
	}
	var pods []*mpod
	var objs []runtime.Object
	for i := range 3 {
		p := podOwnedBy(fmt.Sprintf("p-%d", i), ref)
		p.UID = types.UID(fmt.Sprintf("p-%d-0", i))
		pods = append(pods, &mpod{pod: p})
		objs = append(objs, p)
	}
	w := newOwnedWriter(t, objs...)
	var log []string
	bad := ""
	fail := func(format string, args ...any) {
		if bad == "" {
			bad = fmt.Sprintf("seed %d: ", seed) + fmt.Sprintf(format, args...) + "\n  history: " + strings.Join(log, "; ")
		}
	}
	byUID := func(uid types.UID) *mpod {
		for _, m := range pods {
			if m.pod.UID == uid {
				return m
			}
		}
		return nil
	}
	var conflicts, errs atomic.Int32
	w.f.client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		name := a.(clienttesting.PatchAction).GetName()
		for _, m := range pods {
			if m.pod.Name == name && !m.parked {
				fail("condition patched on %s, not parked", name)
			}
		}
		if conflicts.Load() > 0 {
			conflicts.Add(-1)
			return true, nil, apierrors.NewConflict(v1.Resource("pods"), name, errors.New("changed"))
		}
		if errs.Load() > 0 {
			errs.Add(-1)
			return true, nil, apierrors.NewInternalError(errors.New("boom"))
		}
		return false, nil, nil
	})
	w.rec.after = func(p *v1.Pod) {
		if m := byUID(p.UID); m == nil || !m.parked {
			fail("event on %s (%s), not parked", p.Name, p.UID)
		}
	}
	park := func(m *mpod, gated bool) {
		if !gated && m.parked && m.gated {
			// Rejected at PreFilter: the scheduler attempts only a pod
			// that passed PreEnqueue, and a pod parked there passes it
			// only once released (unpark -> cancel).
			w.cancel(m.pod.UID)
		}
		m.parked, m.gated = true, gated
		if !gated {
			// Rejected at PreFilter: the scheduler writes the condition.
			cur := w.getPod(t, m.pod.Name)
			if podScheduledFalse(cur) == nil {
				cur.Status.Conditions = append(cur.Status.Conditions, v1.PodCondition{Type: v1.PodScheduled,
					Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable, Message: reasonA})
				up, err := w.f.client.CoreV1().Pods("default").UpdateStatus(w.ctx, cur, metav1.UpdateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				m.pod = up
			}
		}
		w.report(m.pod.DeepCopy(), reasonA, gated)
	}
	setOwner := func(m *mpod) {
		cur := w.getPod(t, m.pod.Name)
		if len(cur.OwnerReferences) > 0 {
			cur.OwnerReferences = nil
		} else {
			cur.OwnerReferences = []metav1.OwnerReference{ref}
		}
		up, err := w.f.client.CoreV1().Pods("default").Update(w.ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.pod = up
	}
	check := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		// evented (written events) outlives a report on purpose: a
		// release, a failed write or a re-report writes no second one.
		// It holds only pods the writer knows of.
		for uid := range w.evented {
			live := false
			for _, m := range pods {
				live = live || m.pod.UID == uid
			}
			if !live {
				fail("evented holds %s, a pod forgotten", uid)
			}
		}
		for uid := range w.released {
			if _, ok := w.reported[uid]; !ok {
				fail("released holds %s, reported does not", uid)
			}
		}
		for uid := range w.pending {
			if _, ok := w.reported[uid]; !ok {
				fail("pending holds %s, reported does not", uid)
			}
		}
		for _, m := range pods {
			if n := w.rec.count(m.pod.UID); n > 1 {
				fail("%s (%s): %d events for one reason", m.pod.Name, m.pod.UID, n)
			}
		}
	}
	gen := 0
	for step := 0; step < 60 && bad == ""; step++ {
		m := pods[rnd.Intn(len(pods))]
		switch op := rnd.Intn(8); op {
		case 0, 1:
			g := rnd.Intn(2) == 0
			log = append(log, fmt.Sprintf("park %s gated=%v", m.pod.Name, g))
			park(m, g)
		case 2:
			setOwner(m)
			log = append(log, fmt.Sprintf("owner of %s -> %d refs", m.pod.Name, len(m.pod.OwnerReferences)))
			if m.parked {
				log = append(log, fmt.Sprintf("park %s gated=true", m.pod.Name))
				park(m, true)
			}
		case 3:
			log = append(log, "release "+m.pod.Name)
			m.parked = false
			w.cancel(m.pod.UID)
		case 4:
			log = append(log, "delete+recreate "+m.pod.Name)
			m.parked = false
			if err := w.f.client.CoreV1().Pods("default").Delete(w.ctx, m.pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			w.forget(m.pod.UID)
			gen++
			p := m.pod.DeepCopy()
			p.UID, p.ResourceVersion, p.Status = types.UID(fmt.Sprintf("%s-%d", p.Name, gen)), "", v1.PodStatus{}
			np, err := w.f.client.CoreV1().Pods("default").Create(w.ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m.pod = np
		default:
			outcome := rnd.Intn(4)
			conflicts.Store(0)
			errs.Store(0)
			switch outcome {
			case 1:
				conflicts.Store(1)
			case 2:
				conflicts.Store(2)
			case 3:
				errs.Store(1)
			}
			during := rnd.Intn(4)
			get := w.current
			var once sync.Once
			w.current = func(ctx context.Context, ns, name string) (*v1.Pod, error) {
				once.Do(func() {
					switch during {
					case 1:
						setOwner(m)
						log = append(log, fmt.Sprintf("  (during) owner -> %d refs", len(m.pod.OwnerReferences)))
						if m.parked {
							park(m, true)
						}
					case 2:
						log = append(log, "  (during) release")
						m.parked = false
						w.cancel(m.pod.UID)
					}
				})
				return get(ctx, ns, name)
			}
			log = append(log, fmt.Sprintf("write %s outcome=%d during=%d", m.pod.Name, outcome, during))
			w.process(w.ctx, m.pod.UID)
			w.current = get
			conflicts.Store(0)
			errs.Store(0)
		}
		check()
	}
	if bad != "" {
		return bad
	}
	// The end: the writes succeed; every parked pod is parked once more.
	w.drain()
	for _, m := range pods {
		if m.parked {
			park(m, true)
		}
	}
	w.drain()
	check()
	for _, m := range pods {
		if !m.parked {
			continue
		}
		if len(m.pod.OwnerReferences) == 0 && w.rec.count(m.pod.UID) != 1 {
			fail("bare parked pod %s (%s): %d events, want 1", m.pod.Name, m.pod.UID, w.rec.count(m.pod.UID))
		}
		if w.podCondition(t, m.pod.Name) == nil {
			fail("parked pod %s: no condition", m.pod.Name)
		}
	}
	return bad
}

// TestReview18cRelistOfTheSamePodKeepsItParked (passes): the pod watch
// expires and the informer relists; the parked pod is still the same pod
// (same UID, a new resourceVersion): the UID check of 82a8ec6 does not
// forget it. Its verdict cache entry, lot entry and owner count stay.
func TestReview18cRelistOfTheSamePodKeepsItParked(t *testing.T) {
	pod := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	f, watcher := newWatchedTestPlugin(t, poolNode("w1", "web"), pod)
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	waitFor(t, 5*time.Second, "the informer lists db-0", func() bool {
		_, err := lister.Pods("default").Get("db-0")
		return err == nil
	})
	if s := f.plugin.PreEnqueue(f.ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue of db-0: %v", s)
	}
	cur, err := f.client.CoreV1().Pods("default").Get(f.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Labels = map[string]string{"touched": "yes"}
	if _, err := f.client.CoreV1().Pods("default").Update(f.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	watcher().Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	waitFor(t, 20*time.Second, "the informer relisted db-0", func() bool {
		p, err := lister.Pods("default").Get("db-0")
		return err == nil && p.Labels["touched"] == "yes"
	})
	time.Sleep(200 * time.Millisecond)
	if !f.parked(pod) {
		t.Errorf("db-0, the same pod after a relist, is no longer parked")
	}
	if _, ok := f.plugin.verdicts.reqs.Load(pod.UID); !ok {
		t.Errorf("db-0's requirements dropped by the relist")
	}
	f.status.mu.Lock()
	_, reported := f.status.reported[pod.UID]
	f.status.mu.Unlock()
	if !reported {
		t.Errorf("db-0's report forgotten by the relist (a second one would follow)")
	}
}

// TestReview18cOwnerGiveUpTiming (passes): a group none of whose pods is
// parked is kept through a nine-minute outage (its "no pods" event is
// written after) and dropped after a longer one, with at most a write a
// minute once backed off; a group with parked pods is never dropped.
func TestReview18cOwnerGiveUpTiming(t *testing.T) {
	for _, tc := range []struct {
		name     string
		outage   time.Duration
		released bool
		want     string // the event's type at the end; "" dropped, Warning left
	}{
		{"released, 9m outage", 9 * time.Minute, true, v1.EventTypeNormal},
		{"released, 30m outage", 30 * time.Minute, true, v1.EventTypeWarning},
		{"parked, 30m outage", 30 * time.Minute, false, v1.EventTypeWarning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newOwnerFixture(t)
			down, refused := refuseEventWrites(f.client, apierrors.NewServiceUnavailable("down"))
			pods := []*v1.Pod{podOwnedBy("app-0", controllerRef("apps/v1", "StatefulSet", "app")),
				podOwnedBy("app-1", controllerRef("apps/v1", "StatefulSet", "app"))}
			for _, p := range pods {
				f.park(p, taintMessage)
			}
			f.round(f.ctx, true)
			if tc.released {
				for _, p := range pods {
					f.remove(p.UID)
				}
			} else {
				f.remove(pods[1].UID) // the count changes: a write is due
			}
			f.clock.Step(ownerUpdateInterval)
			down.Store(true)
			for elapsed := time.Duration(0); elapsed < tc.outage; elapsed += ownerRound {
				f.round(f.ctx, true)
				f.clock.Step(ownerRound)
			}
			down.Store(false)
			if max := int32(tc.outage/ownerUpdateInterval) + 8; refused.Load() > max {
				t.Errorf("%d writes refused in %v, want at most %d", refused.Load(), tc.outage, max)
			}
			for range 180 {
				f.round(f.ctx, true)
				f.clock.Step(ownerRound)
			}
			evs := f.events(t)
			if len(evs) != 1 || evs[0].Type != tc.want {
				t.Errorf("events %v, want one %s", evs, tc.want)
			}
			if !tc.released && !strings.HasPrefix(evs[0].Message, "1 pod") {
				t.Errorf("parked group's event %q, want it to say 1 pod", evs[0].Message)
			}
		})
	}
}
