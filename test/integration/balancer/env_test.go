package balancer

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	testutils "k8s.io/kubernetes/test/integration/util"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/balancer"
	"github.com/ballast-k8s/ballast/test/integration/testenv"
)

// cluster is the name in cluster-autoscaler's auto-discovery tags.
const cluster = "it"

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// ownAnnotations are what the balancer sets on a node it protects alone.
var ownAnnotations = map[string]string{
	balancer.AnnotationScaleDownDisabled:  "true",
	balancer.AnnotationProtectedBy:        balancer.Source,
	balancer.AnnotationScaleInProtectedBy: balancer.Source,
}

// env is one subtest's world: a namespace of the shared apiserver, an AWS
// emulator of its own, and a balancer over both that sends its events to the
// apiserver.
type env struct {
	t       *testing.T
	testCtx *testutils.TestContext
	ctx     context.Context
	cs      clientset.Interface
	ns      string
	clock   *clocktesting.FakeClock
	emu     *awstest.Server
	cloud   *asg.Client
	opts    balancer.Options
	reg     *prometheus.Registry
	b       *balancer.Balancer

	nodes, pvs []string // cluster-scoped objects to delete at the end
}

func newEnv(t *testing.T, server *testutils.TestContext, prefix string) *env {
	t.Helper()
	testCtx := testutils.WithNewNamespace(t, server, prefix)
	e := &env{t: t, testCtx: testCtx, ctx: testCtx.Ctx, cs: testCtx.ClientSet, ns: testCtx.NS.Name}
	// Near real time: the scheduler plugin judges generatedAt by its own clock.
	e.clock = clocktesting.NewFakeClock(time.Now())
	e.emu = awstest.NewServer(e.clock)
	t.Cleanup(e.emu.Close)
	cloud, err := asg.New(e.ctx, e.emu.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	e.cloud = cloud
	e.opts = balancer.Options{
		Selector:           asg.AutoDiscovery(cluster),
		ConfigMapNamespace: e.ns, ConfigMapName: nodegroups.DefaultName,
		HeartbeatTimeout: 5 * time.Minute,
	}
	e.reg = prometheus.NewRegistry()
	e.b = balancer.New(e.cs, cloud, e.recorder(), e.clock, e.opts, e.reg)
	t.Cleanup(e.cleanup)
	return e
}

// recorder sends events to the apiserver, as az-balancer run does.
func (e *env) recorder() record.EventRecorder {
	broadcaster := record.NewBroadcaster(record.WithContext(e.ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.cs.CoreV1().Events("")})
	e.t.Cleanup(broadcaster.Shutdown)
	return broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "az-balancer"})
}

// cleanup deletes the cluster-scoped objects the subtest made; the balancer
// lists every node and volume, so none may leak into the next subtest.
func (e *env) cleanup() {
	ctx := context.Background()
	for _, n := range e.nodes {
		if err := e.cs.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			e.t.Errorf("deleting node %s: %v", n, err)
		}
	}
	for _, pv := range e.pvs {
		if err := e.cs.CoreV1().PersistentVolumes().Delete(ctx, pv, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			e.t.Errorf("deleting persistent volume %s: %v", pv, err)
		}
	}
}

func caTags(extra map[string]string) map[string]string {
	tags := map[string]string{"k8s.io/cluster-autoscaler/enabled": "true", "k8s.io/cluster-autoscaler/" + cluster: "owned"}
	maps.Copy(tags, extra)
	return tags
}

// groupWithNodes seeds a group and registers one node per instance, named
// <prefix>-<zone letter>-<n> with providerID aws:///<zone>/<instance>. It
// returns the instance id of every node.
func (e *env) groupWithNodes(spec awstest.GroupSpec, prefix string) map[string]string {
	e.t.Helper()
	spec.Tags = caTags(spec.Tags)
	ids := e.emu.CreateGroup(spec)
	out := map[string]string{}
	for _, z := range spec.Zones {
		for i, id := range ids[z] {
			name := fmt.Sprintf("%s-%s-%d", prefix, z[len(z)-1:], i)
			e.createNode(name, z, id, nil)
			out[name] = id
		}
	}
	return out
}

