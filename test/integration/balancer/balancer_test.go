package balancer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	testutils "k8s.io/kubernetes/test/integration/util"
	"k8s.io/utils/clock"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// cluster-autoscaler's node-template tags.
const (
	tagLabel    = "k8s.io/cluster-autoscaler/node-template/label/"
	tagTaint    = "k8s.io/cluster-autoscaler/node-template/taint/"
	tagResource = "k8s.io/cluster-autoscaler/node-template/resources/"
)

// TestBalancer starts the apiserver once; the subtests share it, each in its
// own namespace with its own AWS emulator, one after the other (the balancer
// lists every node and volume of the cluster).
func TestBalancer(t *testing.T) {
	server := testutils.InitTestAPIServer(t, "balancer", nil)
	t.Run("one loop protects the bound local volumes of a multi-zone group", func(t *testing.T) { testOneLoop(t, server) })
	t.Run("a bound volume with no pod is protected", func(t *testing.T) { testNoPod(t, server) })
	t.Run("release removes only the protection Ballast set", func(t *testing.T) { testRelease(t, server) })
	t.Run("throttling and 5xx are survived", func(t *testing.T) { testFaults(t, server) })
	t.Run("malformed node-template tags are reported and skipped", func(t *testing.T) { testMalformedTags(t, server) })
	t.Run("the scheduler plugin reads the published templates", func(t *testing.T) { testSchedulerReadsTemplates(t, server) })
	t.Run("plan changes nothing and lists what run does", func(t *testing.T) { testPlan(t, server) })
}

