package balancer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// The facts these tests hold az-balancer to are cluster-autoscaler 1.36.1's
// (processors/nodeinfosprovider/mixed_nodeinfos_processor.go,
// simulator/node_info_utils.go): a group's template is a good node of the
// group (Ready for over a minute, schedulable, not being deleted), sanitized
// (hostname replaced, CA's own, node-condition and startup/status taints
// removed, all other labels and the allocatable kept), cached per group and
// used after the group scaled to zero.

// batchNode is a node of group batch as its kubelet registered it
// (--node-labels=workload=batch in the launch template's user data), Ready
// for an hour.
func batchNode(f *fixture, name, id string) *v1.Node {
	n := node(name, "us-east-1a", id)
	n.Labels["workload"] = "batch"
	alloc := v1.ResourceList{v1.ResourceCPU: resource.MustParse("3920m"), v1.ResourceMemory: resource.MustParse("15Gi"), v1.ResourcePods: resource.MustParse("58")}
	n.Status = v1.NodeStatus{Allocatable: alloc, Capacity: alloc, Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue,
		LastTransitionTime: metav1.NewTime(f.clock.Now().Add(-time.Hour))}}}
	return n
}

// batchGroup creates group batch (tags extra) with one instance and runs
// mutate on its node before registering it, then reconciles.
func batchGroup(t *testing.T, f *fixture, tags map[string]string, mutate func(n *v1.Node)) (id string, n *v1.Node) {
	t.Helper()
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge",
		Tags: caTags(tags), Instances: map[string]int{"us-east-1a": 1}})
	id = ids["us-east-1a"][0]
	n = batchNode(f, "batch-0", id)
	if mutate != nil {
		mutate(n)
	}
	if _, err := f.kube.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reconcile(t, f)
	return id, n
}

func reconcile(t *testing.T, f *fixture) {
	t.Helper()
	if err := f.b.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// publishedData is the published ConfigMap after a loop, and the bytes of
// its data as the API server counts them against its 1 MiB limit.
func publishedData(t *testing.T, f *fixture) (*v1.ConfigMap, int) {
	t.Helper()
	reconcile(t, f)
	cm, err := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(context.Background(), nodegroups.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	return cm, size
}

// scaleToZero does what CA does to an unneeded last node (scaleIn), then
// runs three loops a minute apart.
func scaleToZero(t *testing.T, f *fixture, id, nodeName string) {
	t.Helper()
	scaleIn(t, f, id, nodeName)
	loopsAMinuteApart(t, f, 3)
	if ng := templateOf(t, f, "batch"); ng.CurrentSize != 0 {
		t.Fatalf("setup: batch has size %d, want 0", ng.CurrentSize)
	}
}

// scaleIn does what CA does to an unneeded node: terminates the instance
// with the desired capacity decremented; the node goes.
func scaleIn(t *testing.T, f *fixture, id, nodeName string) {
	t.Helper()
	ctx := context.Background()
	if _, err := rawASG(f.emu).TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: awssdk.String(id), ShouldDecrementDesiredCapacity: awssdk.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if err := f.kube.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// loopsAMinuteApart runs n loops, the clock a minute on before each.
func loopsAMinuteApart(t *testing.T, f *fixture, n int) {
	t.Helper()
	for range n {
		f.clock.Step(time.Minute)
		reconcile(t, f)
	}
}

// nvmeAfterAnUnreadyNode is the story of reviews 12 and 14a: group batch
// ran batch-0 (disk=nvme), which CA cached; batch-0 goes (CA scaled it
// down), and batch-1 (disk=ssd) registers, Ready for an hour (batchNode)
// but made unready for CA by unready; three loops run a minute apart. It
// returns the verdict of the published templates on a pod selecting
// disk=nvme, after checking that pod was not parked while batch-0 ran.
func nvmeAfterAnUnreadyNode(t *testing.T, f *fixture, unready func(n *v1.Node)) shapes.Verdict {
	t.Helper()
	ctx := context.Background()
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge",
		Tags: caTags(nil), Instances: map[string]int{"us-east-1a": 2}})["us-east-1a"]
	first := batchNode(f, "batch-0", ids[0])
	first.Labels["disk"] = "nvme"
	if _, err := f.kube.CoreV1().Nodes().Create(ctx, first, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reconcile(t, f)
	nvme := batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["disk"] = "nvme" })
	if v := verdict(t, f.published(t), nvme); v.Hopeless {
		t.Fatalf("setup: the pod selecting disk=nvme is parked while batch-0 runs: %s", v.Message)
	}
	scaleIn(t, f, ids[0], first.Name)
	second := batchNode(f, "batch-1", ids[1])
	second.Labels["disk"] = "ssd"
	unready(second)
	if _, err := f.kube.CoreV1().Nodes().Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	loopsAMinuteApart(t, f, 3)
	return verdict(t, f.published(t), nvme)
}

