package hopeless

// Review 18: the plugin's bookkeeping of parked pods (the lot, the owner
// report, the status writer) against the pods that really are parked.
//
// The oracle of the owner tests is a fresh count: every pod the API server
// holds, unbound, whose verdict is hopeless, counted by its controller as
// the report resolves it (a ReplicaSet to its Deployment, a Job to itself:
// the test plugin has no metadata client), or as a bare pod of its
// namespace. The owner metrics must say exactly that, and no owner event
// may keep saying "N pods ... are parked" for a controller that has none.

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// freshOwnerSeries is the oracle: owner_parked_pods as it must read for the
// pods the API server holds now.
func (f *testPlugin) freshOwnerSeries(t *testing.T) map[[2]string]float64 {
	t.Helper()
	pods, err := f.client.CoreV1().Pods(metav1.NamespaceAll).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]float64{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
			continue
		}
		if v, _, ok := f.plugin.verdicts.judge(pod); !ok || !v.Hopeless {
			continue
		}
		kind := ownerKindNone
		if ref := metav1.GetControllerOf(pod); ref != nil {
			kind = metricOwnerKind(ref.Kind)
			if ref.Kind == "ReplicaSet" {
				rs, err := f.client.AppsV1().ReplicaSets(pod.Namespace).Get(f.ctx, ref.Name, metav1.GetOptions{})
				if err == nil && rs.UID == ref.UID {
					if c := metav1.GetControllerOf(rs); c != nil {
						kind = metricOwnerKind(c.Kind)
					}
				}
			}
		}
		out[[2]string{kind, pod.Namespace}]++
	}
	return out
}

// ownerSeriesNow is owner_parked_pods as the plugin exports it, after a
// round of its owner report (resolving what the informers can tell).
func (f *testPlugin) ownerSeriesNow(t *testing.T) map[[2]string]float64 {
	t.Helper()
	f.status.owners.resolvePending(f.ctx)
	return gatherOwnerSeries(t, "ballast_hopeless_owner_parked_pods")
}

// ownerEventsClaimingParked returns the owner events that say pods of their
// controller are parked (a count above zero), as "Kind/name: message".
func (f *testPlugin) ownerEventsClaimingParked(t *testing.T) []string {
	t.Helper()
	evs, err := f.client.CoreV1().Events(metav1.NamespaceAll).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		if e.Reason == OwnerEventReason && e.Type == v1.EventTypeWarning {
			out = append(out, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+": "+e.Message)
		}
	}
	return out
}

