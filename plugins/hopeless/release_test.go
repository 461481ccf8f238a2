package hopeless

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/internal/shapes"
)

// A node change releases the parked pods of exactly the verdicts it makes
// fit, through the release path's node handler (no node event is
// registered).
func TestNodeChangeReleases(t *testing.T) {
	tests := []struct {
		name     string
		old, new *v1.Node
		want     bool
	}{
		{"new node of the pool, wrong taint", nil, poolNode("b2", "batch", batchTaint), false},
		{"new node of another pool", nil, poolNode("w2", "web"), false},
		{"new node the pod tolerates", nil, poolNode("b3", "batch", batchjobsTaint), true},
		{"taint changed to a tolerated one", poolNode("b1", "batch", batchTaint), poolNode("b1", "batch", batchjobsTaint), true},
		{"label added that the pod selects", makeNode("x").Taints([]v1.Taint{batchjobsTaint}).Obj(), poolNode("x", "batch", batchjobsTaint), true},
		{"allocatable shrunk below the request", nil, makeNode("tiny").Label("pool", "batch").Taints([]v1.Taint{batchjobsTaint}).
			Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "50m", v1.ResourcePods: "110"}).Obj(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []runtime.Object{poolNode("w1", "web")}
			if tt.old != nil {
				objs = append(objs, tt.old)
			}
			f := newTestPlugin(t, "", objs...)
			activator := &recordingActivator{}
			f.setActivator(activator)
			report, other := cronPod("report-1"), cronPod("other")
			other.Spec.Tolerations = nil
			f.parkViaPreEnqueue(t, report)
			f.parkViaPreEnqueue(t, other)
			logger, _ := ktesting.NewTestContext(t)
			// What the node informer hands the release path.
			f.release.nodeChanged(tt.old, tt.new)
			f.release.recheckParked(logger)
			if tt.want {
				waitFor(t, releaseWithin, "default/report-1 activated", func() bool { return activator.has("default/report-1") })
			} else if !f.parked(report) {
				t.Errorf("the node released the pod: activated %v", activator.activated())
			}
			// The other verdict fits no node here.
			if !f.parked(other) || activator.has("default/other") {
				t.Errorf("a pod of another verdict was released: activated %v", activator.activated())
			}
		})
	}
}

func TestStaticFieldsChanged(t *testing.T) {
	base := poolNode("n", "batch", batchTaint)
	tests := []struct {
		name   string
		change func(*v1.Node)
		want   bool
	}{
		{"nothing", func(*v1.Node) {}, false},
		{"annotation", func(n *v1.Node) { n.Annotations = map[string]string{"a": "b"} }, false},
		{"condition", func(n *v1.Node) { n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady}} }, false},
		{"label", func(n *v1.Node) { n.Labels["pool"] = "web" }, true},
		{"taint", func(n *v1.Node) { n.Spec.Taints = nil }, true},
		{"unschedulable", func(n *v1.Node) { n.Spec.Unschedulable = true }, true},
		{"allocatable", func(n *v1.Node) { n.Status.Allocatable[v1.ResourceCPU] = *n.Status.Allocatable.Memory() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := base.DeepCopy()
			tt.change(n)
			if got := staticFieldsChanged(base, n); got != tt.want {
				t.Errorf("staticFieldsChanged = %v, want %v", got, tt.want)
			}
		})
	}
}

