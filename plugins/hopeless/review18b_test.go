package hopeless

// Review 18b: an adversarial review of the review-18 fixes (210eb83): the
// park and its report as one step under parker.mu, parker.live, the owner
// report's controller change, the conflict re-read and the owner event
// backoff.

import (
	"context"
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
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// podEvents drains the pod events the test plugin's recorder holds.
func (f *testPlugin) podEvents() []string {
	rec := f.handle.EventRecorder().(*events.FakeRecorder)
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestReview18bOrphanedPodGetsNoEventOfItsOwn: the pods of a controller are
// reported on the controller; a pod without one gets a Hopeless event of
// its own (design.md, "Telling the user"). Since 210eb83 the owner report
// follows a controller change (ownerReport.park re-counts the pod as bare),
// but the status writer does not: statusWriter.report returns early when
// the message was reported already, before it looks at the event flag the
// owner report just turned on.
//
// Sequence: pod web-5d8f-abcde of ReplicaSet web-5d8f (no Deployment) is
// parked at PreEnqueue; its condition is written, no pod event (its
// ReplicaSet's event speaks for it). The ReplicaSet is deleted with
// propagationPolicy Orphan, the garbage collector removes the pod's
// ownerReference, the queue runs PreEnqueue on the updated copy (same
// reason). Expected: the now bare pod gets its Hopeless event (its former
// owner's event says "No pods of this ReplicaSet are parked any more").
// Got: no event at all for the pod; owner_parked_pods counts it as a bare
// pod while nothing tells its user.
func TestReview18bOrphanedPodGetsNoEventOfItsOwn(t *testing.T) {
	rsRef := controllerRef("apps/v1", "ReplicaSet", "web-5d8f")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-5d8f", UID: rsRef.UID}}
	f := newTestPlugin(t, "", poolNode("w1", "web"), rs)
	pod := podOwnedBy("web-5d8f-abcde", rsRef)
	f.parkViaPreEnqueue(t, pod)
	waitFor(t, 5*time.Second, "the parked pod's condition", func() bool { return f.podCondition(pod.Name) != nil })
	if evs := f.podEvents(); len(evs) != 0 {
		t.Fatalf("setup: pod events %q for a pod of a controller", evs)
	}

	if err := f.client.AppsV1().ReplicaSets("default").Delete(f.ctx, rs.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, err := f.client.CoreV1().Pods("default").Get(f.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.OwnerReferences = nil
	updated, err := f.client.CoreV1().Pods("default").Update(f.ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	waitFor(t, 5*time.Second, "the informer has the orphaned pod", func() bool {
		p, err := lister.Pods("default").Get(pod.Name)
		return err == nil && len(p.OwnerReferences) == 0
	})
	if s := f.plugin.PreEnqueue(f.ctx, updated); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: the orphaned pod is not parked: %v", s)
	}
	fresh := f.freshOwnerSeries(t)
	var got map[[2]string]float64
	if err := pollFor(3*time.Second, func() bool { got = f.ownerSeriesNow(t); return cmp.Equal(fresh, got) }); err != nil {
		t.Fatalf("setup: owner_parked_pods %v, fresh %v", got, fresh)
	}
	var evs []string
	_ = pollFor(3*time.Second, func() bool { evs = append(evs, f.podEvents()...); return len(evs) > 0 })
	if len(evs) == 0 {
		t.Errorf("the orphaned parked pod (counted as a bare pod: %v) got no Hopeless event; nothing but its condition says why it waits", got)
	}
}

// TestReview18bDeletedPodJudgedAfterItsDeleteLeaksItsRequirements: 210eb83
// keeps a pod deleted before the queue (or the cycle) judged its last copy
// out of the lot and the owner report (parker.live). The verdict cache is
// one step earlier: judge stores the pod's requirements (with the pod
// object) under its UID, and only podGone's verdicts.forget removes them,
// which has run already. The entry, with the whole pod, stays for as long
// as the scheduler runs (maxCachedVerdicts bounds the verdicts, not reqs).
//
// Sequence: as TestReview18ParkAfterTheDeleteWasSeenLeaksForever: parked,
// deleted, the deletion seen, PreEnqueue or PreFilter of the last copy.
// Expected: nothing of the deleted pod is kept. Got: verdicts.reqs holds it.
func TestReview18bDeletedPodJudgedAfterItsDeleteLeaksItsRequirements(t *testing.T) {
	for _, point := range []string{"PreEnqueue", "PreFilter"} {
		t.Run(point, func(t *testing.T) {
			f := newTestPlugin(t, "", poolNode("w1", "web"))
			pod := podOwnedBy("report-29000000-x", controllerRef("batch/v1", "Job", "report-29000000"))
			f.parkViaPreEnqueue(t, pod)
			if err := f.client.CoreV1().Pods("default").Delete(f.ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the plugin saw the deletion", func() bool {
				_, ok := f.plugin.verdicts.reqs.Load(pod.UID)
				return !f.parked(pod) && !ok
			})
			switch point {
			case "PreEnqueue":
				f.plugin.PreEnqueue(f.ctx, pod)
			case "PreFilter":
				f.plugin.PreFilter(f.ctx, nil, pod, nil)
			}
			if f.parked(pod) {
				t.Fatal("the deleted pod was parked")
			}
			if _, ok := f.plugin.verdicts.reqs.Load(pod.UID); ok {
				t.Errorf("the verdict cache keeps the requirements (and the object) of pod %s, deleted and forgotten before its last copy was judged", pod.Name)
			}
		})
	}
}

// TestReview18bOwnerEventGivenUpAfterAHalfMinuteOutage: a group none of
// whose pods is parked is dropped after ownerGiveUp failed writes in a row
// (owners.go flush). ownerRetry spaces them 2, 4, 8 and 16 seconds apart:
// the fifth failure comes 30 seconds after the first. An apiserver that
// answers 429 or 503 for half a minute (APF under the load of a pile-up, an
// apiserver rollout) is enough: the owner's event is left saying "3 pods of
// this StatefulSet are parked", a Warning, when none is, until the event
// TTL (an hour by default) expires it; the API answers again a few seconds
// later. The design gives up when "the API keeps refusing it"; a half-
// minute outage is not that, and the namespace is there.
//
// Sequence: 3 pods of StatefulSet default/app park, the event says 3; the
// pods are released; a minute later the "No pods ... any more" write is due;
// for the next 40 seconds every event write answers 429; then the API
// answers. Expected, within 10 minutes of rounds: the event says no pod is
// parked (Normal). Got: the Warning "3 pods ... are parked" for good (until
// the TTL).
func TestReview18bOwnerEventGivenUpAfterAHalfMinuteOutage(t *testing.T) {
	f := newOwnerFixture(t)
	down, refused := refuseEventWrites(f.client, apierrors.NewTooManyRequests("the server has received too many requests", 1))
	var pods []*v1.Pod
	for i := range 3 {
		p := podOwnedBy(fmt.Sprintf("app-%d", i), controllerRef("apps/v1", "StatefulSet", "app"))
		pods = append(pods, p)
		f.park(p, taintMessage)
	}
	f.round(f.ctx, true)
	if evs := f.events(t); len(evs) != 1 || !strings.HasPrefix(evs[0].Message, "3 pods") {
		t.Fatalf("setup: events %v", evs)
	}
	for _, p := range pods {
		f.remove(p.UID)
	}
	f.clock.Step(ownerUpdateInterval)
	down.Store(true)
	for range 40 {
		f.round(f.ctx, true)
		f.clock.Step(ownerRound)
	}
	down.Store(false)
	for range 600 {
		f.round(f.ctx, true)
		f.clock.Step(ownerRound)
	}
	evs := f.events(t)
	if len(evs) != 1 || evs[0].Type != v1.EventTypeNormal {
		var says []string
		for _, e := range evs {
			says = append(says, e.Type+" "+e.Message)
		}
		t.Errorf("10 minutes after a 40-second outage (%d writes refused) with no pod of StatefulSet app parked, its event says %q; want Normal, no pod parked", refused.Load(), says)
	}
}

// queueLock stands for the scheduling queue: its Activate runs PreEnqueue
// on the activated pods under its lock, as moveToActiveQ does, and the
// test's "queue" goroutine runs PreEnqueue under it too (Add, Update, the
// unschedulable flush).
type queueLock struct {
	mu sync.Mutex
	pl *HopelessPods
	n  atomic.Int64
}

func (q *queueLock) Activate(_ klog.Logger, pods map[string]*v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, pod := range pods {
		q.pl.PreEnqueue(context.Background(), pod)
		q.n.Add(1)
	}
}

// TestReview18bNoDeadlockUnderChurn (passes): parker.mu is held across the
// reporter (status writer and owner report locks). The queue holds its lock
// while it runs PreEnqueue (parker.mu); the release loop takes parker.mu per
// pod and then the queue's lock (Activate), never both; the pod informer's
// forget takes parker.mu; the writer and the owner report take only their
// own. Everything runs at once here, with nodes that release and re-park
// the pods coming and going, pods deleted and re-created under their names
// and the writer and owner rounds running: it must not hang.
func TestReview18bNoDeadlockUnderChurn(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	q := &queueLock{pl: f.plugin}
	f.setActivator(q)
	const n = 20
	var mu sync.Mutex
	pods := make([]*v1.Pod, n)
	for i := range n {
		pods[i] = podOwnedBy(fmt.Sprintf("p-%d", i), controllerRef("apps/v1", "StatefulSet", fmt.Sprintf("s-%d", i%3)))
		f.createPod(t, pods[i])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	run := func(body func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body(i)
			}
		}()
	}
	run(func(i int) { // the queue
		mu.Lock()
		p := pods[i%n]
		mu.Unlock()
		q.mu.Lock()
		f.plugin.PreEnqueue(f.ctx, p)
		_, _ = f.plugin.isSchedulableAfterPodChange(klog.Background(), p, p, p)
		q.mu.Unlock()
	})
	run(func(i int) { // a scheduling cycle
		mu.Lock()
		p := pods[(i*7)%n]
		mu.Unlock()
		f.plugin.PreFilter(f.ctx, nil, p, nil)
	})
	run(func(i int) { // a pool that comes and goes
		node := poolNode("b1", "batch", batchjobsTaint)
		if i%2 == 0 {
			_, _ = f.client.CoreV1().Nodes().Create(f.ctx, node, metav1.CreateOptions{})
		} else {
			_ = f.client.CoreV1().Nodes().Delete(f.ctx, node.Name, metav1.DeleteOptions{})
		}
		time.Sleep(5 * time.Millisecond)
	})
	run(func(i int) { // pods deleted and re-created under their names
		k := i % n
		mu.Lock()
		old := pods[k]
		mu.Unlock()
		_ = f.client.CoreV1().Pods("default").Delete(f.ctx, old.Name, metav1.DeleteOptions{})
		p := old.DeepCopy()
		p.UID = types.UID(fmt.Sprintf("%s-%d", old.Name, i))
		p.ResourceVersion = ""
		if _, err := f.client.CoreV1().Pods("default").Create(f.ctx, p, metav1.CreateOptions{}); err == nil {
			mu.Lock()
			pods[k] = p
			mu.Unlock()
		}
		time.Sleep(2 * time.Millisecond)
	})
	run(func(int) { // the owner report's rounds and a scrape
		f.status.owners.round(f.ctx, true)
		f.status.owners.counts()
		time.Sleep(time.Millisecond)
	})
	time.Sleep(3 * time.Second)
	close(stop)
	waitWithin(t, &wg, 20*time.Second, "the plugin hangs: PreEnqueue, the release loop, forget, the writer and the owner report deadlocked")
	// And it still answers.
	finished := make(chan struct{})
	go func() {
		f.release.requestRecheck()
		f.plugin.PreEnqueue(f.ctx, pods[0])
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin hangs after the churn")
	}
	t.Logf("%d activations", q.n.Load())
}

// newWatchedTestPlugin is newConfiguredTestPlugin with the pod watch in the
// test's hands: every pod watch the informer opens is a fake watcher the
// test feeds (watchers returns the latest); lists are served from the
// clientset's tracker. What the tracker holds reaches the informer only
// through a relist.
func newWatchedTestPlugin(t *testing.T, objs ...runtime.Object) (*testPlugin, func() *watch.RaceFreeFakeWatcher) {
	t.Helper()
	client := fake.NewClientset(objs...)
	var wmu sync.Mutex
	var last *watch.RaceFreeFakeWatcher
	client.PrependWatchReactor("pods", func(clienttesting.Action) (bool, watch.Interface, error) {
		w := watch.NewRaceFreeFake()
		wmu.Lock()
		last = w
		wmu.Unlock()
		return true, w, nil
	})
	// The fake clientset applies a status patch's metadata.uid instead of
	// checking it: the writer, which would write over the re-created pod's
	// UID, stays a standby.
	f := newTestPluginOn(t, client, "", func(c *components) { c.status.leading = func() bool { return false } })
	watcher := func() *watch.RaceFreeFakeWatcher {
		wmu.Lock()
		defer wmu.Unlock()
		return last
	}
	waitFor(t, 5*time.Second, "the pod informer watches", func() bool { return watcher() != nil })
	return f, watcher
}

// TestReview18bPodReplacedDuringAWatchGapStaysParkedForever: the plugin
// forgets a parked pod only on a pod Delete, or an Update that binds it
// (informers.go). When the pod watch breaks (an apiserver restart, a watch
// expired with 410 Gone) and the pod is deleted and re-created under its
// name meanwhile (a StatefulSet's pod, a CronJob's), the informer's relist
// delivers no Delete: the key is in the new list, so the client-go FIFO
// hands the handlers an Update from the old object (old UID) to the new one
// (RealFIFO.Replace). The plugin's UpdateFunc ignores it (not bound), so
// the old UID is never forgotten: it stays in the lot, on its owner's count
// and event ("2 pods of this StatefulSet are parked" for one pod), in the
// status writer's maps, forever. parker.live, which 210eb83 added so that
// "nothing deleted stays counted on its owner", checks only the parks made
// after the forget; here there is no forget.
//
// Sequence: db-0 (UID db-0-old) of StatefulSet db is parked; the pod watch
// breaks; db-0 is deleted and re-created (UID db-0-new); the informer
// relists; the queue's PreEnqueue parks db-0-new. Expected: the lot holds
// db-0-new only and owner_parked_pods{StatefulSet,default}=1. Got: both
// UIDs, and a count of 2.
func TestReview18bPodReplacedDuringAWatchGapStaysParkedForever(t *testing.T) {
	old := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	old.UID = "db-0-old"
	f, watcher := newWatchedTestPlugin(t, poolNode("w1", "web"), old)
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	waitFor(t, 5*time.Second, "the informer lists db-0", func() bool {
		p, err := lister.Pods("default").Get("db-0")
		return err == nil && p.UID == old.UID
	})
	if s := f.plugin.PreEnqueue(f.ctx, old); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue of db-0: %v", s)
	}
	// The watch is down: db-0 is deleted and re-created, unseen.
	if err := f.client.CoreV1().Pods("default").Delete(f.ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := old.DeepCopy()
	fresh.UID, fresh.ResourceVersion = "db-0-new", ""
	if _, err := f.client.CoreV1().Pods("default").Create(f.ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The watch expires: the informer relists.
	w := watcher()
	w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	waitFor(t, 20*time.Second, "the informer relisted db-0-new", func() bool {
		p, err := lister.Pods("default").Get("db-0")
		return err == nil && p.UID == fresh.UID
	})
	cur, _ := lister.Pods("default").Get("db-0")
	if s := f.plugin.PreEnqueue(f.ctx, cur); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue of the new db-0: %v", s)
	}
	want := f.freshOwnerSeries(t)
	var got map[[2]string]float64
	err := pollFor(3*time.Second, func() bool {
		got = f.ownerSeriesNow(t)
		return cmp.Equal(want, got) && !f.parked(old)
	})
	if err != nil {
		t.Errorf("db-0 replaced during a watch gap: the old UID still parked: %v; owner_parked_pods %v, fresh count %v", f.parked(old), got, want)
	}
}

// TestReview18bStaleCopyOfAReplacedPodDoesNotTouchItsSuccessor (passes):
// db-0 is parked, deleted and re-created under its name (new UID), both
// seen by the informer; the new pod is parked; then the scheduling cycle
// (or the queue) judges the copy of the old pod it still holds. parker.live
// refuses the old UID (the lister holds the new one): the lot and the owner
// report hold only the new pod, and the new pod's park stands.
func TestReview18bStaleCopyOfAReplacedPodDoesNotTouchItsSuccessor(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	old := podOwnedBy("db-0", controllerRef("apps/v1", "StatefulSet", "db"))
	old.UID = "db-0-old"
	f.parkViaPreEnqueue(t, old)
	if err := f.client.CoreV1().Pods("default").Delete(f.ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the plugin saw the deletion", func() bool { return !f.parked(old) })
	fresh := old.DeepCopy()
	fresh.UID, fresh.ResourceVersion = "db-0-new", ""
	lister := f.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	if _, err := f.client.CoreV1().Pods("default").Create(f.ctx, fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the informer has the new db-0", func() bool {
		p, err := lister.Pods("default").Get("db-0")
		return err == nil && p.UID == fresh.UID
	})
	if s := f.plugin.PreEnqueue(f.ctx, fresh); s.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("setup: PreEnqueue of the new db-0: %v", s)
	}
	f.plugin.PreFilter(f.ctx, nil, old, nil)
	f.plugin.PreEnqueue(f.ctx, old)
	if f.parked(old) || !f.parked(fresh) {
		t.Errorf("old parked %v (want false), new parked %v (want true)", f.parked(old), f.parked(fresh))
	}
	want := f.freshOwnerSeries(t)
	var got map[[2]string]float64
	if err := pollFor(3*time.Second, func() bool { got = f.ownerSeriesNow(t); return cmp.Equal(want, got) }); err != nil {
		t.Errorf("owner_parked_pods %v, fresh %v", got, want)
	}
}

// TestReview18bOwnerCountsFollowControllerChanges (passes): random
// histories of parks (messages changing), controller changes of parked
// pods (orphaned, adopted, moved to another controller, including a
// ReplicaSet resolved to its Deployment), releases and deletions, through
// the status writer as the parker drives it. After every step the report's
// counts equal a count of the model's parked pods by controller.
func TestReview18bOwnerCountsFollowControllerChanges(t *testing.T) {
	deploy := controllerRef("apps/v1", "Deployment", "web")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-5d8f", UID: "ReplicaSet-web-5d8f",
		OwnerReferences: []metav1.OwnerReference{deploy}}}
	msgs := []string{taintMessage, reasonA}
	owners := []*metav1.OwnerReference{nil,
		ptrRef(controllerRef("apps/v1", "StatefulSet", "db")),
		ptrRef(controllerRef("apps/v1", "ReplicaSet", "web-5d8f")),
		ptrRef(controllerRef("argoproj.io/v1alpha1", "Workflow", "nightly"))}
	kindOf := func(ref *metav1.OwnerReference) string {
		switch {
		case ref == nil:
			return ownerKindNone
		case ref.Kind == "ReplicaSet":
			return "Deployment"
		}
		return metricOwnerKind(ref.Kind)
	}
	for seed := int64(1); seed <= 20; seed++ {
		f := newOwnerFixture(t, rs)
		w := newStatusWriter(f.client, nil, 1000, f.clock)
		w.owners = f.ownerReport
		rnd := rand.New(rand.NewSource(seed))
		type modelPod struct {
			pod     *v1.Pod
			message string
		}
		model := map[string]*modelPod{}
		gen := 0
		for step := 0; step < 300; step++ {
			name := fmt.Sprintf("p-%d", rnd.Intn(5))
			mp := model[name]
			switch op := rnd.Intn(6); {
			case mp == nil:
				gen++
				p := cronPod(name)
				p.UID = types.UID(fmt.Sprintf("%s-%d", name, gen))
				if o := owners[rnd.Intn(len(owners))]; o != nil {
					p.OwnerReferences = []metav1.OwnerReference{*o}
				}
				mp = &modelPod{pod: p}
				model[name] = mp
			case op <= 1: // parked (again)
				mp.message = msgs[rnd.Intn(len(msgs))]
				w.report(mp.pod, mp.message, rnd.Intn(2) == 0)
			case op == 2: // controller changed; parked again if it was
				p := mp.pod.DeepCopy()
				p.OwnerReferences = nil
				if o := owners[rnd.Intn(len(owners))]; o != nil {
					p.OwnerReferences = []metav1.OwnerReference{*o}
				}
				mp.pod = p
				if mp.message != "" {
					if rnd.Intn(2) == 0 {
						mp.message = msgs[rnd.Intn(len(msgs))]
					}
					w.report(p, mp.message, true)
				}
			case op == 3:
				mp.message = ""
				w.cancel(mp.pod.UID)
			default:
				w.forget(mp.pod.UID)
				delete(model, name)
			}
			want := map[[2]string]int{}
			for _, m := range model {
				if m.message != "" {
					want[[2]string{kindOf(metav1.GetControllerOf(m.pod)), "default"}]++
				}
			}
			f.round(f.ctx, step%5 == 0)
			f.clock.Step(ownerRound)
			got := map[[2]string]int{}
			for _, c := range f.counts() {
				got[[2]string{c.kind, c.namespace}] += c.n
			}
			if !cmp.Equal(want, got) {
				t.Fatalf("seed %d step %d: owner counts %v, want %v", seed, step, got, want)
			}
		}
	}
}

// refuseEventWrites has client answer every event create and patch with
// err while down is set; refused counts the answers.
func refuseEventWrites(client *fake.Clientset, err error) (down *atomic.Bool, refused *atomic.Int32) {
	down, refused = &atomic.Bool{}, &atomic.Int32{}
	refuse := func(clienttesting.Action) (bool, runtime.Object, error) {
		if !down.Load() {
			return false, nil, nil
		}
		refused.Add(1)
		return true, nil, err
	}
	client.PrependReactor("create", "events", refuse)
	client.PrependReactor("patch", "events", refuse)
	return down, refused
}
