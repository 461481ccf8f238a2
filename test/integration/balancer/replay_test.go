package balancer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	testutils "k8s.io/kubernetes/test/integration/util"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// Incident 7 at full size: 120 Cassandra pods on static local volumes, one
// Auto Scaling group over three zones with room for 10% more while it
// rebalances.
const (
	replicas      = 120
	replayMaxSize = 132
	replayGroup   = "cassandra"
)

// TestReplayIncident7 replays the night of incident 7 on a real apiserver and
// the emulated AWS: zone c short of capacity while the group scales out to
// 120, so the group fills a and b; zone c recovers and AZRebalance runs.
func TestReplayIncident7(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "replay", nil)
	t.Run("without the balancer the rebalancing orphans a third of the volumes, and opted-in orphans are released", func(t *testing.T) {
		testReplayWithout(t, server)
	})
	t.Run("with the balancer nothing is terminated and every pod stays on its node", func(t *testing.T) {
		testReplayWith(t, server)
	})
}

// statefulSet is the test's stand-in for a StatefulSet controller and the
// nodes of its pods.
type statefulSet struct {
	e        *env
	nodeOf   map[string]string // instance id -> node name
	podNode  map[string]string // pod -> node it was bound to
	claimUID map[string]types.UID
}

func podName(i int) string   { return fmt.Sprintf("cassandra-%d", i) }
func claimName(i int) string { return "data-" + podName(i) }

// night scales the group out to 120 while zone c refuses launches, then
// registers a node per instance, binds a local volume on each and runs the
// pods on them. It returns before zone c recovers.
func (e *env) night() *statefulSet {
	e.t.Helper()
	e.emu.CreateGroup(awstest.GroupSpec{Name: replayGroup, Zones: zones, MinSize: 0, MaxSize: replayMaxSize, InstanceType: "i3.xlarge", Tags: caTags(nil)})
	e.emu.RefuseLaunches(zones[2], true)
	if _, err := e.rawASG().UpdateAutoScalingGroup(e.ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: awssdk.String(replayGroup), DesiredCapacity: awssdk.Int32(replicas)}); err != nil {
		e.t.Fatal(err)
	}
	instances := e.emu.GroupInstances(replayGroup)
	if diff := cmp.Diff(map[string]int{zones[0]: replicas / 2, zones[1]: replicas / 2}, inService(instances)); diff != "" {
		e.t.Fatalf("instances by zone with zone c short (-want, +got):\n%s", diff)
	}
	s := &statefulSet{e: e, nodeOf: map[string]string{}, podNode: map[string]string{}, claimUID: map[string]types.UID{}}
	perZone := map[string]int{}
	for i, inst := range instances {
		n := fmt.Sprintf("cass-%s-%d", inst.Zone[len(inst.Zone)-1:], perZone[inst.Zone])
		perZone[inst.Zone]++
		e.createNode(n, inst.Zone, inst.ID, nil)
		s.nodeOf[inst.ID] = n
		e.bindLocalVolume(claimName(i), "local-pv-"+n, n)
		e.statefulPod(i, n)
		s.podNode[podName(i)] = n
	}
	claims, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range claims.Items {
		s.claimUID[c.Name] = c.UID
	}
	return s
}

func inService(instances []awstest.Instance) map[string]int {
	out := map[string]int{}
	for _, i := range instances {
		if i.LifecycleState == awstest.InService {
			out[i.Zone]++
		}
	}
	return out
}

// statefulPod creates pod cassandra-<i> using claim data-cassandra-<i>, bound
// to node when not empty (as if scheduled before), else pending.
func (e *env) statefulPod(i int, node string) *v1.Pod {
	e.t.Helper()
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: podName(i), Labels: map[string]string{"app": "cassandra"}},
		Spec: v1.PodSpec{
			NodeName:      node,
			SchedulerName: "ballast-scheduler",
			Containers: []v1.Container{{Name: "cassandra", Image: "registry.k8s.io/pause:3.10",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}}},
			Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claimName(i)}}}},
		},
	}
	pod, err := e.cs.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// recover lets zone c launch again and runs AZRebalance; it returns the
