package balancer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
)

const (
	ns           = "db"
	localStorage = "local-storage"
)

// objectEvent is an event with the object it is about.
type objectEvent struct{ Kind, Name, Type, Reason, Message string }

// objectRecorder keeps the object of every event, which FakeRecorder drops.
type objectRecorder struct {
	mu     sync.Mutex
	events []objectEvent
}

func (r *objectRecorder) Event(obj runtime.Object, typ, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, _ := meta.Accessor(obj)
	name := m.GetName()
	if m.GetNamespace() != "" {
		name = m.GetNamespace() + "/" + name
	}
	kind := strings.TrimPrefix(fmt.Sprintf("%T", obj), "*v1.")
	r.events = append(r.events, objectEvent{Kind: kind, Name: name, Type: typ, Reason: reason, Message: msg})
}

func (r *objectRecorder) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (r *objectRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

// about returns the events with reason about kind/name whose message holds every substr.
func (r *objectRecorder) about(kind, name, reason string, substrs ...string) []objectEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []objectEvent
	for _, e := range r.events {
		if e.Kind != kind || e.Name != name || e.Reason != reason {
			continue
		}
		if !slices.ContainsFunc(substrs, func(s string) bool { return !strings.Contains(e.Message, s) }) {
			out = append(out, e)
		}
	}
	return out
}

func (r *objectRecorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %s %s %s %s: %s\n", e.Type, e.Kind, e.Name, e.Reason, e.Message)
	}
	return b.String()
}

// world: a managed single-zone group of n instances, one node per instance
// (cass-<i>), a local volume bound on each (pv-<i>, claim db/data-<i> with
// uid uid-<i>), and the StorageClass. The first loop has run: the volumes
// record their instances.
type world struct {
	*fixture
	t   *testing.T
	ctx context.Context
	ids []string // instance of node cass-<i>
	rec *objectRecorder
}

func boundVolume(i int) *v1.PersistentVolume {
	pv := localPV(fmt.Sprintf("pv-%d", i), fmt.Sprintf("cass-%d", i), v1.VolumeBound)
	pv.Spec.StorageClassName = localStorage
	pv.Spec.ClaimRef = &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: fmt.Sprintf("data-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))}
	return pv
}

func boundClaim(i int, uid types.UID) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("data-%d", i), UID: uid,
			Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:   v1.PersistentVolumeClaimSpec{VolumeName: fmt.Sprintf("pv-%d", i), StorageClassName: after(localStorage)},
		Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
}

// after is the opt-in value of a StorageClass.
func after(v string) *string { return &v }

// storageClass opts in with releaseAfter unless it is nil.
func storageClass(releaseAfter *string) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: localStorage}, Provisioner: "kubernetes.io/no-provisioner"}
	if releaseAfter != nil {
		sc.Annotations = map[string]string{AnnotationReleaseOrphansAfter: *releaseAfter}
	}
	return sc
}

func newWorld(t *testing.T, n int, releaseAfter *string) *world {
	t.Helper()
	f := newFixture(t)
	byZone := f.emu.CreateGroup(awstest.GroupSpec{Name: "cassandra", Zones: zones[:1], MaxSize: 20, InstanceType: "i3.xlarge",
		Tags: caTags(nil), Instances: map[string]int{zones[0]: n}})
	w := &world{fixture: f, t: t, ctx: context.Background(), ids: byZone[zones[0]], rec: &objectRecorder{}}
	objs := []runtime.Object{storageClass(releaseAfter)}
	for i, id := range w.ids {
		objs = append(objs, node(fmt.Sprintf("cass-%d", i), zones[0], id), boundVolume(i), boundClaim(i, types.UID(fmt.Sprintf("uid-%d", i))))
	}
	f.kube = fake.NewClientset(objs...)
	enforcePreconditions(f.kube)
	f.b.kube, f.b.recorder = f.kube, w.rec
	w.reconcile()
	return w
}

