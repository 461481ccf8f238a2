package shapes_test

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/testing/defaults"
	"k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// staticFilters are the v1.37.2 plugins whose Filter the static predicates
// mirror. With no pods on any node, their verdict and ours must agree.
var staticFilters = []string{names.NodeAffinity, names.TaintToleration, names.NodeUnschedulable, names.NodeResourcesFit, names.VolumeBinding}

// realFilters builds a framework of the in-tree plugins with their default
// args, over a fake client holding objs (PVs and PVCs).
func realFilters(t *testing.T, ctx context.Context, nodes []*v1.Node, objs ...runtime.Object) framework.Framework {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	enabled := make([]config.Plugin, 0, len(staticFilters))
	for _, n := range staticFilters {
		enabled = append(enabled, config.Plugin{Name: n})
	}
	profile := &config.KubeSchedulerProfile{
		SchedulerName: "differential",
		Plugins: &config.Plugins{
			QueueSort: config.PluginSet{Enabled: []config.Plugin{{Name: names.PrioritySort}}},
			PreFilter: config.PluginSet{Enabled: enabled},
			Filter:    config.PluginSet{Enabled: enabled},
			Bind:      config.PluginSet{Enabled: []config.Plugin{{Name: names.DefaultBinder}}},
		},
		PluginConfig: defaults.PluginConfigsV1,
	}
	fw, err := frameworkruntime.NewFramework(ctx, plugins.NewInTreeRegistry(), profile,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithSnapshotSharedLister(cache.NewSnapshot(nil, nodes)))
	if err != nil {
		t.Fatalf("building the real framework: %v", err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return fw
}

// anyNodePasses runs the real PreFilter and Filter plugins on every node.
func anyNodePasses(ctx context.Context, fw framework.Framework, pod *v1.Pod, nodes []*v1.Node) (bool, string) {
	state := framework.NewCycleState()
	_, s, _ := fw.RunPreFilterPlugins(ctx, state, pod)
	if !s.IsSuccess() {
		return false, "prefilter: " + s.Message()
	}
	var last string
	for _, n := range nodes {
		ni := framework.NewNodeInfo()
		ni.SetNode(n)
		if st := fw.RunFilterPlugins(ctx, state, pod, ni); st.IsSuccess() {
			return true, n.Name
		} else {
			last = st.Message()
		}
	}
	return false, last
}

// gen draws nodes, templates and pods from small vocabularies so that
// matches and mismatches are both common.
type gen struct{ r *rand.Rand }

var (
	labelKeys   = []string{"pool", "zone", "gpu", "arch"}
	labelValues = []string{"a", "b", "c"}
	taintKeys   = []string{"dedicated", "spot", "gpu"}
	effects     = []v1.TaintEffect{v1.TaintEffectNoSchedule, v1.TaintEffectNoExecute, v1.TaintEffectPreferNoSchedule}
)

func (g gen) pick(s []string) string { return s[g.r.Intn(len(s))] }

func (g gen) labels() map[string]string {
	l := map[string]string{}
	for _, k := range labelKeys {
		if g.r.Intn(3) > 0 {
			l[k] = g.pick(labelValues)
		}
	}
	return l
}

func (g gen) taints() []v1.Taint {
	var ts []v1.Taint
	for _, k := range taintKeys {
		if g.r.Intn(4) == 0 {
			ts = append(ts, v1.Taint{Key: k, Value: g.pick(labelValues), Effect: effects[g.r.Intn(len(effects))]})
		}
	}
	return ts
}

func (g gen) allocatable() v1.ResourceList {
	rl := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(int64(1000*(1+g.r.Intn(8))), resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(int64(1+g.r.Intn(8))<<30, resource.BinarySI),
		v1.ResourcePods:   *resource.NewQuantity(int64(g.r.Intn(20)), resource.DecimalSI),
	}
	if g.r.Intn(4) == 0 {
		rl["example.com/gpu"] = *resource.NewQuantity(int64(g.r.Intn(3)), resource.DecimalSI)
	}
	return rl
}

func (g gen) node(name string) *v1.Node {
	l := g.labels()
	l[v1.LabelHostname] = name
	alloc := g.allocatable()
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       v1.NodeSpec{Taints: g.taints(), Unschedulable: g.r.Intn(8) == 0},
		Status:     v1.NodeStatus{Allocatable: alloc, Capacity: alloc},
	}
}

func (g gen) group(name string) nodegroups.NodeGroup {
	max := int32(g.r.Intn(3))
	return nodegroups.NodeGroup{Name: name, MaxSize: max, CurrentSize: int32(g.r.Intn(int(max) + 1)),
		Labels: g.labels(), Taints: g.taints(), Allocatable: g.allocatable()}
}

func (g gen) requirement(hosts []string) v1.NodeSelectorRequirement {
	if len(hosts) > 0 && g.r.Intn(6) == 0 {
		return v1.NodeSelectorRequirement{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{g.pick(hosts)}}
	}
	k := g.pick(labelKeys)
	switch g.r.Intn(5) {
	case 0:
		return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpNotIn, Values: []string{g.pick(labelValues)}}
	case 1:
		return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpExists}
	case 2:
		return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpDoesNotExist}
	}
	return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpIn, Values: []string{g.pick(labelValues), g.pick(labelValues)}}
}

