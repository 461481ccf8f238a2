package balancer

import (
	"context"
	"path"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/config/nodegroups"

	"github.com/ballast-k8s/ballast/internal/awstest"
)

// Review 10d: templates from a group's last good nodes, against
// cluster-autoscaler 1.36.1's facts:
//   - processors/nodeinfosprovider/mixed_nodeinfos_processor.go Process: while
//     a group has a good node, its template is built from that node
//     (SanitizedTemplateNodeInfoFromNodeInfo) and cached; after the group
//     scaled to zero the cached template is used before the cloud provider's
//     (the ASG tags') template is ever built.
//   - simulator/node_info_utils.go createSanitizedNode: the template node is
//     the real node deep-copied; only its name and its kubernetes.io/hostname
//     label are replaced (and taints sanitized). Every other label, whatever
//     its value, is kept.

// TestReview10dNodeLabelValueBeatsTagsValue: the group's kubelet registered
// its node with disk=nvme while the ASG's node-template tag says disk=ssd
// (tags are only CA's hints for scale-from-zero; node labels come from the
// kubelet). While CA runs, its cached template for the scaled-to-zero group
// is the node's, with disk=nvme: CA scales batch up for a pod selecting
// disk=nvme. az-balancer kept the tags' value only (one template per
// group), so Ballast parked that pod; the group now carries the node's
// template as a variant. After a CA restart its template is the tags' one
// (disk=ssd): that pod is not parked either. A pod selecting a value
// neither has is, also after an az-balancer restart (the variants are
// remembered in the ConfigMap).
func TestReview10dNodeLabelValueBeatsTagsValue(t *testing.T) {
	f := newFixture(t)
	id, n := batchGroup(t, f, map[string]string{"k8s.io/cluster-autoscaler/node-template/label/disk": "ssd"},
		func(n *v1.Node) { n.Labels["disk"] = "nvme" })
	scaleToZero(t, f, id, n.Name)
	check := func(when string) {
		t.Helper()
		for disk, hopeless := range map[string]bool{"nvme": false, "ssd": false, "hdd": true} {
			pod := batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["disk"] = disk })
			if v := verdict(t, f.published(t), pod); v.Hopeless != hopeless {
				t.Errorf("%s: pod selecting disk=%s: hopeless %v, want %v (%s); published %+v", when, disk, v.Hopeless, hopeless, v.Message, templateOf(t, f, "batch"))
			}
		}
	}
	check("at zero")
	restart(t, f)
	check("after an az-balancer restart")
}

// TestReview10dLabelValuedLikeTheInstanceIDIsKept: a label whose value is
// the node's instance id (here node.example.com/ec2-id, set by a node
// bootstrap script) stays in CA's template (createSanitizedNode replaces the
// hostname label only), so CA's simulation places a pod selecting it on
// batch's cached template and scales batch up. az-balancer drops the label
// (perNodeLabel), so Ballast parks the pod.
func TestReview10dLabelValuedLikeTheInstanceIDIsKept(t *testing.T) {
	f := newFixture(t)
	var label string
	id, n := batchGroup(t, f, nil, func(n *v1.Node) {
		label = path.Base(n.Spec.ProviderID)
		n.Labels["node.example.com/ec2-id"] = label
	})
	if label != id {
		// The fixture's providerID ends with the instance id.
		t.Fatalf("setup: label %q, instance id %q", label, id)
	}
	scaleToZero(t, f, id, n.Name)
	pod := batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["node.example.com/ec2-id"] = id })
	if v := verdict(t, f.published(t), pod); v.Hopeless {
		t.Fatalf("FALSE PARK: CA's cached template of batch keeps node.example.com/ec2-id=%s and CA scales batch up for the pod; Ballast: %s; published labels %v",
			id, v.Message, templateOf(t, f, "batch").Labels)
	}
}