// enforcePreconditions makes the fake clientset refuse a claim deletion whose
// UID precondition fails, as the apiserver does (the tracker ignores them).
func enforcePreconditions(kube *fake.Clientset) {
	kube.PrependReactor("delete", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		p := d.GetDeleteOptions().Preconditions
		if p == nil || p.UID == nil {
			return false, nil, nil
		}
		obj, err := kube.Tracker().Get(d.GetResource(), d.GetNamespace(), d.GetName())
		if err != nil {
			return false, nil, nil // the tracker answers NotFound
		}
		if uid := obj.(*v1.PersistentVolumeClaim).UID; uid != *p.UID {
			return true, nil, apierrors.NewConflict(d.GetResource().GroupResource(), d.GetName(),
				fmt.Errorf("Precondition failed: UID in precondition: %s, UID in object meta: %s", *p.UID, uid))
		}
		return false, nil, nil
	})
}

// lists returns the nodes and volumes as the apiserver has them now.
func (w *world) lists() (*v1.NodeList, *v1.PersistentVolumeList) {
	w.t.Helper()
	nodes, err := w.kube.CoreV1().Nodes().List(w.ctx, metav1.ListOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	pvs, err := w.kube.CoreV1().PersistentVolumes().List(w.ctx, metav1.ListOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return nodes, pvs
}

func (w *world) reconcile() {
	w.t.Helper()
	if err := w.b.Reconcile(w.ctx); err != nil {
		w.t.Fatalf("Reconcile: %v", err)
	}
}

// loopsApart runs a loop, moves the clock on by d, and runs another.
func (w *world) loopsApart(d time.Duration) {
	w.t.Helper()
	w.reconcile()
	w.clock.Step(d)
	w.reconcile()
}

// lose terminates the instance of cass-<i> for good and deletes its node, as
// the cloud node controller does.
func (w *world) lose(i int) {
	w.t.Helper()
	w.terminate(w.ids[i])
	if err := w.kube.CoreV1().Nodes().Delete(w.ctx, fmt.Sprintf("cass-%d", i), metav1.DeleteOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// terminate ends an instance past the balancer's hook, as a human with the
// console (or the hook's global timeout) does.
func (w *world) terminate(id string) {
	w.t.Helper()
	asc := autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(w.emu.URL), Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
	if _, err := asc.TerminateInstanceInAutoScalingGroup(w.ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: awssdk.String(id), ShouldDecrementDesiredCapacity: awssdk.Bool(true)}); err != nil {
		w.t.Fatal(err)
	}
	if i, _ := w.emu.Instance(id); i.LifecycleState == awstest.TerminatingWait {
		if _, err := asc.CompleteLifecycleAction(w.ctx, &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: awssdk.String("cassandra"),
			LifecycleHookName: awssdk.String(HookName), InstanceId: awssdk.String(id), LifecycleActionResult: awssdk.String("CONTINUE")}); err != nil {
			w.t.Fatal(err)
		}
	}
	if i, _ := w.emu.Instance(id); i.EC2State != "terminated" {
		w.t.Fatalf("instance %s is %s, want terminated", id, i.EC2State)
	}
}

// claims returns the uid of every claim left in the namespace, by name.
func (w *world) claims() map[string]types.UID {
	w.t.Helper()
	list, err := w.kube.CoreV1().PersistentVolumeClaims(ns).List(w.ctx, metav1.ListOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, c := range list.Items {
		out[c.Name] = c.UID
	}
	return out
}

// allClaimsBut is the claims of the world of n volumes, without the deleted ones.
func allClaimsBut(n int, deleted ...int) map[string]types.UID {
	out := map[string]types.UID{}
	for i := range n {
		if !slices.Contains(deleted, i) {
			out[fmt.Sprintf("data-%d", i)] = types.UID(fmt.Sprintf("uid-%d", i))
		}
	}
	return out
}

func (w *world) volume(name string) *v1.PersistentVolume {
	w.t.Helper()
	pv, err := w.kube.CoreV1().PersistentVolumes().Get(w.ctx, name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return pv
}

// claimDeletes returns the claim deletions the balancer sent, with their UID preconditions.
func (w *world) claimDeletes() []string {
	var out []string
	for _, a := range w.kube.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && d.GetResource().Resource == "persistentvolumeclaims" {
			uid := "<none>"
			if p := d.GetDeleteOptions().Preconditions; p != nil && p.UID != nil {
				uid = string(*p.UID)
			}
			out = append(out, d.GetName()+" uid="+uid)
		}
	}
	return out
}

func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 10)
	c.Collect(ch)
	close(ch)
	total := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		total += d.GetGauge().GetValue() + d.GetCounter().GetValue()
	}
	return total
}