// restart replaces the balancer by a new one on the same cluster and AWS,
// as a restarted az-balancer (memory lost), and reconciles once.
func restart(t *testing.T, f *fixture) {
	t.Helper()
	cloud, err := asg.New(context.Background(), f.emu.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	f.b = New(f.kube, cloud, f.events, f.clock, f.b.opts, nil)
	f.clock.Step(f.b.opts.TemplateRefresh) // the next write is due
	reconcile(t, f)
}

func batchPod(mutate func(p *v1.Pod)) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "nightly"},
		Spec: v1.PodSpec{NodeSelector: map[string]string{"workload": "batch"}, Containers: []v1.Container{{Name: "c",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}}}}
	if mutate != nil {
		mutate(p)
	}
	return p
}

// TestTemplateFromLastNodeSurvivesRestart: az-balancer's memory of a
// group's last node is in the published ConfigMap, so a restart while the
// group is at zero does not publish the tags-only template again (which
// would park the pod CA still scales batch from zero for).
func TestTemplateFromLastNodeSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	id, n := batchGroup(t, f, nil, nil)
	scaleToZero(t, f, id, n.Name)
	restart(t, f)
	if v := verdict(t, f.published(t), batchPod(nil)); v.Hopeless {
		t.Fatalf("FALSE PARK after an az-balancer restart: %s; published labels %v", v.Message, templateOf(t, f, "batch").Labels)
	}
	// And again after a second restart and a refresh: the memory is
	// written back with every list.
	restart(t, f)
	restart(t, f)
	if v := verdict(t, f.published(t), batchPod(nil)); v.Hopeless {
		t.Fatalf("FALSE PARK after two restarts: %s", v.Message)
	}
}

// TestTemplateFromLastNodeKeepsLargerAllocatable: CA's template of a node
// offers the node's allocatable; a resource the instance type's template
// lacks (hugepages reserved by kubelet, set in the user data) or offers
// less of is taken from the node. A node offering less leaves the type's
// larger value.
func TestTemplateFromLastNodeKeepsLargerAllocatable(t *testing.T) {
	f := newFixture(t)
	id, n := batchGroup(t, f, nil, func(n *v1.Node) {
		n.Status.Allocatable[v1.ResourceName("hugepages-2Mi")] = resource.MustParse("1Gi")
		n.Status.Allocatable[v1.ResourceMemory] = resource.MustParse("1Gi") // less than m5.xlarge's template
		n.Status.Allocatable[v1.ResourcePods] = resource.MustParse("234")   // more than kubelet's default 110 (prefix delegation)
		n.Status.Allocatable[v1.ResourceCPU] = resource.MustParse("8")      // more than m5.xlarge's template
	})
	before := templateOf(t, f, "batch").Allocatable[v1.ResourceMemory]
	scaleToZero(t, f, id, n.Name)
	ng := templateOf(t, f, "batch")
	if q := ng.Allocatable[v1.ResourceName("hugepages-2Mi")]; q.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("template offers hugepages-2Mi %s, want the node's 1Gi", q.String())
	}
	if q := ng.Allocatable[v1.ResourceMemory]; q.Cmp(before) != 0 || q.Cmp(resource.MustParse("1Gi")) <= 0 {
		t.Errorf("template offers memory %s, want the instance type's %s (larger than the node's 1Gi)", q.String(), before.String())
	}
	if q := ng.Allocatable[v1.ResourcePods]; q.Cmp(resource.MustParse("234")) != 0 {
		t.Errorf("template offers %s pods, want the node's 234 (more than the instance type's)", q.String())
	}
	if q := ng.Allocatable[v1.ResourceCPU]; q.Cmp(resource.MustParse("8")) != 0 {
		t.Errorf("template offers cpu %s, want the node's 8 (more than the instance type's)", q.String())
	}
	pod := batchPod(func(p *v1.Pod) {
		p.Spec.Containers[0].Resources.Requests[v1.ResourceName("hugepages-2Mi")] = resource.MustParse("512Mi")
		p.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse("512Mi")
		p.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceName("hugepages-2Mi"): resource.MustParse("512Mi")}
	})
	if v := verdict(t, f.published(t), pod); v.Hopeless {
		t.Errorf("FALSE PARK of a pod requesting the node's hugepages: %s", v.Message)
	}
}