// instances AWS terminated for good.
func (s *statefulSet) recover() []string {
	s.e.emu.RefuseLaunches(zones[2], false)
	var gone []string
	for _, id := range s.e.emu.AZRebalance() {
		if i, _ := s.e.emu.Instance(id); i.EC2State == "terminated" {
			gone = append(gone, id)
		}
	}
	return gone
}

func testReplayWithout(t *testing.T, server *testutils.TestContext) {
	start := time.Now()
	e := newEnv(t, server, "replay-without")
	s := e.night()
	createStorageClass(t, e, nil)

	// A balancer that does not manage the group (it lacks the auto-discovery
	// tags of the balancer's cluster) looks at the nodes and records, on
	// each bound volume, the instance of its node; toward AWS it is as if no
	// balancer ran: it changes nothing.
	observer := balancer.New(e.cs, e.cloud, e.recorder(), e.clock,
		balancer.Options{Selector: asg.AutoDiscovery("another-cluster"), ConfigMapNamespace: e.ns, HeartbeatTimeout: 5 * time.Minute}, nil)
	e.emu.Reset()
	e.settle()
	if err := observer.Reconcile(e.ctx); err != nil {
		t.Fatalf("observer loop: %v", err)
	}
	if calls := e.emu.MutatingCalls(); len(calls) != 0 {
		t.Fatalf("a balancer that does not manage the group changed AWS: %v", actions(calls))
	}

	// Zone c recovers; AWS rebalances 60+60+0 into 40+40+40.
	terminated := s.recover()
	if len(terminated) != replicas/3 {
		t.Fatalf("AZRebalance terminated %d instances, want %d", len(terminated), replicas/3)
	}
	if diff := cmp.Diff(map[string]int{zones[0]: replicas / 3, zones[1]: replicas / 3, zones[2]: replicas / 3}, inService(e.emu.GroupInstances(replayGroup))); diff != "" {
		t.Errorf("instances by zone after the rebalancing (-want, +got):\n%s", diff)
	}

	// What the controllers do: the cloud node controller deletes the nodes
	// of the terminated instances; pod GC deletes their pods and the
	// StatefulSet recreates them, unbound. The rebalancing's new instances
	// in zone c join as nodes.
	lost := map[string]bool{} // pods
	for _, id := range terminated {
		n := s.nodeOf[id]
		if err := e.cs.CoreV1().Nodes().Delete(e.ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for pod, on := range s.podNode {
			if on == n {
				lost[pod] = true
			}
		}
	}
	for _, inst := range e.emu.GroupInstances(replayGroup) {
		if _, ok := s.nodeOf[inst.ID]; !ok {
			n := "cass-c-" + inst.ID
			e.createNode(n, inst.Zone, inst.ID, nil)
			s.nodeOf[inst.ID] = n
		}
	}
	startScheduler(t, e.testCtx, "secondary-profile.yaml", map[string]any{"autoscaling": false})
	var recreated []*v1.Pod
	for i := range replicas {
		if !lost[podName(i)] {
			continue
		}
		if err := e.cs.CoreV1().Pods(e.ns).Delete(e.ctx, podName(i), *metav1.NewDeleteOptions(0)); err != nil {
			t.Fatal(err)
		}
		recreated = append(recreated, e.statefulPod(i, ""))
	}
	if len(recreated) != len(terminated) {
		t.Fatalf("%d pods on the %d lost nodes, want one each", len(recreated), len(terminated))
	}

	// Every lost volume is still bound, to a node that no longer exists.
	orphaned := e.orphanedClaims(s)
	if len(orphaned) != len(terminated) {
		t.Errorf("%d bound volumes pinned to deleted nodes, want %d", len(orphaned), len(terminated))
	}
	// The scheduler names the recreated pods hopeless, for their volume.
	for i, p := range recreated {
		got := e.waitCondition(p, "parked as hopeless", testenv.ParkedByBallast)
		c := scheduledCondition(got)
		if !strings.Contains(c.Message, "PersistentVolume") || !strings.Contains(c.Message, "local-pv-"+s.podNode[p.Name]) {
			t.Errorf("pod %s parked for another reason: %s", p.Name, c.Message)
		}
		if i == 0 {
			t.Logf("pod %s: %s", p.Name, c.Message)
		}
	}
	e.stillBound(s, lost)
	t.Logf("without the balancer: %d of %d instances terminated, %d volumes orphaned, %d pods hopeless (%s)",
		len(terminated), replicas, len(orphaned), len(recreated), time.Since(start).Round(time.Second))

	e.releaseOrphans(s, orphaned)
	t.Logf("without the balancer, orphans released after %s", time.Since(start).Round(time.Second))
}

// orphanedClaims returns the claim and uid of every bound volume whose node is gone.
func (e *env) orphanedClaims(s *statefulSet) map[string]types.UID {
	e.t.Helper()
	pvs, err := e.cs.CoreV1().PersistentVolumes().List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, pv := range pvs.Items {
		host := strings.TrimPrefix(pv.Name, "local-pv-")
		if pv.Status.Phase != v1.VolumeBound || pv.Spec.ClaimRef == nil {
			continue
		}
		if _, err := e.cs.CoreV1().Nodes().Get(e.ctx, host, metav1.GetOptions{}); err == nil {
			continue
		}
		if s.claimUID[pv.Spec.ClaimRef.Name] != pv.Spec.ClaimRef.UID {
			e.t.Errorf("volume %s is bound to %s uid %s, want uid %s", pv.Name, pv.Spec.ClaimRef.Name, pv.Spec.ClaimRef.UID, s.claimUID[pv.Spec.ClaimRef.Name])
		}
		out[pv.Spec.ClaimRef.Name] = pv.Spec.ClaimRef.UID
	}
	return out
}

// stillBound checks that every pod not in lost still runs on its node.
func (e *env) stillBound(s *statefulSet, lost map[string]bool) {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	on := map[string]string{}
	for _, p := range pods.Items {
		on[p.Name] = p.Spec.NodeName
	}
	want := map[string]string{}
	for pod, n := range s.podNode {
		if !lost[pod] {
			want[pod] = n
		} else {
			want[pod] = ""
		}
	}
	if diff := cmp.Diff(want, on); diff != "" {
		e.t.Errorf("pods by node (-want, +got):\n%s", diff)
	}
}

func createStorageClass(t *testing.T, e *env, releaseAfter *string) {
	t.Helper()
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-storage"}, Provisioner: "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptrTo(storagev1.VolumeBindingWaitForFirstConsumer)}
	if releaseAfter != nil {
		sc.Annotations = map[string]string{balancer.AnnotationReleaseOrphansAfter: *releaseAfter}
	}
	if _, err := e.cs.StorageV1().StorageClasses().Create(e.ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.cs.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
}

func (e *env) optIn(value string) {
	e.t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, balancer.AnnotationReleaseOrphansAfter, value)
	if _, err := e.cs.StorageV1().StorageClasses().Patch(e.ctx, "local-storage", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// releaseOrphans: the balancer, now deployed for the group, reports the
// orphans; the StorageClass opts in (first with a typo); once the delay has
// passed since they were first seen, plan lists the deletions and run deletes
// the orphaned claims, at most 16 per loop, each with its UID as precondition,
// and no other claim.
func (e *env) releaseOrphans(s *statefulSet, orphaned map[string]types.UID) {
	t := e.t
	const perLoop = 16
	deletes := &deleteRecorder{}
	cfg := rest.CopyConfig(e.testCtx.KubeConfig)
	cfg.ContentType = "application/json" // so that the recorder reads the DeleteOptions
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &recordingTransport{rt: rt, rec: deletes} })
	cs, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts := e.opts
	opts.MaxOrphanReleases = perLoop
	b := balancer.New(cs, e.cloud, e.recorder(), e.clock, opts, reg)
	loop := func() {
		t.Helper()
		e.settle()
		if err := b.Reconcile(e.ctx); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}

	// Reported: the gauge, and an event on a volume and on its claim.
	loop()
	if n := testenv.Gathered(t, reg, "ballast_az_balancer_orphaned_volumes"); n != float64(len(orphaned)) {
		t.Errorf("ballast_az_balancer_orphaned_volumes = %v, want %d", n, len(orphaned))
	}
	some := slices.Sorted(maps.Keys(orphaned))[0]
	claim, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, some, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvName := claim.Spec.VolumeName
	e.waitEvents(metav1.NamespaceDefault, pvName, balancer.ReasonOrphanedVolume, 1, "terminated", "not released", balancer.AnnotationReleaseOrphansAfter)
	e.waitEvents(e.ns, some, balancer.ReasonOrphanedVolume, 1, pvName, "terminated")

	// A typo in the opt-in: reported on the class, nothing released.
	e.optIn("30 minutes")
	e.clock.Step(time.Hour)
	loop()
	e.waitEvents(metav1.NamespaceDefault, "local-storage", balancer.ReasonInvalidReleaseDelay, 1, `"30 minutes"`)
	if got := deletes.list(); len(got) != 0 {
		t.Fatalf("deleted %v with a malformed opt-in", got)
	}

	// Fixed; the delay runs from when the orphans were first seen, an hour ago.
	e.optIn("90m")
	loop()
	if got := deletes.list(); len(got) != 0 {
		t.Fatalf("deleted %v before the delay", got)
	}
	e.clock.Step(31 * time.Minute)

	// plan lists the first 16 deletions, with their preconditions, and deletes nothing.
	e.settle()
	planner := balancer.New(e.cs, e.cloud, &record.FakeRecorder{}, e.clock, opts, nil)
	planned, err := planner.Plan(e.ctx)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var listed []string
	for _, a := range planned {
		if c, ok := strings.CutPrefix(a.Target, "persistentvolumeclaims/"+e.ns+"/"); ok {
			if a.Verb != "delete" || a.Detail != "precondition uid="+string(orphaned[c]) {
				t.Errorf("plan row %s %s %s, want a delete with precondition uid=%s", a.Target, a.Verb, a.Detail, orphaned[c])
			}
			listed = append(listed, c)
		}
	}
	if len(listed) != perLoop {
		t.Errorf("plan lists %d claim deletions, want %d: %v", len(listed), perLoop, listed)
	}
	if got := e.claims(); len(got) != replicas {
		t.Fatalf("plan deleted claims: %d left", len(got))
	}

	// run releases them all within three loops, 16 at most each.
	for i := 0; i < 4 && len(deletes.list()) < len(orphaned); i++ {
		before := len(deletes.list())
		loop()
		if n := len(deletes.list()) - before; n > perLoop {
			t.Errorf("loop %d deleted %d claims, want at most %d", i, n, perLoop)
		}
	}
	want := map[string]string{}
	for c, uid := range orphaned {
		want[c] = string(uid)
	}
	got := map[string]string{}
	for _, d := range deletes.list() {
		got[d.name] = d.uid
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claim deletions and their UID preconditions (-want, +got):\n%s", diff)
	}
	left := e.claims()
	for c, uid := range s.claimUID {
		_, isOrphan := orphaned[c]
		if _, ok := left[c]; ok == isOrphan {
			t.Errorf("claim %s (orphaned %t) exists %t after the release", c, isOrphan, ok)
		} else if ok && left[c] != uid {
			t.Errorf("claim %s has uid %s, want %s", c, left[c], uid)
		}
	}
	if n := testenv.Gathered(t, reg, "ballast_az_balancer_orphan_releases_total", "result", "deleted"); n != float64(len(orphaned)) {
		t.Errorf("ballast_az_balancer_orphan_releases_total{result=deleted} = %v, want %d", n, len(orphaned))
	}
	e.waitEvents(e.ns, some, balancer.ReasonOrphanReleased, 1, string(orphaned[some]))
}