func (w *world) releases(result string) float64 {
	return value(w.t, w.b.metrics.orphanReleases.WithLabelValues(result))
}

// TestOrphanRecordsPlacement: while the node exists, the volume records its
// instance and zone, once; nothing else is written on later loops.
func TestOrphanRecordsPlacement(t *testing.T) {
	w := newWorld(t, 2, nil)
	for i, id := range w.ids {
		want := map[string]string{AnnotationInstanceID: id, AnnotationZone: zones[0], AnnotationGroup: "cassandra"}
		if diff := cmp.Diff(want, w.volume(fmt.Sprintf("pv-%d", i)).Annotations); diff != "" {
			t.Errorf("pv-%d annotations (-want, +got):\n%s", i, diff)
		}
	}
	w.kube.ClearActions()
	w.reconcile()
	for _, a := range w.kube.Actions() {
		if a.GetResource().Resource == "persistentvolumes" && a.GetVerb() != "list" {
			t.Errorf("a steady loop wrote a volume: %s %v", a.GetVerb(), a)
		}
	}
	if n := value(t, w.b.metrics.orphanedVolumes); n != 0 {
		t.Errorf("orphaned_volumes = %v with every node alive", n)
	}
}

// TestOrphanRecordsPlacementOverLoops: a first loop over many volumes records
// maxPlacementWrites of them, the next loop the rest.
func TestOrphanRecordsPlacementOverLoops(t *testing.T) {
	const n = maxPlacementWrites + 5
	w := newWorld(t, n, nil)
	recorded := func() int {
		pvs, err := w.kube.CoreV1().PersistentVolumes().List(w.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for _, pv := range pvs.Items {
			if pv.Annotations[AnnotationInstanceID] != "" {
				count++
			}
		}
		return count
	}
	if got := recorded(); got != maxPlacementWrites {
		t.Errorf("first loop recorded %d volumes, want %d", got, maxPlacementWrites)
	}
	w.reconcile()
	if got := recorded(); got != n {
		t.Errorf("second loop: %d volumes recorded, want %d", got, n)
	}
}

// TestOrphanReleasedAfterDelay is the whole path: the node goes, the instance
// is terminated, the volume is reported on itself and on its claim, and once
// the StorageClass's delay has passed since it was first seen, a balancer
// restarted in between deletes the claim with its UID as precondition. The
// healthy claim is never touched.
func TestOrphanReleasedAfterDelay(t *testing.T) {
	w := newWorld(t, 2, after("30m"))
	w.lose(0)
	start := w.clock.Now()
	w.reconcile()
	pv := w.volume("pv-0")
	if got, want := pv.Annotations[AnnotationOrphanedSince], start.UTC().Format(time.RFC3339); got != want {
		t.Errorf("orphaned-since = %q, want %q", got, want)
	}
	if n := value(t, w.b.metrics.orphanedVolumes); n != 1 {
		t.Errorf("orphaned_volumes = %v, want 1", n)
	}
	for _, obj := range [][2]string{{"PersistentVolume", "pv-0"}, {"PersistentVolumeClaim", ns + "/data-0"}} {
		if evs := w.rec.about(obj[0], obj[1], ReasonOrphanedVolume, w.ids[0], "terminated", "will be deleted after"); len(evs) != 1 {
			t.Errorf("%d %s events on %s %s, want 1:\n%s", len(evs), ReasonOrphanedVolume, obj[0], obj[1], w.rec.dump())
		}
	}
	if diff := cmp.Diff(allClaimsBut(2), w.claims()); diff != "" {
		t.Fatalf("claims deleted before the delay (-want, +got):\n%s", diff)
	}

	// 29 minutes later: still waiting.
	w.clock.Step(29 * time.Minute)
	w.reconcile()
	if d := w.claimDeletes(); len(d) != 0 {
		t.Fatalf("deleted %v before the delay", d)
	}

	// The balancer restarts; 31 minutes after the orphan was first seen it
	// releases it, from what the volume recorded.
	w.clock.Step(2 * time.Minute)
	restarted := New(w.kube, w.b.cloud, w.rec, w.clock, w.b.opts, nil)
	w.b = restarted
	w.reconcile()
	if diff := cmp.Diff([]string{"data-0 uid=uid-0"}, w.claimDeletes()); diff != "" {
		t.Errorf("claim deletions (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff(allClaimsBut(2, 0), w.claims()); diff != "" {
		t.Errorf("claims left (-want, +got):\n%s", diff)
	}
	if n := w.releases(releaseDeleted); n != 1 {
		t.Errorf("orphan_releases_total{result=deleted} = %v, want 1", n)
	}
	for _, obj := range [][2]string{{"PersistentVolume", "pv-0"}, {"PersistentVolumeClaim", ns + "/data-0"}} {
		if evs := w.rec.about(obj[0], obj[1], ReasonOrphanReleased, "uid-0", w.ids[0]); len(evs) != 1 {
			t.Errorf("%d %s events on %s %s, want 1:\n%s", len(evs), ReasonOrphanReleased, obj[0], obj[1], w.rec.dump())
		}
	}

	// The volume stays bound until the PV controller notices (none runs
	// here): the next loop does not try again.
	w.kube.ClearActions()
	w.clock.Step(time.Minute)
	w.reconcile()
	if d := w.claimDeletes(); len(d) != 0 {
		t.Errorf("deleted again: %v", d)
	}
}

// TestOrphanNotReleased: every rule that keeps a claim. Each case loses node
// cass-0 (and its instance, unless said otherwise), lets the opt-in delay
// pass and runs the loop; the claim must stay.
func TestOrphanNotReleased(t *testing.T) {
	tests := []struct {
		name         string
		releaseAfter *string
		// setup runs after the first loop and replaces w.lose(0).
		setup func(w *world)
		// race runs in the next loop, between its snapshot and its action.
		race func(w *world)
		// want is an event on the volume, its reason and words of its message.
		wantReason string
		wantWords  []string
		wantClass  []string // words of an InvalidReleaseOrphansAfter event on the class
	}{
		{
			name:       "no opt-in",
			wantReason: ReasonOrphanedVolume, wantWords: []string{"not released", AnnotationReleaseOrphansAfter},
		},
		{
			name: "malformed opt-in", releaseAfter: after("soon"),
			wantReason: ReasonOrphanedVolume, wantWords: []string{"invalid", `"soon"`},
			wantClass: []string{`"soon" is not a duration`},
		},
		{
			name: "negative opt-in", releaseAfter: after("-5m"),
			wantReason: ReasonOrphanedVolume, wantWords: []string{"invalid"},
			wantClass: []string{"not a positive duration"},
		},
		{
			name: "empty opt-in", releaseAfter: after(""),
			wantReason: ReasonOrphanedVolume, wantWords: []string{"invalid"},
			wantClass: []string{"not a duration"},
		},
		{
			name: "node returned", releaseAfter: after("30m"),
			setup: func(w *world) {
				w.lose(0)
				w.reconcile() // seen orphaned
				w.clock.Step(time.Hour)
				// Back under the same name, on a new instance.
				if _, err := w.kube.CoreV1().Nodes().Create(w.ctx, node("cass-0", zones[0], "i-0000000000000beef"), metav1.CreateOptions{}); err != nil {
					w.t.Fatal(err)
				}
			},
			wantReason: ReasonVolumeNodeReplaced, wantWords: []string{"i-0000000000000beef"},
		},
		{
			name: "node returns between the snapshot and the deletion", releaseAfter: after("30m"),
			race: func(w *world) {
				w.before("get", "persistentvolumeclaims", func() {
					if err := w.kube.Tracker().Add(node("cass-0", zones[0], "i-0000000000000beef")); err != nil {
						w.t.Fatal(err)
					}
				})
			},
			wantReason: ReasonOrphanNotReleased, wantWords: []string{"node cass-0 exists again"},
		},
		{
			name: "node deleted but instance still running", releaseAfter: after("30m"),
			setup: func(w *world) {
				if err := w.kube.CoreV1().Nodes().Delete(w.ctx, "cass-0", metav1.DeleteOptions{}); err != nil {
					w.t.Fatal(err)
				}
			},
			wantReason: ReasonOrphanedVolume, wantWords: []string{"is running", "not released"},
		},
		{
			name: "instance never recorded", releaseAfter: after("30m"),
			setup: func(w *world) {
				w.lose(0)
				w.annotateVolume("pv-0", map[string]any{AnnotationInstanceID: nil, AnnotationZone: nil})
			},
			wantReason: ReasonOrphanedVolume, wantWords: []string{"no instance was recorded", "never released"},
		},
		{
			name: "instance unknown to EC2 in a region the balancer does not see", releaseAfter: after("30m"),
			setup: func(w *world) {
				w.lose(0)
				w.annotateVolume("pv-0", map[string]any{AnnotationInstanceID: "i-00000000000000ff1", AnnotationZone: "eu-west-1a"})
			},
			wantReason: ReasonOrphanedVolume, wantWords: []string{"i-00000000000000ff1", "unknown to EC2", "not released"},
		},
		{
			// Defect 2: the cluster's own nodes name the zone, but the balancer
			// asks EC2 in another region, where no instance of the cluster exists.
			name: "instance unknown to EC2 asked in another region", releaseAfter: after("30m"),
			setup: func(w *world) {
				w.lose(0)
				w.forget("pv-0")
				opts := w.emu.ClientOptions()
				opts.Region = "us-west-2"
				cloud, err := asg.New(w.ctx, opts)
				if err != nil {
					w.t.Fatal(err)
				}
				w.b.cloud = cloud
			},
			wantReason: ReasonOrphanedVolume, wantWords: []string{"i-00000000000000ff1", "unknown to EC2", "not released"},
		},
		{
			// Defect 2: EC2 answers for no other instance of the zone, so its
			// silence about this one proves nothing.
			name: "instance unknown to EC2 and no instance of its zone known", releaseAfter: after("30m"),
			setup: func(w *world) {
				w.lose(0)
				w.terminate(w.ids[1]) // its node stays: its volume is no orphan
				w.forget("pv-0")
			},
			wantReason: ReasonOrphanedVolume, wantWords: []string{"i-00000000000000ff1", "unknown to EC2", "not released"},
		},
		{
			name: "opt-in under five minutes", releaseAfter: after("1m"),
			wantReason: ReasonOrphanedVolume, wantWords: []string{"invalid"},
			wantClass: []string{"at least 5m0s"},
		},
		{
			name: "claim recreated by its StatefulSet", releaseAfter: after("30m"),
			setup: func(w *world) {
				w.lose(0)
				w.reconcile() // seen orphaned
				w.recreateClaim(0)
			},
			wantReason: ReasonOrphanNotReleased, wantWords: []string{"recreated", "uid-0-new"},
		},
		{
			name: "claim recreated between the check and the deletion: the UID precondition fails", releaseAfter: after("30m"),
			race: func(w *world) {
				// Runs before the apiserver's precondition check (enforcePreconditions).
				w.before("delete", "persistentvolumeclaims", func() { w.recreateClaim(0) })
			},
			wantReason: ReasonOrphanNotReleased, wantWords: []string{"changed before it could be deleted", "uid-0"},
		},
		{
			name: "EC2 fails on the re-check", releaseAfter: after("30m"),
			race: func(w *world) {
				// The loop's own lookup succeeds; the fresh one before the deletion fails.
				w.before("get", "persistentvolumeclaims", func() {
					w.emu.Inject(awstest.Fault{Service: "ec2", Action: "DescribeInstances", Code: "InternalError", Status: 500, Times: 10})
				})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 2, tc.releaseAfter)
			if tc.setup != nil {
				tc.setup(w)
			} else {
				w.lose(0)
				w.reconcile()
			}
			w.clock.Step(2 * time.Hour)
			w.kube.ClearActions()
			if tc.race != nil {
				// One loop, the race inside it.
				tc.race(w)
				err := w.b.Reconcile(w.ctx)
				if (err != nil) != (tc.name == "EC2 fails on the re-check") {
					t.Errorf("Reconcile: %v", err)
				}
			} else {
				// Two loops: the second must not change its mind.
				w.reconcile()
				w.reconcile()
			}

			want := allClaimsBut(2)
			if strings.HasPrefix(tc.name, "claim recreated") {
				want["data-0"] = "uid-0-new"
			}
			if diff := cmp.Diff(want, w.claims()); diff != "" {
				t.Errorf("claims (-want, +got):\n%s", diff)
			}
			if tc.wantReason != "" {
				if evs := w.rec.about("PersistentVolume", "pv-0", tc.wantReason, tc.wantWords...); len(evs) == 0 {
					t.Errorf("no %s event on pv-0 mentioning %q:\n%s", tc.wantReason, tc.wantWords, w.rec.dump())
				}
			}
			if tc.wantClass != nil {
				if evs := w.rec.about("StorageClass", localStorage, ReasonInvalidReleaseDelay, tc.wantClass...); len(evs) != 1 {
					t.Errorf("%d %s events on the StorageClass mentioning %q, want 1 (once per process):\n%s", len(evs), ReasonInvalidReleaseDelay, tc.wantClass, w.rec.dump())
				}
			}
			if tc.name == "claim recreated between the check and the deletion: the UID precondition fails" {
				if diff := cmp.Diff([]string{"data-0 uid=uid-0"}, w.claimDeletes()); diff != "" {
					t.Errorf("claim deletion (-want, +got):\n%s", diff)
				}
				if n := w.releases(releaseConflict); n != 1 {
					t.Errorf("orphan_releases_total{result=precondition_failed} = %v, want 1", n)
				}
			}
			if n := w.releases(releaseDeleted); n != 0 {
				t.Errorf("orphan_releases_total{result=deleted} = %v", n)
			}
		})
	}
}

// forget makes the instance a volume records one EC2 no longer knows, as EC2
// forgets terminated instances after about an hour.
func (w *world) forget(pv string) {
	w.t.Helper()
	w.annotateVolume(pv, map[string]any{AnnotationInstanceID: "i-00000000000000ff1"})
}

// annotateVolume merge-patches the volume's annotations: a string sets one,
// nil removes it.
func (w *world) annotateVolume(pv string, annotations map[string]any) {
	w.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.kube.CoreV1().PersistentVolumes().Patch(w.ctx, pv, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// before runs fn once, the first time the clientset is asked to verb resource.
func (w *world) before(verb, resource string, fn func()) {
	done := false
	w.kube.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		if !done {
			done = true
			fn()
		}
		return false, nil, nil
	})
}

// recreateClaim replaces claim data-<i> by one with a new UID, as a
// StatefulSet does once the old one is gone.
func (w *world) recreateClaim(i int) {
	w.t.Helper()
	gvr := v1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
	if err := w.kube.Tracker().Delete(gvr, ns, fmt.Sprintf("data-%d", i)); err != nil {
		w.t.Fatal(err)
	}
	c := boundClaim(i, types.UID(fmt.Sprintf("uid-%d-new", i)))
	c.Spec.VolumeName = ""
	if err := w.kube.Tracker().Create(gvr, c, ns); err != nil {
		w.t.Fatal(err)
	}
}

// TestOrphanReleaseRateLimited: seven orphans due at once, three per loop,
// the oldest first.
func TestOrphanReleaseRateLimited(t *testing.T) {
	w := newWorld(t, 8, after("30m"))
	w.b.opts.MaxOrphanReleases = 3
	// Lost one by one, a minute apart, in the order 6, 5, ..., 0: the oldest
	// orphan has the highest number.
	for i := 6; i >= 0; i-- {
		w.lose(i)
		w.reconcile()
		w.clock.Step(time.Minute)
	}
	w.clock.Step(time.Hour)
	var deleted []int
	for loop, want := range []int{3, 3, 1, 0} {
		w.kube.ClearActions()
		w.reconcile()
		got := w.claimDeletes()
		if len(got) != want {
			t.Errorf("loop %d deleted %v, want %d claims", loop, got, want)
		}
		for _, d := range got {
			var i int
			if _, err := fmt.Sscanf(d, "data-%d", &i); err != nil {
				t.Fatal(err)
			}
			deleted = append(deleted, i)
		}
	}
	if diff := cmp.Diff([]int{6, 5, 4, 3, 2, 1, 0}, deleted); diff != "" {
		t.Errorf("release order (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff(allClaimsBut(8, 0, 1, 2, 3, 4, 5, 6), w.claims()); diff != "" {
		t.Errorf("claims left (-want, +got):\n%s", diff)
	}

	// A negative limit releases nothing.
	w2 := newWorld(t, 2, after("30m"))
	w2.b.opts.MaxOrphanReleases = -1
	w2.lose(0)
	w2.loopsApart(time.Hour)
	if d := w2.claimDeletes(); len(d) != 0 {
		t.Errorf("MaxOrphanReleases=-1 deleted %v", d)
	}
}

// TestOrphanInstanceForgotten: EC2 forgets terminated instances after a while,
// but silence alone is no proof: DescribeInstances leaves out instances "that
// you do not own" (API_DescribeInstances). An instance no loop ever saw
// terminated is not taken for gone when EC2 does not know it (review 11);
// TestOrphanUnknownAfterEC2ForgetsIt covers one seen terminated first.
func TestOrphanInstanceForgotten(t *testing.T) {
	w := newWorld(t, 2, after("30m"))
	w.lose(0)
	w.forget("pv-0")
	w.loopsApart(time.Hour)
	if d := w.claimDeletes(); len(d) != 0 {
		t.Errorf("claims %v deleted for an instance EC2 never said was terminated", d)
	}
}

// TestOrphanHostnameAffinity: a CSI volume pinned by hostname affinity is
// node-local too, and one that any term lets elsewhere is not.
func TestOrphanHostnameAffinity(t *testing.T) {
	csi := boundVolume(0)
	csi.Spec.Local = nil
	csi.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: "topolvm.io", VolumeHandle: "h"}
	if diff := cmp.Diff([]string{"cass-0"}, boundLocalHosts(csi)); diff != "" {
		t.Errorf("hosts of a CSI volume pinned by hostname (-want, +got):\n%s", diff)
	}
	csi.Spec.NodeAffinity.Required.NodeSelectorTerms = append(csi.Spec.NodeAffinity.Required.NodeSelectorTerms, v1.NodeSelectorTerm{
		MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelTopologyZone, Operator: v1.NodeSelectorOpIn, Values: []string{zones[0]}}}})
	if got := boundLocalHosts(csi); got != nil {
		t.Errorf("a CSI volume with a zone term is not node-local, got hosts %v", got)
	}
}