func (g gen) pod(name string, hosts []string) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: apitypes.UID("uid-" + name)}}
	if g.r.Intn(2) == 0 {
		pod.Spec.NodeSelector = map[string]string{g.pick(labelKeys): g.pick(labelValues)}
	}
	if g.r.Intn(3) == 0 {
		var terms []v1.NodeSelectorTerm
		for i := 0; i <= g.r.Intn(2); i++ {
			terms = append(terms, v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{g.requirement(hosts)}})
		}
		pod.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	for _, k := range taintKeys {
		switch g.r.Intn(4) {
		case 0:
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, v1.Toleration{Key: k, Operator: v1.TolerationOpEqual, Value: g.pick(labelValues), Effect: effects[g.r.Intn(len(effects))]})
		case 1:
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, v1.Toleration{Key: k, Operator: v1.TolerationOpExists})
		}
	}
	if g.r.Intn(10) == 0 {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, v1.Toleration{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists})
	}
	req := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(int64(g.r.Intn(9000)), resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(int64(g.r.Intn(9))<<30, resource.BinarySI),
	}
	if g.r.Intn(6) == 0 {
		req["example.com/gpu"] = *resource.NewQuantity(int64(1+g.r.Intn(2)), resource.DecimalSI)
	}
	pod.Spec.Containers = []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: req}}}
	if g.r.Intn(5) == 0 {
		// An init container larger than the app container raises the request.
		pod.Spec.InitContainers = []v1.Container{{Name: "init", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
			v1.ResourceCPU: *resource.NewMilliQuantity(int64(g.r.Intn(9000)), resource.DecimalSI)}}}}
	}
	if g.r.Intn(8) == 0 {
		pod.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: *resource.NewMilliQuantity(int64(g.r.Intn(2000)), resource.DecimalSI)}
	}
	return pod
}

// localVolume binds a claim of pod to a local PV pinned to host.
func localVolume(pod *v1.Pod, host string) (*v1.PersistentVolumeClaim, *v1.PersistentVolume) {
	claim := pod.Name + "-data"
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: pod.Namespace, UID: "pvc-" + pod.UID,
			Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:   v1.PersistentVolumeClaimSpec{VolumeName: "pv-" + pod.Name},
		Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + pod.Name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disk"}},
			ClaimRef:               &v1.ObjectReference{Namespace: pod.Namespace, Name: claim, UID: pvc.UID},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{host}}}}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{
		PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	return pvc, pv
}