func (e *env) createNode(name, zone, instance string, annotations map[string]string) *v1.Node {
	e.t.Helper()
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceMemory: resource.MustParse("16Gi"), v1.ResourcePods: resource.MustParse("110")}
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations,
			Labels: map[string]string{v1.LabelHostname: name, v1.LabelTopologyZone: zone}},
		Spec: v1.NodeSpec{ProviderID: fmt.Sprintf("aws:///%s/%s", zone, instance)},
		Status: v1.NodeStatus{Capacity: alloc, Allocatable: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
	if instance == "" {
		n.Spec.ProviderID = ""
	}
	e.nodes = append(e.nodes, name)
	n, err := e.cs.CoreV1().Nodes().Create(e.ctx, n, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// bindLocalVolume creates a static local PV pinned to host and a claim bound
// to it, as the local static provisioner and the PV controller leave them
// (no controller runs here to do it).
func (e *env) bindLocalVolume(claim, pvName, host string) {
	e.t.Helper()
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: claim, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName: ptrTo("local-storage"),
			VolumeName:       pvName,
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")}},
		},
	}
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pvc.Status = v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound, AccessModes: pvc.Spec.AccessModes, Capacity: pvc.Spec.Resources.Requests}
	if _, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).UpdateStatus(e.ctx, pvc, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: v1.PersistentVolumeSpec{
			Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: v1.PersistentVolumeReclaimRetain,
			StorageClassName:              "local-storage",
			PersistentVolumeSource:        v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			ClaimRef:                      &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: e.ns, Name: claim, UID: pvc.UID},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}}}}}},
		},
	}
	e.pvs = append(e.pvs, pvName)
	pv, err = e.cs.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pv.Status = v1.PersistentVolumeStatus{Phase: v1.VolumeBound}
	if _, err := e.cs.CoreV1().PersistentVolumes().UpdateStatus(e.ctx, pv, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// releaseVolume deletes the claim and leaves the volume Released, as the PV
// controller does with a Retain policy; or deletes the volume too.
func (e *env) releaseVolume(claim, pvName string, deleteVolume bool) {
	e.t.Helper()
	if err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Delete(e.ctx, claim, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if deleteVolume {
		if err := e.cs.CoreV1().PersistentVolumes().Delete(e.ctx, pvName, metav1.DeleteOptions{}); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	pv, err := e.cs.CoreV1().PersistentVolumes().Get(e.ctx, pvName, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pv.Status = v1.PersistentVolumeStatus{Phase: v1.VolumeReleased}
	if _, err := e.cs.CoreV1().PersistentVolumes().UpdateStatus(e.ctx, pv, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// settle waits until the apiserver's watch cache, which the balancer lists
// from (resourceVersion 0), holds the nodes and volumes a quorum read returns,
// so that a loop sees the test's last writes instead of racing them.
func (e *env) settle() {
	e.t.Helper()
	versions := func(rv string) (map[string]string, error) {
		out := map[string]string{}
		nodes, err := e.cs.CoreV1().Nodes().List(e.ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			return nil, err
		}
		for _, n := range nodes.Items {
			out["node/"+n.Name] = n.ResourceVersion
		}
		pvs, err := e.cs.CoreV1().PersistentVolumes().List(e.ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			return nil, err
		}
		for _, pv := range pvs.Items {
			out["pv/"+pv.Name] = pv.ResourceVersion
		}
		return out, nil
	}
	err := wait.PollUntilContextTimeout(e.ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		want, err := versions("")
		if err != nil {
			return false, nil
		}
		got, err := versions("0")
		if err != nil {
			return false, nil
		}
		return maps.Equal(want, got), nil
	})
	if err != nil {
		e.t.Fatalf("watch cache did not catch up: %v", err)
	}
}

// reconcile runs one loop once the cache holds the test's writes.
func (e *env) reconcile() error {
	e.t.Helper()
	e.settle()
	return e.b.Reconcile(e.ctx)
}

func (e *env) mustReconcile() {
	e.t.Helper()
	if err := e.reconcile(); err != nil {
		e.t.Fatalf("Reconcile: %v", err)
	}
}

func (e *env) node(name string) *v1.Node {
	e.t.Helper()
	n, err := e.cs.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) annotations(name string) map[string]string {
	e.t.Helper()
	if a := e.node(name).Annotations; a != nil {
		return a
	}
	return map[string]string{}
}

// protected returns the sorted ids of the group's instances protected from scale-in.
func (e *env) protected(group string) []string {
	out := []string{}
	for _, i := range e.emu.GroupInstances(group) {
		if i.ProtectedFromScaleIn {
			out = append(out, i.ID)
		}
	}
	slices.Sort(out)
	return out
}

// idsOf returns the sorted instance ids of the named nodes.
func idsOf(ids map[string]string, nodes ...string) []string {
	out := []string{}
	for _, n := range nodes {
		out = append(out, ids[n])
	}
	slices.Sort(out)
	return out
}

// rawASG is an Auto Scaling client of the emulator, for what humans and AWS
// do behind the balancer's back.
func (e *env) rawASG() *autoscaling.Client {
	return autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: awssdk.String(e.emu.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDHUMAN", "human", "")})
}

// publishedGroups reads and decodes the balancer's ConfigMap.
func (e *env) publishedGroups() (*v1.ConfigMap, *nodegroups.NodeGroupList) {
	e.t.Helper()
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(e.ctx, nodegroups.DefaultName, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("the balancer's ConfigMap: %v", err)
	}
	list, err := nodegroups.Decode(cm.Data)
	if err != nil {
		e.t.Fatalf("decoding the balancer's ConfigMap: %v", err)
	}
	return cm, list
}

// waitEvents waits until the balancer's events with reason in namespace,
// about object (any when empty) and whose message contains every one of
// substrs, number at least n; it returns them.
func (e *env) waitEvents(namespace, object, reason string, n int, substrs ...string) []v1.Event {
	e.t.Helper()
	var got []v1.Event
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := e.cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		got = got[:0]
		for _, ev := range evs.Items {
			if ev.Reason != reason || ev.Source.Component != "az-balancer" || (object != "" && ev.InvolvedObject.Name != object) {
				continue
			}
			match := true
			for _, s := range substrs {
				match = match && strings.Contains(ev.Message, s)
			}
			if match {
				got = append(got, ev)
			}
		}
		return len(got) >= n, nil
	})
	if err != nil {
		var msgs []string
		for _, ev := range got {
			msgs = append(msgs, ev.Message)
		}
		e.t.Fatalf("want >= %d %s events about %q in %s mentioning %q, got %d: %v (%q)", n, reason, object, namespace, substrs, len(got), err, msgs)
	}
	return got
}

// metric sums the samples of a metric of the balancer's registry whose
// labels include the given name=value pairs.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	return testenv.Gathered(e.t, e.reg, name, labels...)
}

func ptrTo[T any](v T) *T { return &v }