// TestReview10dEitherNodesLabelValue: batch ran two good nodes whose kubelets
// registered rack=r1 (batch-0) and rack=r2 (batch-1). CA 1.36.1's Process
// builds (and caches) the group's template from the first good node of the
// node list it is handed (the lister's order, which nothing fixes), so when
// batch scales to zero its cached template may carry rack=r2, and CA then
// scales batch up for a pod selecting rack=r2. az-balancer kept the first
// node by name's value (rack=r1) only, so Ballast parked that pod; each
// node's template is a variant of the group now. A pod selecting a rack no
// node had, or the labels of both nodes at once, is still parked. Both
// nodes go in one round, as CA deletes empty nodes in bulk
// (--max-empty-bulk-delete).
func TestReview10dEitherNodesLabelValue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids := f.emu.CreateGroup(awstest.GroupSpec{Name: "batch", Zones: []string{"us-east-1a"}, MaxSize: 5, InstanceType: "m5.xlarge",
		Tags: caTags(nil), Instances: map[string]int{"us-east-1a": 2}})["us-east-1a"]
	var names []string
	for i, id := range ids {
		n := batchNode(f, []string{"batch-0", "batch-1"}[i], id)
		n.Labels["rack"] = []string{"r1", "r2"}[i]
		if _, err := f.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		names = append(names, n.Name)
	}
	reconcile(t, f)
	for i, id := range ids {
		scaleIn(t, f, id, names[i])
	}
	loopsAMinuteApart(t, f, 3)
	if ng := templateOf(t, f, "batch"); ng.CurrentSize != 0 {
		t.Fatalf("setup: batch has size %d, want 0", ng.CurrentSize)
	}
	for _, rack := range []string{"r1", "r2"} {
		pod := batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["rack"] = rack })
		if v := verdict(t, f.published(t), pod); v.Hopeless {
			t.Errorf("FALSE PARK of a pod selecting rack=%s: CA may have cached either node's template; Ballast: %s; published labels %v",
				rack, v.Message, templateOf(t, f, "batch").Labels)
		}
	}
	if v := verdict(t, f.published(t), batchPod(func(p *v1.Pod) { p.Spec.NodeSelector["rack"] = "r3" })); !v.Hopeless {
		t.Errorf("a pod selecting rack=r3, which no node of batch had, is not parked")
	}
	both := batchPod(func(p *v1.Pod) {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: "rack", Operator: v1.NodeSelectorOpIn, Values: []string{"r1"}},
				{Key: "rack", Operator: v1.NodeSelectorOpNotIn, Values: []string{"r1"}},
			}}}}}}
	})
	if v := verdict(t, f.published(t), both); !v.Hopeless {
		t.Errorf("a pod no node could ever host (rack in r1 and not in r1) is not parked")
	}
}

// TestReview10dMemoryPersistedOnlyWithACompleteList: what az-balancer
// remembers of a group's nodes reached the ConfigMap only with a published
// list (writeConfigMap). While another group's template cannot be built
// (here: group odd, no instance type and no node-template resource tags),
// no list is written, so batch's good node was remembered in memory only.
// An az-balancer restart meanwhile (batch now at zero) forgot it; once odd
// was fixed the list was published with batch's tags-only template, without
// the kubelet's workload=batch label. CA 1.36.1, which ran throughout, still
// has batch's node template cached and scales batch up for the pod. Now
// az-balancer creates the ConfigMap with the memory only (no list: the
// plugin counts it as missing and fails open).
func TestReview10dMemoryPersistedOnlyWithACompleteList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.emu.CreateGroup(awstest.GroupSpec{Name: "odd", Zones: []string{"us-east-1a"}, MaxSize: 5, Tags: caTags(nil)})
	id, n := batchGroup(t, f, nil, nil)
	if cm, err := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(ctx, nodegroups.DefaultName, metav1.GetOptions{}); err == nil {
		if _, ok := cm.Data[nodegroups.DataKey]; ok {
			t.Fatalf("setup: a list was published although group odd has no template")
		}
	}
	// batch's last node goes (scaleToZero, which reads the published list,
	// cannot be used: none is published).
	scaleIn(t, f, id, n.Name)
	loopsAMinuteApart(t, f, 3)
	cm, err := f.kube.CoreV1().ConfigMaps(nodegroups.DefaultNamespace).Get(ctx, nodegroups.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no ConfigMap holds what az-balancer remembers of batch's node: %v", err)
	}
	if _, ok := cm.Data[nodegroups.DataKey]; ok || cm.Data[lastNodesKey] == "" {
		t.Fatalf("ConfigMap data keys %v: want only %s while odd has no template", sortedKeys(cm.Data), lastNodesKey)
	}
	restart(t, f)
	var tags []astypes.Tag
	for k, v := range map[string]string{"cpu": "2", "memory": "4Gi"} {
		tags = append(tags, astypes.Tag{ResourceId: awssdk.String("odd"), ResourceType: awssdk.String("auto-scaling-group"),
			Key: awssdk.String("k8s.io/cluster-autoscaler/node-template/resources/" + k), Value: awssdk.String(v), PropagateAtLaunch: awssdk.Bool(false)})
	}
	if _, err := rawASG(f.emu).CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: tags}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		f.clock.Step(5 * time.Minute)
		reconcile(t, f)
	}
	if v := verdict(t, f.published(t), batchPod(nil)); v.Hopeless {
		t.Fatalf("FALSE PARK: CA still has batch's node template (workload=batch) cached; Ballast: %s; published labels %v",
			v.Message, templateOf(t, f, "batch").Labels)
	}
}