// testOneLoop is incident 7: 120 Cassandra nodes in one group over three
// zones, here 4+1+1, on local volumes; a zone recovers and AWS rebalances.
func testOneLoop(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "one-loop")
	ids := e.groupWithNodes(awstest.GroupSpec{Name: "cassandra", Zones: zones, MaxSize: 10, InstanceType: "i3.xlarge",
		Instances: map[string]int{zones[0]: 4, zones[1]: 1, zones[2]: 1}}, "cass")
	held := []string{"cass-a-0", "cass-a-1", "cass-a-2", "cass-b-0"}
	free := []string{"cass-a-3", "cass-c-0"}
	for i, n := range held {
		e.bindLocalVolume(fmt.Sprintf("data-cassandra-%d", i), "local-pv-"+n, n)
	}

	e.mustReconcile()

	if diff := cmp.Diff([]string{asg.ProcessAZRebalance}, e.emu.Suspended("cassandra")); diff != "" {
		t.Errorf("suspended processes (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff(idsOf(ids, held...), e.protected("cassandra")); diff != "" {
		t.Errorf("instances protected from scale-in (-want, +got):\n%s", diff)
	}
	for _, n := range held {
		if diff := cmp.Diff(ownAnnotations, e.annotations(n)); diff != "" {
			t.Errorf("node %s annotations (-want, +got):\n%s", n, diff)
		}
	}
	for _, n := range free {
		for k := range ownAnnotations {
			if v, ok := e.annotations(n)[k]; ok {
				t.Errorf("node %s holds no volume but has %s=%s", n, k, v)
			}
		}
	}
	wantHook := awstest.Hook{Name: balancer.HookName, Transition: asg.TransitionTerminating, DefaultResult: asg.ResultContinue, HeartbeatTimeout: 300, GlobalTimeout: 30000}
	if diff := cmp.Diff([]awstest.Hook{wantHook}, e.emu.Hooks("cassandra")); diff != "" {
		t.Errorf("lifecycle hooks (-want, +got):\n%s", diff)
	}
	// Reported where people look: on the node, and on the balancer's ConfigMap for the group.
	e.waitEvents(metav1.NamespaceDefault, "cass-a-0", balancer.ReasonProtected, 1, "local-pv-cass-a-0")
	e.waitEvents(e.ns, "", balancer.ReasonMultiZoneGroup, 1, "cassandra")

	// The zone recovers: AWS rebalances nothing.
	if got := e.emu.AZRebalance(); len(got) != 0 {
		t.Fatalf("AZRebalance terminated %v after the loop", got)
	}
	for _, i := range e.emu.GroupInstances("cassandra") {
		if i.LifecycleState != awstest.InService {
			t.Errorf("instance %s is %s after AZRebalance, want InService", i.ID, i.LifecycleState)
		}
	}

	// Defence in depth: someone resumes AZRebalance, and AWS rebalances
	// before the next loop. The hook holds the instances of bound volumes
	// while the loop heartbeats, and lets the others go at once.
	if _, err := e.rawASG().ResumeProcesses(e.ctx, &autoscaling.ResumeProcessesInput{
		AutoScalingGroupName: awssdk.String("cassandra"), ScalingProcesses: []string{asg.ProcessAZRebalance}}); err != nil {
		t.Fatal(err)
	}
	victims := e.emu.AZRebalance()
	if diff := cmp.Diff([]string{ids["cass-a-3"], ids["cass-a-0"]}, victims); diff != "" {
		t.Fatalf("AZRebalance with the process resumed terminated (-want, +got):\n%s", diff)
	}
	for range 3 { // 12 minutes, over twice the 5 minute heartbeat timeout
		e.mustReconcile()
		e.clock.Step(4 * time.Minute)
	}
	for _, n := range held {
		if i, _ := e.emu.Instance(ids[n]); i.LifecycleState == "Terminated" || i.EC2State != "running" {
			t.Errorf("instance %s of %s, which holds a bound volume, is %s/%s", i.ID, n, i.LifecycleState, i.EC2State)
		}
	}
	if i, _ := e.emu.Instance(ids["cass-a-0"]); i.LifecycleState != awstest.TerminatingWait {
		t.Errorf("instance of cass-a-0 is %s, want it held in %s", i.LifecycleState, awstest.TerminatingWait)
	}
	if i, _ := e.emu.Instance(ids["cass-a-3"]); i.LifecycleState != "Terminated" {
		t.Errorf("instance of cass-a-3 (no volume) is %s, want Terminated at once", i.LifecycleState)
	}
	if diff := cmp.Diff([]string{asg.ProcessAZRebalance}, e.emu.Suspended("cassandra")); diff != "" {
		t.Errorf("the next loop did not suspend AZRebalance again (-want, +got):\n%s", diff)
	}
	e.waitEvents(metav1.NamespaceDefault, "cass-a-0", balancer.ReasonTerminationHeld, 1, ids["cass-a-0"])
}

// testNoPod: the volume, not a pod, is what must survive; StatefulSet pods
// come and go (rolling updates, evictions) while their data stays.
func testNoPod(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "no-pod")
	ids := e.groupWithNodes(awstest.GroupSpec{Name: "kafka", Zones: zones[:1], MaxSize: 5, InstanceType: "i3.xlarge",
		Instances: map[string]int{zones[0]: 3}}, "kafka")
	// kafka-a-0: a volume and the pod using it; kafka-a-1: a volume, no pod;
	// kafka-a-2: a pod, no volume.
	e.bindLocalVolume("data-kafka-0", "local-pv-kafka-a-0", "kafka-a-0")
	e.bindLocalVolume("data-kafka-1", "local-pv-kafka-a-1", "kafka-a-1")
	broker := e.runPod("kafka-0", "kafka-a-0", "data-kafka-0")
	e.runPod("web-0", "kafka-a-2", "")
	pods, err := e.cs.CoreV1().Pods(metav1.NamespaceAll).List(e.ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=kafka-a-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Fatalf("kafka-a-1 must run no pod, runs %d", len(pods.Items))
	}

	e.mustReconcile()
	want := []string{"kafka-a-0", "kafka-a-1"}
	if diff := cmp.Diff(idsOf(ids, want...), e.protected("kafka")); diff != "" {
		t.Errorf("instances protected from scale-in (-want, +got):\n%s", diff)
	}
	for _, n := range want {
		if diff := cmp.Diff(ownAnnotations, e.annotations(n)); diff != "" {
			t.Errorf("node %s annotations (-want, +got):\n%s", n, diff)
		}
	}
	if a := e.annotations("kafka-a-2"); len(a) != 0 {
		t.Errorf("kafka-a-2 runs a pod but holds no volume; annotated %v", a)
	}

	// The broker pod goes away (an eviction, a rolling update): its volume
	// is still bound, so its node stays protected.
	if err := e.cs.CoreV1().Pods(e.ns).Delete(e.ctx, broker.Name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile()
	for _, n := range want {
		if diff := cmp.Diff(ownAnnotations, e.annotations(n)); diff != "" {
			t.Errorf("node %s annotations once no pod runs (-want, +got):\n%s", n, diff)
		}
	}
	if diff := cmp.Diff(idsOf(ids, want...), e.protected("kafka")); diff != "" {
		t.Errorf("instances protected once no pod runs (-want, +got):\n%s", diff)
	}
}