// TestTemplateFromLastNodeLabelsAndTaints: what of the node goes into the
// template and what does not.
func TestTemplateFromLastNodeLabelsAndTaints(t *testing.T) {
	f := newFixture(t)
	tags := map[string]string{
		tagLabelPrefix + "workload":  "from-tag",         // conflicts with the node's
		tagTaintPrefix + "dedicated": "batch:NoSchedule", // the node has it: kept
		tagTaintPrefix + "gpu":       "true:NoSchedule",  // the node lacks it: CA's node template lacks it
		tagLabelPrefix + "team":      "data",             // only in the tags
	}
	id, n := batchGroup(t, f, tags, func(n *v1.Node) {
		n.Labels["alpha.eksctl.io/instance-id"] = id0(n)
		n.Labels["node-name"] = n.Name
		n.Labels["pool"] = "spot"
		n.Spec.Taints = []v1.Taint{
			{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule},
			{Key: "only-on-node", Value: "x", Effect: v1.TaintEffectNoSchedule},
			{Key: "DeletionCandidateOfClusterAutoscaler", Value: "1", Effect: v1.TaintEffectPreferNoSchedule},
		}
	})
	scaleToZero(t, f, id, n.Name)
	ng := templateOf(t, f, "batch")
	want := map[string]string{"workload": "from-tag", "team": "data", "pool": "spot", v1.LabelTopologyZone: "us-east-1a"}
	for k, v := range want {
		if ng.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, ng.Labels[k], v)
		}
	}
	// Only the hostname label is left out, as in CA's sanitized template
	// node; labels valued like the node's name or instance ID stay (they
	// only make the template admit more: review 10d #3).
	for _, k := range []string{"alpha.eksctl.io/instance-id", "node-name"} {
		if _, ok := ng.Labels[k]; !ok {
			t.Errorf("template lost the last node's label %s, which CA's template keeps", k)
		}
	}
	for _, k := range []string{v1.LabelHostname} {
		if v, ok := ng.Labels[k]; ok {
			t.Errorf("template has the per-node label %s=%s of the last node", k, v)
		}
	}
	// The node's maxPods 58 is less than what the tags template offers
	// (kubelet's default 110, as CA's AWS template): not taken.
	if q := ng.TemplateNode().Status.Allocatable[v1.ResourcePods]; q.Value() < 110 {
		t.Errorf("template offers %s pods, narrower than the tags template's 110", q.String())
	}
	if len(ng.Taints) != 1 || ng.Taints[0].Key != "dedicated" {
		t.Errorf("taints %v, want only dedicated=batch:NoSchedule (tags' taints the node also had; never the node's own)", ng.Taints)
	}
}

func id0(n *v1.Node) string {
	_, id, _ := asg.ParseProviderID(n.Spec.ProviderID)
	return id
}

