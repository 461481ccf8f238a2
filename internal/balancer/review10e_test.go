package balancer

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/awstest"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestReview10eConfigMapOverOneMiBAtNoVariants: encodeData trims variants
// down to none and then returns the data whatever its size
// ("size <= maxConfigMapBytes || limit == 0"). The widened templates and the
// remembered summaries are not bounded by the trimming: 14 groups whose
// nodes carry 128 legal labels of a long prefixed key and a 63-character
// value (each remembered, maxRememberedLabels) make the list plus the memory
// larger than the API server takes ("The data stored in a ConfigMap cannot
// exceed 1 MiB", Kubernetes documentation, ConfigMaps; apiserver
// ValidateConfigMap: "Too long"). The update is then refused on every loop:
// the list goes stale (fail-open, nothing parked) and the memory is never
// saved. The fake clientset does not enforce the limit, so the test measures
// what would be sent.
func TestReview10eConfigMapOverOneMiBAtNoVariants(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const groups = 14
	prefix := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example.com/"
	for g := range groups {
		name := fmt.Sprintf("batch%02d", g)
		ids := f.emu.CreateGroup(awstest.GroupSpec{Name: name, Zones: []string{"us-east-1a"}, MaxSize: 3, InstanceType: "m5.xlarge",
			Tags: caTags(nil), Instances: map[string]int{"us-east-1a": 1}})["us-east-1a"]
		n := batchNode(f, name+"-0", ids[0])
		for l := 0; len(n.Labels) < maxRememberedLabels; l++ {
			n.Labels[fmt.Sprintf("%sl-%03d-%s", prefix, l, strings.Repeat("k", 50))] = fmt.Sprintf("%s-%s", name, strings.Repeat("v", 55))
		}
		if _, err := f.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cm, size := publishedData(t, f)
	if size > 1<<20 {
		t.Fatalf("ConfigMap data is %d bytes (list %d, memory %d), more than the API server takes (1 MiB): the update is refused",
			size, len(cm.Data[nodegroups.DataKey]), len(cm.Data[lastNodesKey]))
	}
	// Nothing changed: the next loops before the refresh write nothing
	// (review 12: with the memory dropped for size, the ConfigMap was
	// rewritten on every loop).
	f.kube.ClearActions()
	for range 2 {
		f.clock.Step(f.b.opts.TemplateRefresh / 4)
		reconcile(t, f)
	}
	for _, a := range f.kube.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == "configmaps" {
			t.Errorf("a loop with nothing changed rewrote the ConfigMap (memory kept: %v)", cm.Data[lastNodesKey] != "")
		}
	}
}

// TestReview10eCoversUnsoundForDRAExtendedResource: covers(a, b) says a
// admits every pod b admits when a offers at least b's allocatable of every
// resource b offers. With DRAExtendedResource (GA, locked on in v1.37)
// NodeResourcesFit leaves an extended resource that a node does NOT advertise
// (absent or 0) and that a DeviceClass maps to DynamicResources
// (shouldDelegateResourceToDRA; Ballast mirrors it in
// internal/shapes/predicates.go delegatedToDRA). So a node advertising
// example.com/gpu: 1 through a device plugin rejects a pod requesting 2,
// while a node of the same labels that does not advertise it (its GPUs
// published as ResourceSlices by a DRA driver) leaves the request to DRA.
// covers(advertising, not advertising) is true, so the second node's
// variant is dropped (summarizeNodes, variants) and the pod is parked,
// although CA's template of the second node (with its local ResourceSlices)
// would host it: FALSE PARK.
func TestReview10eCoversUnsoundForDRAExtendedResource(t *testing.T) {
	labels := map[string]string{v1.LabelTopologyZone: "us-east-1a", "pool": "gpu"}
	devicePlugin := nodegroups.Variant{Labels: labels, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"),
		v1.ResourceMemory: resource.MustParse("32Gi"), "example.com/gpu": resource.MustParse("1")}}
	draNode := nodegroups.Variant{Labels: labels, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"),
		v1.ResourceMemory: resource.MustParse("32Gi")}}
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	opts.DeviceClasses = shapes.NewDeviceClasses()
	opts.DeviceClasses.Upsert(&resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: resourceapi.DeviceClassSpec{ExtendedResourceName: ptr.To("example.com/gpu")}})
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}, Spec: v1.PodSpec{
		NodeSelector: map[string]string{"pool": "gpu"},
		Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), "example.com/gpu": resource.MustParse("2")},
			Limits:   v1.ResourceList{"example.com/gpu": resource.MustParse("2")}}}}}}
	hopeless := func(vs ...nodegroups.Variant) bool {
		g := nodegroups.NodeGroup{Name: "gpu", MaxSize: 3, Labels: vs[0].Labels, Allocatable: vs[0].Allocatable, Variants: vs[1:]}
		st := shapes.NewStore(opts, true)
		st.SetTemplates(&nodegroups.NodeGroupList{NodeGroups: []nodegroups.NodeGroup{g}}, shapes.TemplatesOK)
		return st.Evaluate(shapes.NewRequirements(pod, nil, opts)).Hopeless
	}
	if hopeless(draNode) {
		t.Fatal("setup: the DRA node's own template parks the pod; want it left to DynamicResources")
	}
	if covers(devicePlugin, draNode) && hopeless(devicePlugin) {
		t.Errorf("FALSE PARK: covers(device-plugin node, DRA node) is true, but the pod the DRA node's template admits is parked by the template said to cover it")
	}
}