// A claim or volume change activates the parked pods of that claim that
// now fit, and only them: a StatefulSet recreates the claim of a pod parked
// for a local PV on a gone node, or the PV bound to the claim is fixed (a
// PV bound to no claim activates nobody).
func TestClaimOrVolumeChangeActivates(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *testPlugin) error
	}{
		{"claim recreated", func(f *testPlugin) error {
			claim := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-db-0"}}
			_, err := f.client.CoreV1().PersistentVolumeClaims("default").Create(f.ctx, claim, metav1.CreateOptions{})
			return err
		}},
		{"volume of the claim changed", func(f *testPlugin) error {
			unbound := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-free"}}
			pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-0"},
				Spec: v1.PersistentVolumeSpec{ClaimRef: &v1.ObjectReference{Namespace: "default", Name: "data-db-0"}}}
			for _, v := range []*v1.PersistentVolume{unbound, pv} {
				if _, err := f.client.CoreV1().PersistentVolumes().Create(f.ctx, v, metav1.CreateOptions{}); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestPlugin(t, "", makeNode("n1").Obj())
			activator := &recordingActivator{}
			f.setActivator(activator)
			a, b := podWithClaim("db-0", "data-db-0"), podWithClaim("db-1", "data-db-1")
			for _, p := range []*v1.Pod{a, b} {
				f.createPod(t, p)
				f.plugin.parking.park(p, 0, hopelessVerdict(shapes.ReasonVolumeNodeAffinity, "test"), true)
			}
			if err := tt.change(f); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the pod of the claim activated", func() bool { return len(activator.activated()) > 0 })
			if diff := cmp.Diff([]string{"default/db-0"}, activator.activated()); diff != "" {
				t.Errorf("activated (-want, +got):\n%s", diff)
			}
			if got := f.plugin.parking.lot.ofClaim("default/data-db-0"); len(got) != 0 {
				t.Errorf("claim index keeps an activated pod: %v", got)
			}
			if !f.parked(b) {
				t.Error("the pod of the other claim was unparked")
			}
		})
	}
}

// Store lag: the queue's listener of the node informer ran before the
// plugin's (two listeners of one informer, in no order), so the pod was
// parked against a store without the node. When the plugin's store catches
// up, the plugin itself brings the pod back.
func TestStoreLagReleases(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	activator := &recordingActivator{}
	f.setActivator(activator)
	f.parkViaPreEnqueue(t, cronPod("report-1"))
	if _, err := f.client.CoreV1().Nodes().Create(f.ctx, poolNode("b1", "batch", batchjobsTaint), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, releaseWithin, "default/report-1 activated", func() bool { return activator.has("default/report-1") })
}