// claims maps the namespace's claims to their uids.
func (e *env) claims() map[string]types.UID {
	e.t.Helper()
	list, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, c := range list.Items {
		out[c.Name] = c.UID
	}
	return out
}

// deleteRecorder keeps the claim deletions that reached the apiserver, with
// the UID precondition of each, read from the request body.
type deleteRecorder struct {
	mu      sync.Mutex
	deletes []claimDelete
}

type claimDelete struct{ name, uid string }

func (r *deleteRecorder) list() []claimDelete {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.deletes)
}

type recordingTransport struct {
	rt  http.RoundTripper
	rec *deleteRecorder
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodDelete || !strings.Contains(req.URL.Path, "/persistentvolumeclaims/") {
		return t.rt.RoundTrip(req)
	}
	d := claimDelete{name: req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:], uid: "<none>"}
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var opts metav1.DeleteOptions
		if json.Unmarshal(body, &opts) == nil && opts.Preconditions != nil && opts.Preconditions.UID != nil {
			d.uid = string(*opts.Preconditions.UID)
		}
	}
	resp, err := t.rt.RoundTrip(req)
	if err == nil && resp.StatusCode < 300 {
		t.rec.mu.Lock()
		t.rec.deletes = append(t.rec.deletes, d)
		t.rec.mu.Unlock()
	}
	return resp, err
}