// TestReview18ParkAfterTheDeleteWasSeenLeaksForever: the plugin's pod
// informer handler and the scheduler's queue are separate listeners of the
// one pod informer, and the scheduling cycle runs on its own goroutine: the
// plugin can see a pod's deletion before the queue runs PreEnqueue on its
// last copy (a lagging listener's Add/Update, the 5-minute flush) or before
// the cycle that popped it runs PreFilter. An unscheduled pod is deleted at
// once (no DeletionTimestamp update first), and a CronJob with
// concurrencyPolicy Replace deletes its pods all the time.
//
// Sequence: a pod of Job report-29000000 is parked at PreEnqueue; it is
// deleted; the plugin's handler forgets it (podGone); then the queue's
// PreEnqueue (or the cycle's PreFilter) judges the copy it holds and parks
// it again. Nobody ever tells the plugin of that pod again: it stays in the
// lot, counted in owner_parked_pods{Job,default}, and the leader writes and
// then refreshes, every 30 minutes, "1 pod of this Job is parked" on a Job
// that has no pod at all. Expected: the owner metrics equal the fresh count
// (none) and the lot is empty.
func TestReview18ParkAfterTheDeleteWasSeenLeaksForever(t *testing.T) {
	for _, point := range []string{"PreEnqueue", "PreFilter"} {
		t.Run(point, func(t *testing.T) {
			f := newTestPlugin(t, "", poolNode("w1", "web"))
			pod := podOwnedBy("report-29000000-x", controllerRef("batch/v1", "Job", "report-29000000"))
			f.parkViaPreEnqueue(t, pod)
			if err := f.client.CoreV1().Pods("default").Delete(f.ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the plugin saw the deletion", func() bool { return !f.parked(pod) })

			// The queue (or the cycle) still holds the pod's last copy.
			var code fwk.Code
			switch point {
			case "PreEnqueue":
				code = f.plugin.PreEnqueue(f.ctx, pod).Code()
			case "PreFilter":
				_, s := f.plugin.PreFilter(f.ctx, nil, pod, nil)
				code = s.Code()
			}
			if code != fwk.UnschedulableAndUnresolvable {
				t.Fatalf("setup: %s of the copy: %v", point, code)
			}
			// The leader's owner report writes what it counts.
			waitFor(t, 5*time.Second, "an owner round", func() bool {
				return len(f.ownerEventsClaimingParked(t)) > 0 || len(f.ownerSeriesNow(t)) == 0
			})
			// And a full re-check of the lot changes nothing.
			f.release.requestRecheck()

			fresh := f.freshOwnerSeries(t)
			var got map[[2]string]float64
			if err := pollFor(5*time.Second, func() bool {
				got = f.ownerSeriesNow(t)
				return cmp.Equal(fresh, got) && !f.parked(pod)
			}); err != nil {
				t.Errorf("after the pod was deleted and then parked from the %s copy: owner_parked_pods %v, fresh count %v; still in the lot: %v; owner events saying pods are parked: %q",
					point, got, fresh, f.parked(pod), f.ownerEventsClaimingParked(t))
			}
		})
	}
}

// pollFor waits up to within for cond; it returns an error if it never held.
func pollFor(within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReview18ControllerReferenceChangeKeepsTheOldOwner: the owner report
// reads a pod's controller reference when it first parks it, and a park for
// the same message returns early (ownerReport.park), so a pod whose
// controller reference changed while it stays parked for one reason keeps
// being counted (and reported) on its old owner.
//
// Orphaned: the ReplicaSet web-5d8f (no Deployment) is deleted with
// propagationPolicy Orphan; the garbage collector removes the pod's
// ownerReference; the pod stays pending, hopeless, now a bare pod. The
// queue runs PreEnqueue on the updated copy (its 5-minute flush at the
// latest). Expected: owner_parked_pods{none,default}=1 and nothing on
// ReplicaSet; the event on the deleted ReplicaSet says its pods left.
// Got: {ReplicaSet,default}=1 forever, and "1 pod of this ReplicaSet is
// parked" refreshed every 30 minutes on a ReplicaSet that no longer exists.
//
// Adopted: the reverse (a bare pod adopted by a ReplicaSet whose selector
// matches it): counted as a bare pod forever.
func TestReview18ControllerReferenceChangeKeepsTheOldOwner(t *testing.T) {
	rsRef := controllerRef("apps/v1", "ReplicaSet", "web-5d8f")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-5d8f", UID: rsRef.UID}}
	for _, tt := range []struct {
		name        string
		before      []metav1.OwnerReference
		after       []metav1.OwnerReference
		rsAfterward bool
	}{
		{"orphaned", []metav1.OwnerReference{rsRef}, nil, false},
		{"adopted", nil, []metav1.OwnerReference{rsRef}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := []runtime.Object{poolNode("w1", "web")}
			if !tt.rsAfterward {
				objs = append(objs, rs)
			}
			f := newTestPlugin(t, "", objs...)
			pod := podOwnedBy("web-5d8f-abcde", tt.before...)
			f.parkViaPreEnqueue(t, pod)
			f.ownerSeriesNow(t)

			if tt.rsAfterward {
				if _, err := f.client.AppsV1().ReplicaSets("default").Create(f.ctx, rs, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			} else if err := f.client.AppsV1().ReplicaSets("default").Delete(f.ctx, rs.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			updated := pod.DeepCopy()
			updated.OwnerReferences = tt.after
			updated, err := f.client.CoreV1().Pods("default").Update(f.ctx, updated, metav1.UpdateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s := f.plugin.PreEnqueue(f.ctx, updated); s.Code() != fwk.UnschedulableAndUnresolvable {
				t.Fatalf("setup: the updated pod is not parked: %v", s)
			}
			fresh := f.freshOwnerSeries(t)
			var got map[[2]string]float64
			if err := pollFor(3*time.Second, func() bool {
				got = f.ownerSeriesNow(t)
				return cmp.Equal(fresh, got)
			}); err != nil {
				t.Errorf("controller reference %v -> %v while parked for one reason: owner_parked_pods %v, want the fresh count %v (owner events saying pods are parked: %q)",
					refNames(tt.before), refNames(tt.after), got, fresh, f.ownerEventsClaimingParked(t))
			}
		})
	}
}

func refNames(refs []metav1.OwnerReference) []string {
	out := []string{}
	for _, r := range refs {
		out = append(out, r.Kind+"/"+r.Name)
	}
	return out
}

// releasingReporter is the status writer as the parker's reporter, with a
// hook run once, when armed, at the start of a report: i.e. after the lot
// took the park and before the writer and the owner report hear of it, the
// window another goroutine (the release loop, the pod informer) can act in.
type releasingReporter struct {
	*statusWriter
	mu     sync.Mutex
	during func(pod *v1.Pod)
}

func (r *releasingReporter) report(pod *v1.Pod, message string, gated bool) {
	r.mu.Lock()
	f := r.during
	r.during = nil
	r.mu.Unlock()
	if f != nil {
		f(pod)
	}
	r.statusWriter.report(pod, message, gated)
}

// TestReview18ReleaseBetweenParkAndReport: parker.park puts the pod in the
// lot and only then, outside the lot's lock, tells the status writer (and
// through it the owner report). The release loop can take the pod out of
// the lot in between: its cancel finds nothing queued and nothing counted,
// so the report that follows counts a released pod on its owner and queues
// its "hopeless" condition. Nothing takes either back: the activated pod's
// next PreEnqueue passes and its unpark finds no lot entry, so it cancels
// nothing.
//
// Sequence (the queue's PreEnqueue and the release loop on their own
// goroutines): pod report-1 of StatefulSet db (pool=batch, tolerates
// dedicated=batchjobs) is judged hopeless at PreEnqueue and enters the lot;
// node b1 (pool=batch, taint dedicated=batchjobs) registers, the re-check
// finds the pod placeable, unparks it and activates it; PreEnqueue's report
// runs; the activation's PreEnqueue passes. Expected: no owner counts the
// pod, and the writer writes nothing for it (it is not parked). Got:
// owner_parked_pods{StatefulSet,default}=1 while the pod waits in the active
// queue (until it is bound or deleted), and PodScheduled=False "hopeless"
// written on it, possibly over the scheduler's own condition of a failed
// attempt.
func TestReview18ReleaseBetweenParkAndReport(t *testing.T) {
	hook := &releasingReporter{}
	// The writer leads once the pod was released: a write made while the
	// pod was parked (before the release) is not what this test is about.
	var leading atomic.Bool
	f := newConfiguredTestPlugin(t, "", func(c *components) {
		hook.statusWriter = c.status
		c.status.leading = leading.Load
		c.plugin.parking.reporter = hook
	}, poolNode("w1", "web"))
	act := &recordingActivator{}
	f.setActivator(act)
	pod := podOwnedBy("report-1", controllerRef("apps/v1", "StatefulSet", "db"))
	f.createPod(t, pod)
	hook.during = func(p *v1.Pod) {
		node := poolNode("b1", "batch", batchjobsTaint)
		if _, err := f.client.CoreV1().Nodes().Create(f.ctx, node, metav1.CreateOptions{}); err != nil {
			t.Error(err)
			return
		}
		// The release loop runs meanwhile: it unparks and activates the
		// pod, here or (once the park is one step with its report) right
		// after the park.
		_ = pollFor(2*time.Second, func() bool { return act.has("default/" + p.Name) })
	}
	if s := f.plugin.PreEnqueue(f.ctx, pod); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue of %s: %v, want it judged hopeless before the node came", pod.Name, s)
	}
	if err := pollFor(5*time.Second, func() bool { return act.has("default/" + pod.Name) }); err != nil {
		t.Fatalf("setup: the node did not release the pod: %v", err)
	}
	// The queue runs the activated pod's PreEnqueue (after the first
	// returned: both hold the queue's lock).
	if s := f.plugin.PreEnqueue(f.ctx, pod); !s.IsSuccess() {
		t.Fatalf("setup: the activated pod's PreEnqueue: %v, want it to pass", s)
	}
	if f.parked(pod) {
		t.Fatal("setup: the released pod is in the lot")
	}
	leading.Store(true)
	fresh := f.freshOwnerSeries(t)
	var got map[[2]string]float64
	if err := pollFor(3*time.Second, func() bool {
		got = f.ownerSeriesNow(t)
		return cmp.Equal(fresh, got)
	}); err != nil {
		t.Errorf("a pod released between its park and its report: owner_parked_pods %v, want the fresh count %v", got, fresh)
	}
	// The writer leads (no elector in the test): give it time to write what
	// it queued.
	_ = pollFor(3*time.Second, func() bool { return f.podCondition(pod.Name) != nil })
	if c := f.podCondition(pod.Name); c != nil {
		t.Errorf("the released (not parked) pod got PodScheduled=False %q", c.Message)
	}
}

// TestReview18ConflictRetryWritesAReleasedPod: the writer checks that an
// item is still wanted before its API calls, so that a pod released while
// its write waits gets nothing (TestReleaseDuringWriteWritesNothing,
// TestRvReleaseDuringRereadWritesCondition). When the condition patch meets
// a conflict (the informer's copy is older than the pod: any status or
// metadata update since), the writer reads the latest version and patches
// again, with no such check between the read and the second patch: a pod
// released during that read gets PodScheduled=False "hopeless" written.
//
// Sequence: report-1 is reported (gated); the writer's first patch gets a
// 409; the plugin releases the pod (cancel) while the writer reads it
// again; the writer patches. Expected: no condition. Got: the condition.
func TestReview18ConflictRetryWritesAReleasedPod(t *testing.T) {
	pod := cronPod("report-1")
	h := newHeldWriter(t, pod)
	h.leader.Store(true)
	var patches atomic.Int32
	var armed atomic.Bool
	h.client.PrependReactor("patch", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		if patches.Add(1) == 1 {
			armed.Store(true)
			return true, nil, apierrors.NewConflict(v1.Resource("pods"), pod.Name, fmt.Errorf("the object has been modified"))
		}
		return false, nil, nil
	})
	h.client.PrependReactor("get", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		if armed.CompareAndSwap(true, false) {
			h.cancel(pod.UID) // released by the plugin while the writer reads
		}
		return false, nil, nil
	})
	h.report(pod, reasonA, true)
	h.start()
	waitFor(t, 5*time.Second, "the first patch", func() bool { return patches.Load() >= 1 })
	h.waitIdle(t)
	if c := h.podCondition(pod.Name); c != nil {
		t.Errorf("a pod released during the writer's conflict re-read got PodScheduled=False %q (%d status patches)", c.Message, patches.Load())
	}
}

// TestReview18OwnerCountsFollowRandomHistories drives the owner report
// through the status writer (as the parker does) with random sequences of
// parks (messages changing), releases, deletions and re-creations under the
// same name, with one goroutine: no races, only the bookkeeping. After
// every step the report's counts equal a count of the model's parked pods.
func TestReview18OwnerCountsFollowRandomHistories(t *testing.T) {
	msgs := []string{taintMessage, reasonA, shapes.MessagePrefix + "no node matches pool=batch"}
	owners := []*metav1.OwnerReference{nil,
		ptrRef(controllerRef("apps/v1", "StatefulSet", "db")),
		ptrRef(controllerRef("apps/v1", "ReplicaSet", "gone")),
		ptrRef(controllerRef("argoproj.io/v1alpha1", "Workflow", "nightly"))}
	for seed := int64(1); seed <= 30; seed++ {
		f := newOwnerFixture(t)
		w := newStatusWriter(f.client, nil, 1000, f.clock)
		w.owners = f.ownerReport
		rnd := rand.New(rand.NewSource(seed))
		type modelPod struct {
			pod     *v1.Pod
			message string // "" not parked
		}
		model := map[string]*modelPod{}
		gen := 0
		for step := 0; step < 300; step++ {
			name := fmt.Sprintf("p-%d", rnd.Intn(6))
			mp := model[name]
			switch op := rnd.Intn(5); {
			case mp == nil || op == 0: // (re)created with a new UID
				if mp != nil && mp.message != "" {
					w.forget(mp.pod.UID)
				}
				gen++
				p := cronPod(name)
				p.UID = types.UID(fmt.Sprintf("%s-%d", name, gen))
				if o := owners[rnd.Intn(len(owners))]; o != nil {
					p.OwnerReferences = []metav1.OwnerReference{*o}
				}
				mp = &modelPod{pod: p}
				model[name] = mp
			case op == 1, op == 2: // parked (again) with some message
				mp.message = msgs[rnd.Intn(len(msgs))]
				w.report(mp.pod, mp.message, rnd.Intn(2) == 0)
			case op == 3: // released
				mp.message = ""
				w.cancel(mp.pod.UID)
			case op == 4: // deleted
				w.forget(mp.pod.UID)
				delete(model, name)
			}
			want := map[[2]string]int{}
			for _, m := range model {
				if m.message == "" {
					continue
				}
				kind := ownerKindNone
				if ref := metav1.GetControllerOf(m.pod); ref != nil {
					kind = metricOwnerKind(ref.Kind)
				}
				want[[2]string{kind, m.pod.Namespace}]++
			}
			f.round(f.ctx, step%7 == 0)
			f.clock.Step(ownerRound)
			got := map[[2]string]int{}
			for _, c := range f.counts() {
				got[[2]string{c.kind, c.namespace}] += c.n
			}
			if !cmp.Equal(want, got) {
				t.Fatalf("seed %d step %d: owner counts %v, want %v", seed, step, got, want)
			}
		}
		// Every owner event that says pods are parked names an owner that
		// has parked pods.
		counted := map[types.UID]int{}
		f.mu.Lock()
		for _, g := range f.groups {
			counted[g.owner.UID] += g.count
		}
		f.mu.Unlock()
		for range 3 {
			f.clock.Step(ownerUpdateInterval)
			f.round(f.ctx, true)
		}
		for _, e := range f.events(t) {
			if e.Type == v1.EventTypeWarning && counted[e.InvolvedObject.UID] == 0 {
				t.Errorf("seed %d: event on %s/%s says %q with none of its pods parked", seed, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
			}
		}
		if t.Failed() {
			return
		}
	}
}

func ptrRef(r metav1.OwnerReference) *metav1.OwnerReference { return &r }

// TestReview18DeadNamespaceStarvesOwnerEvents: when a namespace is
// deleted, its parked pods go (podGone removes them) and the owner groups
// that were written drop to count 0. flush then writes "No pods ... any
// more" on them: the patch finds the event gone (deleted with the
// namespace), the create is refused (NamespaceLifecycle: the namespace is
// being terminated, or NotFound once it is gone). The error leaves the
// group as it was (count 0, written > 0, lastWrite old), so it is due again
// the very next round, forever, and it sorts before every owner written
// later (oldest lastWrite first). With two such groups the 2 writes per
// second of ownerEventsPerSecond all go to them: the event of an owner
// whose pods keep parking is never updated (nor refreshed before the event
// TTL expires it). CI systems create and delete namespaces all day.
//
// Sequence: StatefulSets of namespaces ci-1, ci-2 and ci-3 have parked
// pods, their events are written; StatefulSet app in default has 1 parked
// pod, its event is written a minute later; the ci namespaces are deleted
// (their pods leave); two minutes later 4 more pods of default/app park.
// Expected within a few update intervals: its event says 5 pods, and the
// dead namespaces' groups are given up. Got: its event still says 1 pod
// after 10 minutes of rounds; the dead groups are retried every second
// (two API calls each) for as long as the scheduler runs.
func TestReview18DeadNamespaceStarvesOwnerEvents(t *testing.T) {
	f := newOwnerFixture(t)
	dead := map[string]bool{}
	var deadWrites atomic.Int32
	refuse := func(a clienttesting.Action) (bool, runtime.Object, error) {
		if !dead[a.GetNamespace()] {
			return false, nil, nil
		}
		deadWrites.Add(1)
		if a.GetVerb() == "create" {
			return true, nil, apierrors.NewForbidden(v1.Resource("events"), "", fmt.Errorf("unable to create new content in namespace %s because it is being terminated", a.GetNamespace()))
		}
		return true, nil, apierrors.NewNotFound(v1.Resource("events"), "")
	}
	f.client.PrependReactor("create", "events", refuse)
	f.client.PrependReactor("patch", "events", refuse)

	inNamespace := func(ns, name string) *v1.Pod {
		p := podOwnedBy(name, controllerRef("apps/v1", "StatefulSet", "app"))
		p.Namespace, p.UID = ns, types.UID(ns+"/"+name)
		p.OwnerReferences[0].UID = types.UID(ns + "-app")
		return p
	}
	var ciPods []*v1.Pod
	for _, ns := range []string{"ci-1", "ci-2", "ci-3"} {
		for i := range 3 {
			p := inNamespace(ns, fmt.Sprintf("app-%d", i))
			ciPods = append(ciPods, p)
			f.park(p, taintMessage)
		}
	}
	f.round(f.ctx, true)
	f.clock.Step(ownerUpdateInterval)
	db := func(i int) *v1.Pod { return inNamespace("default", fmt.Sprintf("db-%d", i)) }
	f.park(db(0), taintMessage)
	f.round(f.ctx, true)
	if evs := f.events(t); len(evs) != 4 {
		t.Fatalf("setup: %d events, want 4", len(evs))
	}

	// The CI namespaces are deleted, with their pods and events.
	for _, p := range ciPods {
		f.remove(p.UID)
		dead[p.Namespace] = true
	}
	for _, e := range f.events(t) {
		if dead[e.Namespace] {
			if err := f.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("events"), e.Namespace, e.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Two minutes of rounds, one a second; then more of db's pods park.
	for range 120 {
		f.clock.Step(ownerRound)
		f.round(f.ctx, true)
	}
	for i := 1; i < 5; i++ {
		f.park(db(i), taintMessage)
	}
	dbEvent := func() string {
		for _, e := range f.events(t) {
			if e.Namespace == "default" {
				return e.Message
			}
		}
		return ""
	}
	// Ten minutes of rounds, one a second.
	for range 600 {
		f.clock.Step(ownerRound)
		f.round(f.ctx, true)
	}
	if msg := dbEvent(); !strings.HasPrefix(msg, "5 pods of this StatefulSet are parked") {
		t.Errorf("after 10 minutes of rounds the event of StatefulSet default/app says %q, want 5 pods parked (%d writes tried on the deleted namespaces' events)", msg, deadWrites.Load())
	}
	f.mu.Lock()
	left := 0
	for _, g := range f.groups {
		if dead[g.owner.Namespace] {
			left++
		}
	}
	f.mu.Unlock()
	if left != 0 {
		t.Errorf("%d owner groups of deleted namespaces still retried (%d writes tried on them in 10 minutes)", left, deadWrites.Load())
	}
}

// TestReview18RecreatedPodGetsNoOldWrite (passes): a StatefulSet re-creates
// a deleted pod under the same name with a new UID. A write queued for the
// old pod (the writer waits for leadership) must not land on the new one,
// which is not parked.
func TestReview18RecreatedPodGetsNoOldWrite(t *testing.T) {
	old := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	old.UID = "db-0-old"
	h := newHeldWriter(t, old)
	h.report(old, reasonA, true)
	h.start()
	h.waitBlocked(t)
	if err := h.client.CoreV1().Pods("default").Delete(h.ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := old.DeepCopy()
	fresh.UID, fresh.ResourceVersion = "db-0-new", ""
	if _, err := h.client.CoreV1().Pods("default").Create(h.ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.lead()
	h.waitIdle(t)
	if c := h.podCondition(fresh.Name); c != nil {
		t.Errorf("the re-created pod (not parked) got the old pod's condition %q", c.Message)
	}
	if n := len(h.recorder.Events); n != 0 {
		t.Errorf("%d pod events, want none", n)
	}
}