// runPod creates a pod bound to node, using claim when not empty, as if
// scheduled and started (no kubelet runs here).
func (e *env) runPod(name, node, claim string) *v1.Pod {
	e.t.Helper()
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if claim != "" {
		pod.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
	}
	pod, err := e.cs.CoreV1().Pods(e.ns).Create(e.ctx, pod, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// testRelease: when a volume is released the balancer removes what it set,
// and only that: a human's annotation and a human's instance protection stay.
func testRelease(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "release")
	ids := e.groupWithNodes(awstest.GroupSpec{Name: "db", Zones: zones[:1], MaxSize: 5, InstanceType: "i3.xlarge",
		Instances: map[string]int{zones[0]: 3}}, "db")
	// db-a-0: a volume, nothing else. db-a-1: a volume, and someone annotated
	// it before Ballast did. db-a-2: no volume; someone annotated it and
	// protected its instance.
	human := map[string]string{balancer.AnnotationScaleDownDisabled: "true"}
	for _, n := range []string{"db-a-1", "db-a-2"} {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, balancer.AnnotationScaleDownDisabled)
		if _, err := e.cs.CoreV1().Nodes().Patch(e.ctx, n, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-annotate"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.rawASG().SetInstanceProtection(e.ctx, &autoscaling.SetInstanceProtectionInput{AutoScalingGroupName: awssdk.String("db"),
		InstanceIds: []string{ids["db-a-2"]}, ProtectedFromScaleIn: awssdk.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	e.bindLocalVolume("data-db-0", "local-pv-db-a-0", "db-a-0")
	e.bindLocalVolume("data-db-1", "local-pv-db-a-1", "db-a-1")

	e.mustReconcile()
	if diff := cmp.Diff(idsOf(ids, "db-a-0", "db-a-1", "db-a-2"), e.protected("db")); diff != "" {
		t.Fatalf("protected after the first loop (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff(ownAnnotations, e.annotations("db-a-0")); diff != "" {
		t.Fatalf("db-a-0 after the first loop (-want, +got):\n%s", diff)
	}
	wantA1 := map[string]string{balancer.AnnotationScaleDownDisabled: "true", balancer.AnnotationScaleInProtectedBy: balancer.Source}
	if diff := cmp.Diff(wantA1, e.annotations("db-a-1")); diff != "" {
		t.Fatalf("db-a-1 after the first loop (-want, +got):\n%s", diff)
	}
	untouched := e.node("db-a-2").ResourceVersion

	// The claims are deleted: db-a-0's volume is Released (Retain), db-a-1's deleted.
	e.releaseVolume("data-db-0", "local-pv-db-a-0", false)
	e.releaseVolume("data-db-1", "local-pv-db-a-1", true)
	e.mustReconcile()

	if a := e.annotations("db-a-0"); len(a) != 0 {
		t.Errorf("db-a-0 keeps annotations %v after its volume was released", a)
	}
	if diff := cmp.Diff(human, e.annotations("db-a-1")); diff != "" {
		t.Errorf("db-a-1, annotated by someone else (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff(human, e.annotations("db-a-2")); diff != "" {
		t.Errorf("db-a-2, annotated by someone else (-want, +got):\n%s", diff)
	}
	if rv := e.node("db-a-2").ResourceVersion; rv != untouched {
		t.Errorf("db-a-2 holds no volume of ours but was written (resourceVersion %s -> %s)", untouched, rv)
	}
	if diff := cmp.Diff(idsOf(ids, "db-a-2"), e.protected("db")); diff != "" {
		t.Errorf("protected after release (-want, +got):\n%s", diff)
	}
	e.waitEvents(metav1.NamespaceDefault, "db-a-0", balancer.ReasonUnprotected, 1)

	// Nothing left to do: a third loop writes nothing.
	before := map[string]string{}
	for _, n := range []string{"db-a-0", "db-a-1", "db-a-2"} {
		before[n] = e.node(n).ResourceVersion
	}
	e.emu.Reset()
	e.mustReconcile()
	for n, rv := range before {
		if got := e.node(n).ResourceVersion; got != rv {
			t.Errorf("an idle loop wrote node %s", n)
		}
	}
	if calls := e.emu.MutatingCalls(); len(calls) != 0 {
		t.Errorf("an idle loop made mutating AWS calls: %v", actions(calls))
	}
}

func actions(calls []awstest.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Action+"("+c.Params.Get("AutoScalingGroupName")+")"+c.Code)
	}
	return out
}

// testFaults: AWS throttles and fails; the loop returns an error or retries,
// never crashes, never terminates or deletes anything, and converges.
func testFaults(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "faults")
	ids := e.groupWithNodes(awstest.GroupSpec{Name: "cassandra", Zones: zones, MaxSize: 10, InstanceType: "i3.xlarge",
		Instances: map[string]int{zones[0]: 3, zones[1]: 1, zones[2]: 1}}, "flt")
	e.bindLocalVolume("data-0", "local-pv-flt-a-0", "flt-a-0")
	nodeVersions := func() map[string]string {
		out := map[string]string{}
		for n := range ids {
			out[n] = e.node(n).ResourceVersion
		}
		return out
	}
	nothingTerminated := func() {
		t.Helper()
		got := e.emu.GroupInstances("cassandra")
		if len(got) != len(ids) {
			t.Errorf("the group has %d instances, want %d", len(got), len(ids))
		}
		for _, i := range got {
			if i.LifecycleState != awstest.InService {
				t.Errorf("instance %s is %s: faults must never terminate anything", i.ID, i.LifecycleState)
			}
		}
		for _, a := range e.emu.Activities() {
			if strings.HasPrefix(a.Description, "Terminating") {
				t.Errorf("scaling activity: %s", a.Description)
			}
		}
		for n := range ids {
			e.node(n) // fails the test when deleted
		}
		if _, err := e.cs.CoreV1().PersistentVolumes().Get(e.ctx, "local-pv-flt-a-0", metav1.GetOptions{}); err != nil {
			t.Errorf("volume: %v", err)
		}
		if _, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx, "data-0", metav1.GetOptions{}); err != nil {
			t.Errorf("claim: %v", err)
		}
	}

	// 5xx beyond the SDK's retries: the loop fails before writing anything
	// to AWS or to the nodes, but the one annotation cluster-autoscaler
	// needs on the node holding a volume (it scales down from its cached
	// groups meanwhile).
	e.settle()
	before := nodeVersions()
	delete(before, "flt-a-0")
	e.emu.Inject(awstest.ServerErrors(20)...)
	err := e.reconcile()
	if err == nil {
		t.Fatal("Reconcile succeeded while every AWS call failed")
	}
	t.Logf("loop with AWS down: %v", err)
	calls := e.emu.Calls()
	if len(calls) < 2 {
		t.Errorf("the SDK did not retry: %v", actions(calls))
	}
	for _, c := range calls {
		if c.Code == "" {
			t.Errorf("call %s succeeded while AWS was failing", c.Action)
		}
	}
	after := nodeVersions()
	delete(after, "flt-a-0")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("nodes written by a failed loop (-before, +after):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{balancer.AnnotationScaleDownDisabled: "true", balancer.AnnotationProtectedBy: balancer.Source},
		e.annotations("flt-a-0")); diff != "" {
		t.Errorf("the held node after a failed loop (-want, +got):\n%s", diff)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(e.ctx, "ballast-node-groups", metav1.GetOptions{}); err == nil {
		t.Error("a failed loop published templates")
	}
	nothingTerminated()
	e.emu.Reset()

	// Throttling within the retries, and SetInstanceProtection failing beyond
	// them: everything else is done, and ownership is recorded on the node
	// first so that the next loop repairs the rest.
	e.emu.Inject(awstest.Throttling(2)...)
	e.emu.Inject(awstest.Fault{Service: "autoscaling", Action: "SetInstanceProtection", Code: "InternalFailure", Status: 500, Times: 10})
	err = e.reconcile()
	if err == nil || !strings.Contains(err.Error(), "protecting") {
		t.Fatalf("Reconcile with SetInstanceProtection failing: %v, want the protection error", err)
	}
	throttled := 0
	for _, c := range e.emu.Calls() {
		if c.Code == "Throttling" || c.Code == "RequestLimitExceeded" {
			throttled++
		}
	}
	if throttled != 4 {
		t.Errorf("%d throttled calls, want 4 (2 per service)", throttled)
	}
	if diff := cmp.Diff([]string{asg.ProcessAZRebalance}, e.emu.Suspended("cassandra")); diff != "" {
		t.Errorf("suspended despite throttling (-want, +got):\n%s", diff)
	}
	if diff := cmp.Diff(ownAnnotations, e.annotations("flt-a-0")); diff != "" {
		t.Errorf("flt-a-0 annotations (-want, +got):\n%s", diff)
	}
	if got := e.protected("cassandra"); len(got) != 0 {
		t.Errorf("protected %v although every SetInstanceProtection failed", got)
	}
	if len(e.emu.Hooks("cassandra")) != 1 {
		t.Errorf("hooks %v, want the balancer's", e.emu.Hooks("cassandra"))
	}
	e.publishedGroups()
	nothingTerminated()
	e.emu.Reset()

	// The next loop converges.
	e.mustReconcile()
	if diff := cmp.Diff(idsOf(ids, "flt-a-0"), e.protected("cassandra")); diff != "" {
		t.Errorf("protected after the faults cleared (-want, +got):\n%s", diff)
	}

	// az-balancer's own Run loop, restarted while AWS throttles and fails for
	// three loops' worth of calls, with a new volume to protect: it logs,
	// retries at the next interval and converges. A loop whose
	// DescribeAutoScalingGroups fails still holds (internal/balancer/blindhold.go):
	// it asks DescribeAutoScalingInstances about the instances of bound local
	// volumes and, that failing too, heartbeats flt-a-0's in the group its
	// volume records: three calls of 4 attempts per failed loop.
	e.bindLocalVolume("data-1", "local-pv-flt-b-0", "flt-b-0")
	e.emu.Inject(awstest.Throttling(18)...)
	e.emu.Inject(awstest.ServerErrors(18)...)
	reg := prometheus.NewRegistry()
	restarted := balancer.New(e.cs, e.cloud, e.recorder(), clock.RealClock{}, e.opts, reg)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		restarted.Run(ctx, 50*time.Millisecond)
	}()
	err = wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		// Converged: a whole loop succeeded after both were protected (a
		// loop may protect and then fail on a later call, and a failed loop
		// annotates held nodes too).
		return cmp.Equal(idsOf(ids, "flt-a-0", "flt-b-0"), e.protected("cassandra")) &&
			e.annotations("flt-b-0")[balancer.AnnotationProtectedBy] == balancer.Source &&
			testenv.Gathered(t, reg, "ballast_az_balancer_reconciles_total", "result", "success") >= 1, nil
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err != nil {
		t.Fatalf("Run did not converge: protected %v, flt-b-0 annotations %v", e.protected("cassandra"), e.annotations("flt-b-0"))
	}
	if n := testenv.Gathered(t, reg, "ballast_az_balancer_reconciles_total", "result", "error"); n < 3 {
		t.Errorf("%v failed loops counted, want >= 3 (36 failing Auto Scaling calls, 12 attempts per failed loop)", n)
	}
	if n := testenv.Gathered(t, reg, "ballast_az_balancer_reconciles_total", "result", "success"); n < 1 {
		t.Errorf("no successful loop counted")
	}
	if err := restarted.Healthy(time.Minute); err != nil {
		t.Errorf("Healthy after converging: %v", err)
	}
	nothingTerminated()
}