// TestTemplateFromLastNodeOnlyGoodNodes: a node CA would not build a
// template from (NotReady, Ready for less than a minute, cordoned, being
// deleted by CA) is not remembered.
func TestTemplateFromLastNodeOnlyGoodNodes(t *testing.T) {
	for name, mutate := range map[string]func(f *fixture) func(n *v1.Node){
		"not ready": func(*fixture) func(n *v1.Node) {
			return func(n *v1.Node) { n.Status.Conditions[0].Status = v1.ConditionFalse }
		},
		"ready for 30s": func(f *fixture) func(n *v1.Node) {
			return func(n *v1.Node) {
				n.Status.Conditions[0].LastTransitionTime = metav1.NewTime(f.clock.Now().Add(-30 * time.Second))
			}
		},
		"unschedulable": func(*fixture) func(n *v1.Node) {
			return func(n *v1.Node) { n.Spec.Unschedulable = true }
		},
		"being deleted by CA": func(*fixture) func(n *v1.Node) {
			return func(n *v1.Node) {
				n.Spec.Taints = []v1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Value: "1", Effect: v1.TaintEffectNoSchedule}}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			id, n := batchGroup(t, f, nil, mutate(f))
			scaleToZero(t, f, id, n.Name)
			if v, ok := templateOf(t, f, "batch").Labels["workload"]; ok {
				t.Errorf("template has workload=%s from a node CA would not take as a template", v)
			}
		})
	}
}