// TestDifferentialAgainstRealFilters draws thousands of clusters and pods
// and checks that whenever Ballast calls a pod hopeless, the real v1.37.2
// Filter plugins reject it on every node and every template node (no false
// park), and the converse (no missed park), since no node runs a pod.
func TestDifferentialAgainstRealFilters(t *testing.T) {
	const clusters, podsPerCluster = 200, 50
	schedmetrics.Register()
	_, ctx := ktesting.NewTestContext(t)
	g := gen{r: rand.New(rand.NewSource(20261125))}
	var hopeless, feasible, identity int
	for c := 0; c < clusters; c++ {
		nodes := make([]*v1.Node, g.r.Intn(12))
		var hosts []string
		for i := range nodes {
			nodes[i] = g.node(fmt.Sprintf("c%d-n%d", c, i))
			hosts = append(hosts, nodes[i].Name)
		}
		hosts = append(hosts, "gone-node")
		list := &nodegroups.NodeGroupList{APIVersion: nodegroups.APIVersion, Kind: nodegroups.Kind}
		for i := 0; i < g.r.Intn(4); i++ {
			list.NodeGroups = append(list.NodeGroups, g.group(fmt.Sprintf("c%d-g%d", c, i)))
		}
		autoscaling := len(list.NodeGroups) > 0
		opts := &shapes.Options{IdentityLabels: sets.New(v1.LabelHostname)}
		store := shapes.NewStore(opts, autoscaling)
		for _, n := range nodes {
			store.UpsertNode(n)
		}
		store.SetTemplates(list, shapes.TemplatesOK)
		candidates := append([]*v1.Node(nil), nodes...)
		for i := range list.NodeGroups {
			if list.NodeGroups[i].CanGrow() {
				candidates = append(candidates, list.NodeGroups[i].TemplateNode())
			}
		}

		pods := make([]*v1.Pod, podsPerCluster)
		var objs []runtime.Object
		for i := range pods {
			pods[i] = g.pod(fmt.Sprintf("c%d-p%d", c, i), hosts)
			if g.r.Intn(6) == 0 {
				pvc, pv := localVolume(pods[i], g.pick(hosts))
				objs = append(objs, pvc, pv)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		fw := realFilters(t, cctx, candidates, objs...)
		for _, pod := range pods {
			var vols []shapes.BoundVolume
			for _, o := range objs {
				if pv, ok := o.(*v1.PersistentVolume); ok && pv.Spec.ClaimRef.Name == pod.Name+"-data" {
					vols = append(vols, shapes.BoundVolume{Claim: pv.Spec.ClaimRef.Name, PV: pv})
				}
			}
			req := shapes.NewRequirements(pod, vols, opts)
			if req.Identity() {
				identity++
			}
			verdict := store.Evaluate(req)
			passes, where := anyNodePasses(ctx, fw, pod, candidates)
			if verdict.Hopeless && passes {
				t.Fatalf("FALSE PARK: cluster %d pod %s called hopeless (%s) but real filters pass on %s\npod: %+v", c, pod.Name, verdict.Message, where, pod.Spec)
			}
			if !verdict.Hopeless && !passes {
				t.Fatalf("missed park: cluster %d pod %s: real filters reject every node (%s) but verdict is %+v", c, pod.Name, where, verdict)
			}
			if verdict.Hopeless {
				hopeless++
			} else {
				feasible++
				for name := range verdict.Nodes {
					if !shapes.Fits(req, nodeByName(nodes, name)) {
						t.Fatalf("narrowed to node %s that fails the pod's predicates", name)
					}
				}
			}
		}
		cancel()
	}
	t.Logf("%d hopeless, %d feasible verdicts (%d depending on node identity)", hopeless, feasible, identity)
	if hopeless < clusters*podsPerCluster/10 || feasible < clusters*podsPerCluster/10 {
		t.Fatalf("generator is lopsided: %d hopeless, %d feasible", hopeless, feasible)
	}
}

func nodeByName(nodes []*v1.Node, name string) *v1.Node {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return &v1.Node{}
}

var _ fwk.NodeInfo = framework.NewNodeInfo()