func testReplayWith(t *testing.T, server *testutils.TestContext) {
	start := time.Now()
	e := newEnv(t, server, "replay-with")
	s := e.night()

	// One loop before the zone recovers.
	e.mustReconcile()
	if diff := cmp.Diff([]string{asg.ProcessAZRebalance}, e.emu.Suspended(replayGroup)); diff != "" {
		t.Errorf("suspended processes (-want, +got):\n%s", diff)
	}
	if got := len(e.protected(replayGroup)); got != replicas {
		t.Errorf("%d instances protected from scale-in, want %d", got, replicas)
	}

	terminated := s.recover()
	if len(terminated) != 0 {
		t.Fatalf("AZRebalance terminated %d instances after one loop: %v", len(terminated), terminated)
	}
	// Still short of zone c, and nothing terminating either.
	instances := e.emu.GroupInstances(replayGroup)
	if diff := cmp.Diff(map[string]int{zones[0]: replicas / 2, zones[1]: replicas / 2}, inService(instances)); diff != "" {
		t.Errorf("instances by zone (-want, +got):\n%s", diff)
	}
	for _, a := range e.emu.Activities() {
		if strings.HasPrefix(a.Description, "Terminating") {
			t.Errorf("scaling activity after the loop: %s", a.Description)
		}
	}
	// Every node and every bound volume is still there, every pod on its node.
	for _, inst := range instances {
		e.node(s.nodeOf[inst.ID])
	}
	if orphaned := e.orphanedClaims(s); len(orphaned) != 0 {
		t.Errorf("%d volumes orphaned with the balancer", len(orphaned))
	}
	e.stillBound(s, nil)

	// A later loop finds nothing to release, and plan nothing to delete.
	e.clock.Step(2 * time.Hour)
	e.mustReconcile()
	planner := balancer.New(e.cs, e.cloud, &record.FakeRecorder{}, e.clock, e.opts, nil)
	planned, err := planner.Plan(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range planned {
		if a.Verb == "delete" {
			t.Errorf("plan deletes %s", a.Target)
		}
	}
	if got := e.claims(); len(got) != replicas {
		t.Errorf("%d claims left, want %d", len(got), replicas)
	}
	t.Logf("with the balancer: 0 of %d instances terminated, every pod on its node (%s)", replicas, time.Since(start).Round(time.Second))
}