// TestTemplateFromLastNodeBadMemory: a malformed memory in the ConfigMap
// (hand-edited) is reported and ignored, never a crash; the list is still
// published, and the next write replaces it.
func TestTemplateFromLastNodeBadMemory(t *testing.T) {
	for name, raw := range map[string]string{
		"not json":                 "{",
		"bad label":                `{"batch":{"labels":{"bad key!":"x"},"seenAt":"2026-03-01T00:00:00Z"}}`,
		"negative":                 `{"batch":{"allocatable":{"cpu":"-1"},"seenAt":"2026-03-01T00:00:00Z"}}`,
		"bad quantity":             `{"batch":{"allocatable":{"cpu":"lots"},"seenAt":"2026-03-01T00:00:00Z"}}`,
		"wrong type":               `{"batch":[1,2]}`,
		"bad node taint":           `{"batch":{"nodes":[{"labels":{"a":"b"},"taints":[{"key":"k","effect":"Sometimes"}],"allocatable":{"cpu":"1"}}],"seenAt":"2026-03-01T00:00:00Z"}}`,
		"node without allocatable": `{"batch":{"nodes":[{"labels":{"a":"b"}}],"seenAt":"2026-03-01T00:00:00Z"}}`,
		"bad node label":           `{"batch":{"nodes":[{"labels":{"bad key!":"x"},"allocatable":{"cpu":"1"}}],"seenAt":"2026-03-01T00:00:00Z"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nodegroups.DefaultNamespace, Name: nodegroups.DefaultName},
				Data: map[string]string{lastNodesKey: raw}}
			f := newFixture(t, cm)
			f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge", Tags: caTags(nil)})
			reconcile(t, f)
			if !hasEvent(f, ReasonTemplateIncomplete, lastNodesKey) {
				t.Errorf("no %s event naming %s", ReasonTemplateIncomplete, lastNodesKey)
			}
			ng := templateOf(t, f, "batch")
			if _, ok := ng.Labels["bad key!"]; ok {
				t.Errorf("template took the malformed label")
			}
			if len(ng.Variants) != 0 {
				t.Errorf("template has variants %+v from a malformed memory", ng.Variants)
			}
		})
	}
}

// TestTemplateFromLastNodeForgottenWithGroup: as CA drops the cache entry of
// a group it no longer has (here: its auto-discovery tag removed), the
// group's nodes are forgotten; tagged again, it starts from its tags.
func TestTemplateFromLastNodeForgottenWithGroup(t *testing.T) {
	f := newFixture(t)
	id, n := batchGroup(t, f, nil, nil)
	scaleToZero(t, f, id, n.Name)
	tag := []astypes.Tag{{ResourceId: awssdk.String("batch"), ResourceType: awssdk.String("auto-scaling-group"),
		Key: awssdk.String("k8s.io/cluster-autoscaler/enabled"), Value: awssdk.String("true"), PropagateAtLaunch: awssdk.Bool(false)}}
	ctx := context.Background()
	if _, err := rawASG(f.emu).DeleteTags(ctx, &autoscaling.DeleteTagsInput{Tags: tag}); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Minute)
	reconcile(t, f)
	if _, ok := f.b.templates.lastNodes["batch"]; ok {
		t.Fatal("the nodes of a group no longer discovered are still remembered")
	}
	if _, err := rawASG(f.emu).CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: tag}); err != nil {
		t.Fatal(err)
	}
	restart(t, f)
	if v, ok := templateOf(t, f, "batch").Labels["workload"]; ok {
		t.Errorf("batch has workload=%s from the node it had before it was forgotten", v)
	}
}

// TestTemplateFromLastNodeOldMemory: a memory written before variants were
// published (no "nodes") is read: the template is widened with it as
// before, and nothing is reported.
func TestTemplateFromLastNodeOldMemory(t *testing.T) {
	raw := `{"batch":{"labels":{"workload":"batch","kubernetes.io/os":"linux"},"allocatable":{"cpu":"3920m","memory":"15Gi","pods":"58"},"seenAt":"2026-03-01T00:00:00Z"}}`
	cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nodegroups.DefaultNamespace, Name: nodegroups.DefaultName},
		Data: map[string]string{lastNodesKey: raw}}
	f := newFixture(t, cm)
	f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge", Tags: caTags(nil)})
	reconcile(t, f)
	if hasEvent(f, ReasonTemplateIncomplete, lastNodesKey) {
		t.Errorf("a memory in the old format was reported as malformed")
	}
	if v := verdict(t, f.published(t), batchPod(nil)); v.Hopeless {
		t.Errorf("FALSE PARK with a memory in the old format: %s", v.Message)
	}
}

// TestTemplateVariantsBounded: a group whose good nodes are more distinct
// templates than a group may carry variants publishes at most
// nodegroups.MaxVariants of them and reports the rest; its template stays
// widened with the union of the nodes' labels, and the list is valid.
func TestTemplateVariantsBounded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = nodegroups.MaxVariants + 4
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 2 * n, InstanceType: "m5.xlarge",
		Tags: caTags(map[string]string{tagLabelPrefix + "rack": "tagged"}), Instances: map[string]int{"us-east-1a": n}})["us-east-1a"]
	for i, id := range ids {
		node := batchNode(f, fmt.Sprintf("batch-%02d", i), id)
		node.Labels["rack"] = fmt.Sprintf("r%02d", i)
		if _, err := f.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reconcile(t, f)
	ng := templateOf(t, f, "batch")
	if len(ng.Variants) == 0 || len(ng.Variants) > nodegroups.MaxVariants {
		t.Fatalf("%d variants, want between 1 and %d", len(ng.Variants), nodegroups.MaxVariants)
	}
	if !hasEvent(f, ReasonTemplateIncomplete, "template variants") {
		t.Errorf("no %s event says that some nodes are not published as variants", ReasonTemplateIncomplete)
	}
	for _, rack := range []string{"tagged", "r00", "r01"} {
		if v := verdict(t, f.published(t), batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["rack"] = rack })); v.Hopeless {
			t.Errorf("FALSE PARK of a pod selecting rack=%s: %s", rack, v.Message)
		}
	}
}

// TestTemplateVariantsNotRepeated: nodes alike but for their hostname add
// one variant, not one each; the tags template is a variant of its own (the
// widened template has workload=batch more, which a DoesNotExist
// requirement tells apart); a group without remembered nodes has none.
func TestTemplateVariantsNotRepeated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge",
		Tags: caTags(nil), Instances: map[string]int{"us-east-1a": 3}})["us-east-1a"]
	f.emu.CreateGroup(awstest.GroupSpec{Name: "idle", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge", Tags: caTags(nil)})
	for i, id := range ids {
		if _, err := f.kube.CoreV1().Nodes().Create(ctx, batchNode(f, fmt.Sprintf("batch-%d", i), id), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reconcile(t, f)
	if vs := templateOf(t, f, "idle").Variants; len(vs) != 0 {
		t.Errorf("group idle, never with a node, has variants %+v", vs)
	}
	ng := templateOf(t, f, "batch")
	if len(ng.Variants) != 2 {
		t.Fatalf("variants %+v, want two: the tags template and the nodes' template", ng.Variants)
	}
	if _, ok := ng.Variants[0].Labels["workload"]; ok {
		t.Errorf("first variant %v is not the tags template", ng.Variants[0].Labels)
	}
	if ng.Variants[1].Labels["workload"] != "batch" {
		t.Errorf("second variant %v is not the nodes' template", ng.Variants[1].Labels)
	}
	if _, ok := ng.Variants[1].Labels[v1.LabelHostname]; ok {
		t.Errorf("variant keeps a node's hostname: %v", ng.Variants[1].Labels)
	}
	pod := batchPod(func(p *v1.Pod) {
		p.Spec.NodeSelector = nil
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: "workload", Operator: v1.NodeSelectorOpDoesNotExist},
				{Key: v1.LabelInstanceTypeStable, Operator: v1.NodeSelectorOpIn, Values: []string{"m5.xlarge"}},
			}}}}}}
	})
	// Only batch's tags template and idle's admit it; without idle, only
	// the tags variant.
	list := f.published(t)
	list.NodeGroups = slices.DeleteFunc(list.NodeGroups, func(g nodegroups.NodeGroup) bool { return g.Name == "idle" })
	if v := verdict(t, list, pod); v.Hopeless {
		t.Errorf("FALSE PARK of a pod only batch's tags template admits (CA's template after a restart at zero): %s", v.Message)
	}
}

// TestTemplateVariantsFitTheConfigMap: "The data stored in a ConfigMap
// cannot exceed 1 MiB" (Kubernetes documentation, Concepts, ConfigMaps);
// the API server refuses a larger one, and the list would never be updated
// again. Groups whose nodes all differ (a label per node, as EKS's
// topology.k8s.aws/network-node-layer-N) and carry many labels give more
// variants than fit: az-balancer publishes fewer per group and says so,
// and the groups' widened templates still admit the nodes' labels.
func TestTemplateVariantsFitTheConfigMap(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const groups, nodes, labels = 4, nodegroups.MaxVariants, 100
	pad := strings.Repeat("x", 50)
	for g := range groups {
		name := fmt.Sprintf("batch%d", g)
		ids := f.emu.CreateGroup(awstest.GroupSpec{Name: name, Zones: []string{"us-east-1a"}, MaxSize: 2 * nodes, InstanceType: "m5.xlarge",
			Tags: caTags(nil), Instances: map[string]int{"us-east-1a": nodes}})["us-east-1a"]
		for i, id := range ids {
			n := batchNode(f, fmt.Sprintf("%s-%02d", name, i), id)
			for l := range labels - len(n.Labels) {
				n.Labels[fmt.Sprintf("example.com/label-%03d", l)] = fmt.Sprintf("%s-%02d-%s", name, i, pad)
			}
			if _, err := f.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, size := publishedData(t, f)
	if size > 1<<20 {
		t.Fatalf("ConfigMap data is %d bytes, more than the API server takes (1 MiB)", size)
	}
	if !hasEvent(f, ReasonTemplateIncomplete, "bytes") {
		t.Errorf("no %s event says that variants were left out for the ConfigMap's size", ReasonTemplateIncomplete)
	}
	for g := range groups {
		name := fmt.Sprintf("batch%d", g)
		pod := batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["example.com/label-000"] = fmt.Sprintf("%s-00-%s", name, pad) })
		if v := verdict(t, f.published(t), pod); v.Hopeless {
			t.Errorf("FALSE PARK of a pod selecting the first node of %s: %s", name, v.Message)
		}
	}
}

// TestGoodTemplateNode: a node is a template for cluster-autoscaler only when
// ready as CA reads readiness (GetNodeReadiness: NodeReady, DiskPressure,
// NetworkUnavailable and their taints), stable since the latest of those
// transitions, schedulable and not being deleted by the autoscaler, and
// ready by obtainNodeLists' further filters (TestGoodTemplateNodeUnreadyToCA).
func TestGoodTemplateNode(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	old, recent := metav1.NewTime(now.Add(-time.Hour)), metav1.NewTime(now.Add(-nodeStabilization/2))
	cond := func(typ v1.NodeConditionType, s v1.ConditionStatus, at metav1.Time) v1.NodeCondition {
		return v1.NodeCondition{Type: typ, Status: s, LastTransitionTime: at}
	}
	ready := cond(v1.NodeReady, v1.ConditionTrue, old)
	for _, tc := range []struct {
		name       string
		conditions []v1.NodeCondition
		taints     []v1.Taint
		want       bool
	}{
		{name: "ready for an hour", conditions: []v1.NodeCondition{ready}, want: true},
		{name: "no Ready condition", conditions: []v1.NodeCondition{cond(v1.NodeDiskPressure, v1.ConditionFalse, old)}},
		{name: "not ready", conditions: []v1.NodeCondition{cond(v1.NodeReady, v1.ConditionFalse, old)}},
		{name: "ready status unknown", conditions: []v1.NodeCondition{cond(v1.NodeReady, v1.ConditionUnknown, old)}},
		{name: "ready, not for long", conditions: []v1.NodeCondition{cond(v1.NodeReady, v1.ConditionTrue, recent)}},
		{name: "under disk pressure", conditions: []v1.NodeCondition{ready, cond(v1.NodeDiskPressure, v1.ConditionTrue, old)}},
		{name: "network unavailable", conditions: []v1.NodeCondition{ready, cond(v1.NodeNetworkUnavailable, v1.ConditionTrue, old)}},
		{name: "disk pressure just over", conditions: []v1.NodeCondition{ready, cond(v1.NodeDiskPressure, v1.ConditionFalse, recent)}},
		{name: "memory pressure does not count", conditions: []v1.NodeCondition{ready, cond(v1.NodeMemoryPressure, v1.ConditionTrue, recent)}, want: true},
		{name: "not-ready taint", conditions: []v1.NodeCondition{ready}, taints: []v1.Taint{{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoExecute}}},
		{name: "disk-pressure taint", conditions: []v1.NodeCondition{ready}, taints: []v1.Taint{{Key: v1.TaintNodeDiskPressure, Effect: v1.TaintEffectNoSchedule}}},
		{name: "network-unavailable taint", conditions: []v1.NodeCondition{ready}, taints: []v1.Taint{{Key: v1.TaintNodeNetworkUnavailable, Effect: v1.TaintEffectNoSchedule}}},
		{name: "being deleted by the autoscaler", conditions: []v1.NodeCondition{ready}, taints: []v1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Effect: v1.TaintEffectNoSchedule}}},
		{name: "another taint", conditions: []v1.NodeCondition{ready}, taints: []v1.Taint{{Key: "dedicated", Value: "batch", Effect: v1.TaintEffectNoSchedule}}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &v1.Node{Spec: v1.NodeSpec{Taints: tc.taints}, Status: v1.NodeStatus{Conditions: tc.conditions}}
			if got := goodTemplateNode(n, now, TemplateOptions{}); got != tc.want {
				t.Errorf("goodTemplateNode = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestGoodTemplateNodeUnreadyToCA: cluster-autoscaler builds templates only
// from the nodes obtainNodeLists returns as ready, which leaves out, beyond
// GetNodeReadiness, a node carrying a startup taint
// (FilterOutNodesWithStartupTaints, TaintConfig.IsStartupTaint: the keys of
// --startup-taint and --ignore-taint, the startup-taint and ignore-taint
// prefixes and --startup-taint-prefix; not status taints) and a node with
// the provider's GPU label (k8s.amazonaws.com/accelerator on AWS) and no GPU
// allocatable yet (GpuCustomResourcesProcessor, utils/gpu
// NodeHasGpuAllocatable: any of the GPU vendors' resources, above zero).
func TestGoodTemplateNodeUnreadyToCA(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ready := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}
	opts := TemplateOptions{
		StartupTaints:        []string{"ebs.csi.aws.com/agent-not-ready", "legacy-ignore"}, // --startup-taint and --ignore-taint
		StatusTaints:         []string{"example.com/degraded"},
		StartupTaintPrefixes: []string{"boot.example.com/"},
	}
	taint := func(key string) []v1.Taint { return []v1.Taint{{Key: key, Effect: v1.TaintEffectNoSchedule}} }
	gpu := map[string]string{labelAWSGPU: "nvidia-tesla-t4"}
	alloc := func(r string, n int64) v1.ResourceList {
		return v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourceName(r): *resource.NewQuantity(n, resource.DecimalSI)}
	}
	for _, tc := range []struct {
		name        string
		taints      []v1.Taint
		labels      map[string]string
		allocatable v1.ResourceList
		opts        TemplateOptions
		want        bool
	}{
		{name: "startup taint named by --startup-taint", taints: taint("ebs.csi.aws.com/agent-not-ready"), opts: opts},
		{name: "ignore taint named by --ignore-taint", taints: taint("legacy-ignore"), opts: opts},
		{name: "startup taint, not named without the flag", taints: taint("ebs.csi.aws.com/agent-not-ready"), want: true},
		{name: "startup-taint prefix", taints: taint("startup-taint.cluster-autoscaler.kubernetes.io/cni")},
		{name: "ignore-taint prefix", taints: taint("ignore-taint.cluster-autoscaler.kubernetes.io/cni")},
		{name: "--startup-taint-prefix", taints: taint("boot.example.com/agent"), opts: opts},
		{name: "startup taint after another", taints: append(taint("dedicated"), taint("ebs.csi.aws.com/agent-not-ready")...), opts: opts},
		{name: "status taint named by --status-taint", taints: taint("example.com/degraded"), opts: opts, want: true},
		{name: "status-taint prefix", taints: taint("status-taint.cluster-autoscaler.kubernetes.io/x"), want: true},
		{name: "GPU label, no GPU allocatable", labels: gpu, allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")}},
		{name: "GPU label, no allocatable at all", labels: gpu},
		{name: "GPU label, zero nvidia.com/gpu", labels: gpu, allocatable: alloc("nvidia.com/gpu", 0)},
		{name: "GPU label, nvidia.com/gpu allocatable", labels: gpu, allocatable: alloc("nvidia.com/gpu", 1), want: true},
		{name: "GPU label, amd.com/gpu allocatable", labels: gpu, allocatable: alloc("amd.com/gpu", 2), want: true},
		{name: "GPU label, another vendor's resource allocatable", labels: gpu, allocatable: alloc("habana.ai/gaudi", 8), want: true},
		{name: "GPU label, only an unknown extended resource", labels: gpu, allocatable: alloc("example.com/fpga", 1)},
		{name: "GPU allocatable, no GPU label", allocatable: alloc("nvidia.com/gpu", 1), want: true},
		{name: "another provider's GPU label", labels: map[string]string{"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &v1.Node{
				ObjectMeta: metav1.ObjectMeta{Labels: tc.labels},
				Spec:       v1.NodeSpec{Taints: tc.taints},
				Status:     v1.NodeStatus{Conditions: []v1.NodeCondition{ready}, Allocatable: tc.allocatable},
			}
			if got := goodTemplateNode(n, now, tc.opts); got != tc.want {
				t.Errorf("goodTemplateNode = %v, want %v", got, tc.want)
			}
		})
	}
}