// TestPlanListsOrphanRelease: plan lists the deletion, with its precondition,
// and deletes nothing; run then does it.
func TestPlanListsOrphanRelease(t *testing.T) {
	w := newWorld(t, 2, after("30m"))
	w.lose(0)
	w.reconcile()
	w.clock.Step(time.Hour)
	w.kube.ClearActions()
	actions, err := w.b.Plan(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, a := range actions {
		if strings.HasPrefix(a.Target, "persistentvolumeclaims/") || strings.Contains(a.Detail, ReasonOrphanReleased) {
			rows = append(rows, a.Target+" "+a.Verb+" "+a.Detail)
		}
	}
	if len(rows) != 3 || rows[0] != "persistentvolumeclaims/db/data-0 delete precondition uid=uid-0" {
		t.Errorf("plan rows about the release:\n%s", strings.Join(rows, "\n"))
	}
	for _, a := range w.kube.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" && v != "watch" {
			t.Errorf("plan wrote to the cluster: %s %s", v, a.GetResource().Resource)
		}
	}
	if diff := cmp.Diff(allClaimsBut(2), w.claims()); diff != "" {
		t.Errorf("claims after plan (-want, +got):\n%s", diff)
	}
	w.reconcile()
	if diff := cmp.Diff(allClaimsBut(2, 0), w.claims()); diff != "" {
		t.Errorf("claims after run (-want, +got):\n%s", diff)
	}
}