// testMalformedTags: a typo in one tag costs that tag, not the group's
// template, and is reported once.
func testMalformedTags(t *testing.T, server *testutils.TestContext) {
	e := newEnv(t, server, "tags")
	e.emu.CreateGroup(awstest.GroupSpec{Name: "gpu-a", Zones: zones[:1], MaxSize: 4, InstanceType: "p3.2xlarge", Tags: caTags(map[string]string{
		tagLabel + "pool":                 "gpu",
		tagLabel + "bad key!":             "x",
		tagTaint + "nvidia.com/gpu":       "present:NoSchedule",
		tagTaint + "dedicated":            "batch:NoWait",
		tagResource + "hugepages-2Mi":     "-1Gi",
		tagResource + "ephemeral-storage": "100Gi",
	})})
	e.mustReconcile()

	_, list := e.publishedGroups()
	if len(list.NodeGroups) != 1 {
		t.Fatalf("published %d groups, want gpu-a alone: %+v", len(list.NodeGroups), list.NodeGroups)
	}
	g := list.NodeGroups[0]
	if g.Name != "gpu-a" || g.Labels["pool"] != "gpu" {
		t.Errorf("template lost its good tags: %+v", g)
	}
	if _, ok := g.Labels["bad key!"]; ok {
		t.Errorf("malformed label published: %v", g.Labels)
	}
	if diff := cmp.Diff([]v1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: v1.TaintEffectNoSchedule}}, g.Taints); diff != "" {
		t.Errorf("taints (-want, +got):\n%s", diff)
	}
	if _, ok := g.Allocatable["hugepages-2Mi"]; ok {
		t.Errorf("negative resource published: %v", g.Allocatable)
	}
	if q := g.Allocatable[v1.ResourceEphemeralStorage]; q.String() != "100Gi" {
		t.Errorf("ephemeral-storage %s, want 100Gi from its tag", q.String())
	}
	for _, tag := range []string{tagLabel + "bad key!", tagTaint + "dedicated", tagResource + "hugepages-2Mi"} {
		e.waitEvents(e.ns, "", balancer.ReasonMalformedTag, 1, "gpu-a", tag)
	}
	if evs := e.waitEvents(e.ns, "", balancer.ReasonMalformedTag, 3); len(evs) != 3 {
		t.Errorf("%d %s events, want 3", len(evs), balancer.ReasonMalformedTag)
	}
	if n := e.metric("ballast_az_balancer_malformed_tags_total"); n != 3 {
		t.Errorf("ballast_az_balancer_malformed_tags_total = %v, want 3", n)
	}
	// Reported once per process, not once per loop.
	e.mustReconcile()
	if n := e.metric("ballast_az_balancer_malformed_tags_total"); n != 3 {
		t.Errorf("after a second loop ballast_az_balancer_malformed_tags_total = %v, want 3", n)
	}
}