// Stale reason: a pod asking for 64 CPUs is parked while every node still
// has a maintenance taint; when the taint goes, the pod stays parked, and
// its condition says the current reason within seconds. (A not-ready taint
// is no reason to park: internal/shapes ignores the taints of starting nodes.)
func TestParkedReasonFollowsTheCluster(t *testing.T) {
	maintenance := v1.Taint{Key: "example.com/maintenance", Effect: v1.TaintEffectNoSchedule}
	f := newTestPlugin(t, "", makeNode("n1").Taints([]v1.Taint{maintenance}).Obj(), makeNode("n2").Taints([]v1.Taint{maintenance}).Obj())
	f.parkViaPreEnqueue(t, bigPod("big", "64"))
	waitMessage := func(substr string) string {
		t.Helper()
		var got string
		waitFor(t, 5*time.Second, "condition says "+substr, func() bool {
			if c := f.podCondition("big"); c != nil {
				got = c.Message
			}
			return strings.Contains(got, substr)
		})
		return got
	}
	got := waitMessage("example.com/maintenance:NoSchedule")
	if !strings.HasPrefix(got, shapes.MessagePrefix) || strings.Contains(got, "no tolerations") || !strings.Contains(got, "node.kubernetes.io/not-ready:NoExecute") {
		t.Errorf("the message misstates the pod's tolerations: %q", got)
	}
	for _, name := range []string{"n1", "n2"} {
		n, err := f.client.CoreV1().Nodes().Get(f.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Taints = nil
		if _, err := f.client.CoreV1().Nodes().Update(f.ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitMessage("requests cpu=64")
}

// The plugin registers no node event: every registered node event made the
// queue hand the event to each parked pod in turn (4,000 hint calls per node
// of a churning pool). A node that fits brings the pod back through the
// release path, which runs after its store has the node, so the pod passes
// PreEnqueue when the queue re-runs it.
func TestNodeAddReleasesWithoutNodeEvents(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	activator := &preEnqueueActivator{pl: f.plugin}
	f.setActivator(activator)
	f.parkViaPreEnqueue(t, cronPod("report-1"))
	if _, err := f.client.CoreV1().Nodes().Create(f.ctx, poolNode("b1", "batch", batchjobsTaint), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, releaseWithin, "the parked pod passed PreEnqueue after an activation", func() bool { return activator.released("default/report-1") })
}

// Store lag in the other direction: PreEnqueue judged the pod against a
// store without the node, the node reached the store (and its re-check ran,
// finding nothing to release) before the pod was in the parking lot. The
// plugin notices that the store moved while it judged, and checks again.
func TestParkAfterStoreMovedRechecks(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("w1", "web"))
	activator := &preEnqueueActivator{pl: f.plugin}
	f.setActivator(activator)
	pod := cronPod("report-1")
	f.createPod(t, pod)
	// PreEnqueue, step by step: the store as it was when judging ...
	judged := f.plugin.verdicts.generations()
	v, key, ok := f.plugin.verdicts.judge(pod)
	if !ok || !v.Hopeless {
		t.Fatalf("verdict %+v ok=%v, want hopeless", v, ok)
	}
	// ... the node handler updates the store (its re-check finds no parked pod) ...
	f.store.UpsertNode(poolNode("b1", "batch", batchjobsTaint))
	// ... and only then is the pod parked.
	f.plugin.parkJudged(pod, key, v, true, judged)
	waitFor(t, releaseWithin, "a pod parked against a store that moved on released", func() bool { return activator.released("default/report-1") })
}

// A node deleted releases nobody but re-reports the reason: the pod's
// condition follows.
func TestNodeDeleteRereports(t *testing.T) {
	f := newTestPlugin(t, "", poolNode("b1", "batch", batchTaint), poolNode("w1", "web"))
	f.parkViaPreEnqueue(t, cronPod("report-1"))
	waitFor(t, 5*time.Second, "the condition names the taint", func() bool {
		c := f.podCondition("report-1")
		return c != nil && strings.Contains(c.Message, "dedicated=batch:NoSchedule")
	})
	if err := f.client.CoreV1().Nodes().Delete(f.ctx, "b1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the condition no longer names the deleted node's taint", func() bool {
		c := f.podCondition("report-1")
		return c != nil && !strings.Contains(c.Message, "dedicated=batch:NoSchedule")
	})
	if !f.parked(cronPod("report-1")) {
		t.Error("a node deletion released the pod")
	}
}

func deviceClass(name, extended string) *resourceapi.DeviceClass {
	dc := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if extended != "" {
		dc.Spec.ExtendedResourceName = ptr.To(extended)
	}
	return dc
}

// TestDeviceClassDecidesVerdict: an extended resource no node advertises is
// hopeless until a DeviceClass maps it, and hopeless again once it goes.
func TestDeviceClassDecidesVerdict(t *testing.T) {
	for _, name := range []v1.ResourceName{"example.com/dra-gpu", "deviceclass.resource.kubernetes.io/gpu.example.com"} {
		t.Run(string(name), func(t *testing.T) {
			p := newPlainPlugin(st.MakeNode().Name("n1").Capacity(map[v1.ResourceName]string{v1.ResourceCPU: "4", v1.ResourcePods: "110"}).Obj())
			r := &releaser{store: p.store, recheck: make(chan struct{}, 1)}
			req := shapes.NewRequirements(st.MakePod().Req(map[v1.ResourceName]string{name: "1"}).Obj(), nil, p.store.Options())
			if v := p.store.Evaluate(req); !v.Hopeless {
				t.Fatalf("no node advertises %s and no class maps it: want hopeless, got %+v", name, v)
			}
			r.deviceClassChanged(deviceClass("gpu.example.com", "example.com/dra-gpu"), false)
			if v := p.store.Evaluate(req); v.Hopeless {
				t.Fatalf("a DeviceClass maps %s: want it left to the scheduler, got %+v", name, v)
			}
			if len(r.recheck) != 1 {
				t.Error("a class that maps a new name asked for no re-check")
			}
			<-r.recheck
			r.deviceClassChanged(deviceClass("gpu.example.com", "example.com/dra-gpu"), true)
			if v := p.store.Evaluate(req); !v.Hopeless {
				t.Fatalf("the class is gone: want hopeless again, got %+v", v)
			}
			if len(r.recheck) != 1 {
				t.Error("a class deleted asked for no re-check")
			}
		})
	}
}

// A DeviceClass created through the API releases a parked pod that
// requests the name it maps.
func TestDeviceClassReleases(t *testing.T) {
	f := newTestPlugin(t, "", makeNode("n1").Obj())
	activator := &recordingActivator{}
	f.setActivator(activator)
	pod := makePod("trainer").Req(map[v1.ResourceName]string{"example.com/dra-gpu": "1"}).Obj()
	f.parkViaPreEnqueue(t, pod)
	if _, err := f.client.ResourceV1().DeviceClasses().Create(f.ctx, deviceClass("gpu.example.com", "example.com/dra-gpu"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, releaseWithin, "default/trainer activated", func() bool { return activator.has("default/trainer") })
}

// recheck asks for at most one pending re-check, however many changes
// come in: the loop judges once for all of them.
func TestRecheckRequestsCoalesce(t *testing.T) {
	r := &releaser{recheck: make(chan struct{}, 1)}
	for range 5 {
		r.requestRecheck()
	}
	if n := len(r.recheck); n != 1 {
		t.Errorf("%d pending re-checks after 5 requests, want 1", n)
	}
}

// The release path judges nothing until the informers synced.
func TestRecheckWaitsForSync(t *testing.T) {
	p := newPlainPlugin(poolNode("b1", "batch", batchjobsTaint))
	pod := cronPod("report-1")
	p.parking.park(pod, 0, hopelessVerdict(shapes.ReasonTaint, "test"), true)
	activator := &recordingActivator{}
	r := newReleaser(p.store, p.verdicts, p.parking, activator, nil, func() bool { return p.synced }, ktesting.NewLogger(t, ktesting.DefaultConfig))
	p.synced = false
	r.recheckParked(r.logger)
	if len(activator.activated()) != 0 || !p.parked(pod) {
		t.Fatalf("released %v before the informers synced", activator.activated())
	}
	p.synced = true
	r.recheckParked(r.logger)
	if diff := cmp.Diff([]string{"default/report-1"}, activator.activated()); diff != "" {
		t.Errorf("activated once synced (-want, +got):\n%s", diff)
	}
	if p.parked(pod) {
		t.Error("a released pod stays in the lot")
	}
}

var _ fwk.PodActivator = &recordingActivator{}

// TestNodeChangeJudgesOnlyTheVerdictsItCanChange: the verdict of a pod
// whose local PV is pinned to a gone node names nodes, so judging it again
// checks every node; with one such verdict per claim, judging them all on
// every node event was the cost of incident-sized LocalPV pile-ups. A node
// that cannot change them (it fails each pod where n1 already does) judges
// none again; the node a PV names releases its pod, and only it.
func TestNodeChangeJudgesOnlyTheVerdictsItCanChange(t *testing.T) {
	objs := []runtime.Object{makeNode("n1").Obj()}
	var pods []*v1.Pod
	for i := range 5 {
		claim, pv := fmt.Sprintf("data-db-%d", i), fmt.Sprintf("pv-%d", i)
		objs = append(objs, localPV(pv, claim, fmt.Sprintf("gone-%d", i)), &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: claim, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
			Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}})
		pods = append(pods, podWithClaim(fmt.Sprintf("db-%d", i), claim))
	}
	f := newTestPlugin(t, "", objs...)
	activator := &recordingActivator{}
	f.setActivator(activator)
	for _, p := range pods {
		f.parkViaPreEnqueue(t, p)
	}
	// When each parked verdict was last judged (the store's member
	// generation then).
	judgedAt := func() map[verdictKey]uint64 {
		f.plugin.verdicts.mu.Lock()
		defer f.plugin.verdicts.mu.Unlock()
		m := map[verdictKey]uint64{}
		for _, p := range f.plugin.parking.lot.onePerMessage() {
			m[p.key] = f.plugin.verdicts.verdicts[p.key].MemberGen
		}
		return m
	}
	// Whatever re-check the parking asked for is done first.
	logger, _ := ktesting.NewTestContext(t)
	f.release.recheckParked(logger)
	before := judgedAt()
	if len(before) != len(pods) {
		t.Fatalf("setup: %d parked verdicts, want one per claim (%d)", len(before), len(pods))
	}
	f.release.nodeChanged(nil, makeNode("n2").Obj())
	f.release.recheckParked(logger)
	if diff := cmp.Diff(before, judgedAt()); diff != "" {
		t.Errorf("a node that cannot change any parked verdict had them judged again (-before, +after):\n%s", diff)
	}
	f.release.nodeChanged(nil, makeNode("gone-3").Obj())
	f.release.recheckParked(logger)
	waitFor(t, releaseWithin, "default/db-3 activated", func() bool { return activator.has("default/db-3") })
	if diff := cmp.Diff([]string{"default/db-3"}, activator.activated()); diff != "" {
		t.Errorf("activated (-want, +got):\n%s", diff)
	}
	for i, p := range pods {
		if i != 3 && !f.parked(p) {
			t.Errorf("pod %s was released by the node of another PV", p.Name)
		}
	}
}

// TestVolumeDeleteActivates: a deleted PV no longer pins its claim's pods
// (VolumeBinding then waits for the claim, which is not hopeless): the
// parked pod of the claim is brought back at once, not at the flush.
func TestVolumeDeleteActivates(t *testing.T) {
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-db-0", Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: "pv-0"}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}}
	f := newTestPlugin(t, "", makeNode("n1").Obj(), localPV("pv-0", "data-db-0", "gone-node"), pvc)
	activator := &recordingActivator{}
	f.setActivator(activator)
	f.parkViaPreEnqueue(t, podWithClaim("db-0", "data-db-0"))
	if err := f.client.CoreV1().PersistentVolumes().Delete(f.ctx, "pv-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, releaseWithin, "default/db-0 activated", func() bool { return activator.has("default/db-0") })
}

// TestClaimsNamingFollowsClaims: the claims naming each PV follow the
// claims' adds, rebinds and deletes.
func TestClaimsNamingFollowsClaims(t *testing.T) {
	r := &releaser{}
	names := func(pv string) []string { return sets.List(r.claimsNaming(pv)) }
	r.indexClaim("a/x", "pv-1", false)
	r.indexClaim("a/y", "pv-1", false)
	r.indexClaim("a/z", "", false) // unbound: names none
	if got := names("pv-1"); !slices.Equal(got, []string{"a/x", "a/y"}) {
		t.Fatalf("pv-1 named by %v, want [a/x a/y]", got)
	}
	r.indexClaim("a/x", "pv-2", false) // rebound
	if got := names("pv-1"); !slices.Equal(got, []string{"a/y"}) {
		t.Errorf("after a/x rebound, pv-1 named by %v, want [a/y]", got)
	}
	if got := names("pv-2"); !slices.Equal(got, []string{"a/x"}) {
		t.Errorf("after a/x rebound, pv-2 named by %v, want [a/x]", got)
	}
	r.indexClaim("a/y", "pv-1", true) // deleted
	r.indexClaim("a/x", "", false)    // unbound
	if len(r.claimsOfVolume) != 0 || len(r.volumeOfClaim) != 0 {
		t.Errorf("after every claim left, the index keeps %v and %v", r.claimsOfVolume, r.volumeOfClaim)
	}
	if got := names("pv-9"); len(got) != 0 {
		t.Errorf("pv-9 named by %v", got)
	}
}
