package shapes_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/dynamic-resource-allocation/deviceclass/extendedresourcecache"
	resourceslicetracker "k8s.io/dynamic-resource-allocation/resourceslice/tracker"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	"k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/nodevolumelimits"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"
	"k8s.io/kubernetes/pkg/scheduler/util/assumecache"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// The oracle: for every (pod, node) of randomly drawn clusters, the real
// v1.37.2 PreFilter and Filter plugins of the default profile (the profile
// Ballast's binary serves, with HopelessPods added), built from the in-tree
// registry under the process's feature gates (utilfeature.DefaultFeatureGate,
// the registry the scheduler binary reads), with a DRA setup, against
// Ballast's per-node static verdict (shapes.Fits) and the store's verdict.
//
// Asserted:
//   - no false park: where the real plugins pass a node, Fits passes it;
//     a hopeless verdict has no node or template the real plugins pass;
//     narrowing keeps every node the real plugins pass;
//   - fidelity for what Ballast models: where the first failing real plugin is
//     one Ballast models (modeledPlugins), Fits fails the node too.
//
// Counted (logged): nodes Ballast passes that the real plugins fail, by
// plugin (claims, volumes, DRA devices: left to the scheduler on purpose).

// modeledPlugins are the filters whose every rejection Ballast reproduces.
var modeledPlugins = sets.New(names.NodeAffinity, names.TaintToleration, names.NodeUnschedulable, names.NodeResourcesFit)

// chooser is the source of the generator's choices: math/rand for the
// differential test, the fuzzer's bytes for the fuzz target.
type chooser interface{ Intn(n int) int }

// byteChooser reads one choice per byte; once the bytes run out every
// choice is 0 (the smallest cluster, the plainest pod).
type byteChooser struct {
	b []byte
	i int
}

func (c *byteChooser) Intn(n int) int {
	if n <= 1 || c.i >= len(c.b) {
		return 0
	}
	v := int(c.b[c.i])
	c.i++
	return v % n
}

// world is one cluster: nodes, node groups, DRA and storage objects, pods.
type world struct {
	name      string
	nodes     []*v1.Node
	groups    []nodegroups.NodeGroup
	classes   []*resourceapi.DeviceClass
	slices    []*resourceapi.ResourceSlice
	csiNodes  []*storagev1.CSINode
	scs       []*storagev1.StorageClass
	pvs       []*v1.PersistentVolume
	pvcs      []*v1.PersistentVolumeClaim
	pods      []*v1.Pod
	templates []*v1.Node // template nodes of the groups that can grow
	// profile edits the default profile both sides run (nil: the default):
	// NodeResourcesFit's ignored resources, a disabled filter.
	profile func(*config.KubeSchedulerProfile)
}

type gen struct {
	c     chooser
	hosts []string
}

var (
	zones       = []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	labelKeys   = []string{"pool", "tier", "gpu"}
	labelValues = []string{"a", "b", "c"}
	zoneKeys    = []string{v1.LabelTopologyZone, v1.LabelFailureDomainBetaZone, "topology.ebs.csi.aws.com/zone"}
	numericKey  = "example.com/cores"
	levelKey    = "example.com/level" // a taint with a numeric value, for Gt/Lt tolerations
	taintKeys   = []string{"dedicated", "spot", "gpu"}
	effects     = []v1.TaintEffect{v1.TaintEffectNoSchedule, v1.TaintEffectNoExecute, v1.TaintEffectPreferNoSchedule}
	ebsDriver   = "ebs.csi.aws.com"
	gpuClass    = "gpu.example.com"
	fpgaClass   = "fpga.example.com"
	draGPU      = v1.ResourceName("example.com/dra-gpu") // gpuClass's extendedResourceName
	devicePlug  = v1.ResourceName("example.com/gpu")     // a device-plugin resource
	unmapped    = v1.ResourceName("example.com/nothing") // no class, no node
	implicitFPG = shapes.ImplicitExtendedResourceName(fpgaClass)
	implicitNo  = shapes.ImplicitExtendedResourceName("absent.example.com")
	hugepages   = v1.ResourceName("hugepages-2Mi")
)

func (g *gen) one(n int) bool         { return g.c.Intn(n) == 0 }
func (g *gen) pick(s []string) string { return s[g.c.Intn(len(s))] }
func qty(v int64) resource.Quantity   { return *resource.NewQuantity(v, resource.DecimalSI) }
func milli(v int64) resource.Quantity { return *resource.NewMilliQuantity(v, resource.DecimalSI) }
func gib(v int64) resource.Quantity   { return *resource.NewQuantity(v<<30, resource.BinarySI) }
func mib(v int64) resource.Quantity   { return *resource.NewQuantity(v<<20, resource.BinarySI) }
func (g *gen) between(lo, hi int) int { return lo + g.c.Intn(hi-lo+1) }
func (g *gen) effect() v1.TaintEffect { return effects[g.c.Intn(len(effects))] }
func (g *gen) anyEffect() v1.TaintEffect {
	if g.one(3) {
		return "" // a toleration with no effect tolerates every effect
	}
	return g.effect()
}

func (g *gen) labels(zone string) map[string]string {
	l := map[string]string{}
	for _, k := range labelKeys {
		if !g.one(3) {
			l[k] = g.pick(labelValues)
		}
	}
	if !g.one(4) {
		l[numericKey] = g.pick([]string{"2", "8", "16"})
	}
	// The zone under each of its three keys, each sometimes missing.
	for _, k := range zoneKeys {
		if !g.one(4) {
			l[k] = zone
		}
	}
	return l
}

func (g *gen) taints() []v1.Taint {
	var ts []v1.Taint
	for _, k := range taintKeys {
		if g.one(7) {
			ts = append(ts, v1.Taint{Key: k, Value: g.pick(append(labelValues, "")), Effect: g.effect()})
		}
	}
	if g.one(10) {
		ts = append(ts, v1.Taint{Key: levelKey, Value: g.pick([]string{"1", "5", "10"}), Effect: v1.TaintEffectNoSchedule})
	}
	if g.one(15) {
		ts = append(ts, v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoExecute})
	}
	return ts
}

func (g *gen) allocatable() v1.ResourceList {
	rl := v1.ResourceList{
		v1.ResourceCPU:    milli(int64(1000 * g.between(1, 8))),
		v1.ResourceMemory: gib(int64(g.between(1, 8))),
	}
	switch g.c.Intn(16) {
	case 0: // no pods at all: NodeResourcesFit allows none
	case 1:
		rl[v1.ResourcePods] = qty(0)
	default:
		rl[v1.ResourcePods] = qty(int64(g.between(1, 110)))
	}
	if !g.one(3) {
		rl[v1.ResourceEphemeralStorage] = gib(int64(g.between(10, 100)))
	}
	if g.one(3) {
		rl[hugepages] = mib(int64(2 * g.c.Intn(512)))
	}
	if g.one(3) {
		rl[devicePlug] = qty(int64(g.c.Intn(3)))
	}
	if g.one(5) {
		// A device plugin advertising the name a DeviceClass maps.
		rl[draGPU] = qty(int64(g.c.Intn(3)))
	}
	return rl
}

func (g *gen) node(name string) *v1.Node {
	l := g.labels(g.pick(zones))
	l[v1.LabelHostname] = name
	alloc := g.allocatable()
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Spec:       v1.NodeSpec{Taints: g.taints(), Unschedulable: g.one(8)},
		Status:     v1.NodeStatus{Allocatable: alloc, Capacity: alloc},
	}
	if n.Spec.Unschedulable && !g.one(3) {
		// kubectl cordon: the node controller adds the matching taint too.
		n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule})
	}
	return n
}

func (g *gen) group(name string) nodegroups.NodeGroup {
	zone := g.pick(zones)
	max := int32(g.c.Intn(3))
	return nodegroups.NodeGroup{Name: name, Zone: zone, MaxSize: max, CurrentSize: int32(g.c.Intn(int(max) + 1)),
		Labels: g.labels(zone), Taints: g.taints(), Allocatable: g.allocatable()}
}

// requirement draws one node selector requirement over labels or fields.
func (g *gen) requirement() v1.NodeSelectorRequirement {
	switch g.c.Intn(12) {
	case 0:
		return v1.NodeSelectorRequirement{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{g.pick(g.hosts)}}
	case 1:
		return v1.NodeSelectorRequirement{Key: numericKey, Operator: v1.NodeSelectorOpGt, Values: []string{g.pick([]string{"1", "4", "12"})}}
	case 2:
		return v1.NodeSelectorRequirement{Key: numericKey, Operator: v1.NodeSelectorOpLt, Values: []string{g.pick([]string{"4", "12", "20"})}}
	case 3:
		return v1.NodeSelectorRequirement{Key: g.pick(zoneKeys), Operator: v1.NodeSelectorOpIn, Values: []string{g.pick(zones), g.pick(zones)}}
	}
	k := g.pick(labelKeys)
	switch g.c.Intn(5) {
	case 0:
		return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpNotIn, Values: []string{g.pick(labelValues)}}
	case 1:
		return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpExists}
	case 2:
		return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpDoesNotExist}
	}
	return v1.NodeSelectorRequirement{Key: k, Operator: v1.NodeSelectorOpIn, Values: []string{g.pick(labelValues), g.pick(labelValues)}}
}

func (g *gen) fieldRequirement() v1.NodeSelectorRequirement {
	op := v1.NodeSelectorOpIn
	if g.one(3) {
		op = v1.NodeSelectorOpNotIn
	}
	return v1.NodeSelectorRequirement{Key: metav1.ObjectNameField, Operator: op, Values: []string{g.pick(g.hosts)}}
}

func (g *gen) nodeSelector() *v1.NodeSelector {
	var terms []v1.NodeSelectorTerm
	for i, n := 0, 1+g.c.Intn(3); i < n; i++ {
		var term v1.NodeSelectorTerm
		for j, n := 0, 1+g.c.Intn(3); j < n; j++ {
			term.MatchExpressions = append(term.MatchExpressions, g.requirement())
		}
		if g.one(6) {
			term.MatchFields = []v1.NodeSelectorRequirement{g.fieldRequirement()}
		}
		terms = append(terms, term)
	}
	return &v1.NodeSelector{NodeSelectorTerms: terms}
}

func (g *gen) toleration() v1.Toleration {
	switch g.c.Intn(10) {
	case 0: // wildcard: tolerates everything
		return v1.Toleration{Operator: v1.TolerationOpExists, Effect: g.anyEffect()}
	case 1:
		op := v1.TolerationOpGt
		if g.one(2) {
			op = v1.TolerationOpLt
		}
		return v1.Toleration{Key: levelKey, Operator: op, Value: g.pick([]string{"0", "3", "7", "20"}), Effect: g.anyEffect()}
	case 2:
		return v1.Toleration{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: g.anyEffect()}
	case 3, 4:
		return v1.Toleration{Key: g.pick(taintKeys), Operator: v1.TolerationOpExists, Effect: g.anyEffect()}
	}
	return v1.Toleration{Key: g.pick(taintKeys), Operator: v1.TolerationOpEqual, Value: g.pick(append(labelValues, "")), Effect: g.anyEffect()}
}

// requests draws one container's requests from the whole vocabulary.
func (g *gen) requests() v1.ResourceList {
	rl := v1.ResourceList{}
	if !g.one(4) {
		rl[v1.ResourceCPU] = milli(int64(g.c.Intn(4500)))
	}
	if !g.one(4) {
		rl[v1.ResourceMemory] = mib(int64(g.c.Intn(5000)))
	}
	if g.one(6) {
		rl[v1.ResourceEphemeralStorage] = gib(int64(g.c.Intn(120)))
	}
	if g.one(12) {
		rl[hugepages] = mib(int64(2 * g.c.Intn(600)))
	}
	if g.one(12) {
		rl[devicePlug] = qty(int64(g.between(1, 2)))
	}
	if g.one(10) {
		rl[[]v1.ResourceName{draGPU, implicitFPG, implicitNo, unmapped}[g.c.Intn(4)]] = qty(int64(g.between(1, 2)))
	}
	return rl
}

func (g *gen) pod(w *world, name string) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: apitypes.UID("uid-" + name)}}
	if g.one(3) {
		pod.Spec.NodeSelector = map[string]string{g.pick(labelKeys): g.pick(labelValues)}
		if g.one(4) {
			pod.Spec.NodeSelector[g.pick(zoneKeys)] = g.pick(zones)
		}
		if g.one(6) {
			pod.Spec.NodeSelector = map[string]string{"beta.kubernetes.io/os": "linux"}
		}
	}
	if g.one(4) {
		pod.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: g.nodeSelector()}}
	}
	for i, n := 0, g.c.Intn(4); i < n; i++ {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, g.toleration())
	}
	if g.one(2) {
		// The defaults the admission plugin adds to every pod.
		pod.Spec.Tolerations = append(pod.Spec.Tolerations,
			v1.Toleration{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			v1.Toleration{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)})
	}
	for i, n := 0, 1+g.c.Intn(3)/2; i < n; i++ {
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Name: fmt.Sprintf("c%d", i), Resources: v1.ResourceRequirements{Requests: g.requests()}})
	}
	for i, n := 0, g.c.Intn(3)-1; i < n; i++ {
		c := v1.Container{Name: fmt.Sprintf("init%d", i), Resources: v1.ResourceRequirements{Requests: g.requests()}}
		if g.one(2) {
			c.RestartPolicy = ptr.To(v1.ContainerRestartPolicyAlways) // a sidecar
		}
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, c)
	}
	if g.one(8) {
		pod.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: milli(int64(g.c.Intn(2000)))}
	}
	if g.one(6) {
		pod.Spec.Resources = &v1.ResourceRequirements{Requests: v1.ResourceList{
			v1.ResourceCPU: milli(int64(g.c.Intn(12000))), v1.ResourceMemory: gib(int64(g.c.Intn(10)))}}
	}
	if g.one(4) {
		g.volume(w, pod)
	}
	return pod
}

// volume gives pod one claim from the storage vocabulary.
func (g *gen) volume(w *world, pod *v1.Pod) {
	claim := pod.Name + "-data"
	pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{
		PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: pod.Namespace, UID: apitypes.UID("pvc-" + pod.Name)},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")}},
		},
	}
	kind := g.c.Intn(9)
	switch kind {
	case 0: // missing claim
		return
	case 1: // unbound, WaitForFirstConsumer: the binder provisions per node
		pvc.Spec.StorageClassName = ptr.To("wffc")
		w.pvcs = append(w.pvcs, pvc)
		return
	case 2: // unbound, Immediate: the pod waits for the PV controller
		pvc.Spec.StorageClassName = ptr.To("immediate")
		w.pvcs = append(w.pvcs, pvc)
		return
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + pod.Name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:    v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			ClaimRef:    &v1.ObjectReference{Namespace: pod.Namespace, Name: claim, UID: pvc.UID},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
	affinity := func(reqs ...v1.NodeSelectorRequirement) *v1.VolumeNodeAffinity {
		return &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: reqs}}}}
	}
	hostIn := func(hosts ...string) v1.NodeSelectorRequirement {
		return v1.NodeSelectorRequirement{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: hosts}
	}
	switch kind {
	case 3: // local PV on one node (maybe a gone one)
		pv.Spec.Local = &v1.LocalVolumeSource{Path: "/mnt/disk"}
		pv.Spec.NodeAffinity = affinity(hostIn(g.pick(g.hosts)))
	case 4: // a PV reachable from several nodes
		pv.Spec.Local = &v1.LocalVolumeSource{Path: "/mnt/shared"}
		pv.Spec.NodeAffinity = affinity(hostIn(g.pick(g.hosts), g.pick(g.hosts)))
	case 5: // a CSI volume in one or two zones
		pv.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: ebsDriver, VolumeHandle: "vol-" + pod.Name}
		pv.Spec.NodeAffinity = affinity(v1.NodeSelectorRequirement{Key: g.pick(zoneKeys), Operator: v1.NodeSelectorOpIn, Values: []string{g.pick(zones), g.pick(zones)}})
	case 6, 7: // an in-tree EBS volume, CSI-migrated on nodes whose CSINode says so
		pv.Spec.AWSElasticBlockStore = &v1.AWSElasticBlockStoreVolumeSource{VolumeID: "aws://" + g.pick(zones) + "/vol-" + pod.Name}
		zone := g.pick(zones)
		key := g.pick([]string{v1.LabelTopologyZone, v1.LabelFailureDomainBetaZone})
		if kind == 6 {
			pv.Spec.NodeAffinity = affinity(v1.NodeSelectorRequirement{Key: key, Operator: v1.NodeSelectorOpIn, Values: []string{zone}})
		} else {
			pv.Labels = map[string]string{key: zone} // the translation turns the label into node affinity
		}
	case 8: // bound to a PV that does not exist
		pvc.Spec.VolumeName = pv.Name
		pvc.Annotations = map[string]string{"pv.kubernetes.io/bind-completed": "yes"}
		pvc.Status.Phase = v1.ClaimBound
		w.pvcs = append(w.pvcs, pvc)
		return
	}
	pvc.Spec.VolumeName = pv.Name
	pvc.Status.Phase = v1.ClaimBound
	if !g.one(8) {
		pvc.Annotations = map[string]string{"pv.kubernetes.io/bind-completed": "yes"}
	}
	w.pvcs = append(w.pvcs, pvc)
	w.pvs = append(w.pvs, pv)
}

// drawWorld draws one cluster.
func drawWorld(c chooser, name string, maxNodes, pods int) *world {
	g := &gen{c: c}
	w := &world{name: name}
	for i, n := 0, c.Intn(maxNodes+1); i < n; i++ {
		n := g.node(fmt.Sprintf("%s-n%d", name, i))
		w.nodes = append(w.nodes, n)
		g.hosts = append(g.hosts, n.Name)
		if !g.one(3) {
			// kubelet's CSINode; the migration annotation sends in-tree EBS volumes through translation.
			cn := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: n.Name},
				Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: ebsDriver, NodeID: n.Name,
					TopologyKeys: []string{"topology.ebs.csi.aws.com/zone"}}}}}
			if !g.one(3) {
				cn.Annotations = map[string]string{v1.MigratedPluginsAnnotationKey: "kubernetes.io/aws-ebs"}
			}
			w.csiNodes = append(w.csiNodes, cn)
		}
		if g.one(3) {
			devices := make([]resourceapi.Device, g.c.Intn(3))
			for d := range devices {
				devices[d] = resourceapi.Device{Name: fmt.Sprintf("dev-%d", d)}
			}
			w.slices = append(w.slices, &resourceapi.ResourceSlice{
				ObjectMeta: metav1.ObjectMeta{Name: n.Name + "-gpu"},
				Spec: resourceapi.ResourceSliceSpec{Driver: gpuClass, NodeName: ptr.To(n.Name),
					Pool:    resourceapi.ResourcePool{Name: n.Name, Generation: 1, ResourceSliceCount: 1},
					Devices: devices},
			})
		}
	}
	g.hosts = append(g.hosts, name+"-gone")
	for i, n := 0, c.Intn(4); i < n; i++ {
		w.groups = append(w.groups, g.group(fmt.Sprintf("%s-g%d", name, i)))
	}
	for i := range w.groups {
		if w.groups[i].CanGrow() {
			w.templates = append(w.templates, w.groups[i].TemplateNode())
		}
	}
	if !g.one(3) {
		w.classes = append(w.classes, &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: gpuClass},
			Spec: resourceapi.DeviceClassSpec{ExtendedResourceName: ptr.To(string(draGPU))}})
	}
	if !g.one(3) {
		w.classes = append(w.classes, &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: fpgaClass}})
	}
	w.scs = []*storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "wffc"}, Provisioner: ebsDriver, VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)},
		{ObjectMeta: metav1.ObjectMeta{Name: "immediate"}, Provisioner: ebsDriver, VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate)},
	}
	for i := 0; i < pods; i++ {
		w.pods = append(w.pods, g.pod(w, fmt.Sprintf("%s-p%d", name, i)))
	}
	w.profile = g.profile()
	return w
}

// profile draws, once in four worlds, a profile that changes what the
// mirrored filters do: NodeResourcesFit args ignoring an extended resource
// or the example.com group, and maybe one mirrored filter disabled.
func (g *gen) profile() func(*config.KubeSchedulerProfile) {
	if !g.one(4) {
		return nil
	}
	ignored := []string{string(devicePlug), string(unmapped), string(draGPU), ""}[g.c.Intn(4)]
	group := g.one(3)
	disable := ""
	if i := g.c.Intn(len(shapes.MirroredFilters) + 1); i < len(shapes.MirroredFilters) {
		disable = shapes.MirroredFilters[i]
	}
	return func(p *config.KubeSchedulerProfile) {
		for i := range p.PluginConfig {
			if args, ok := p.PluginConfig[i].Args.(*config.NodeResourcesFitArgs); ok {
				if ignored != "" {
					args.IgnoredResources = []string{ignored}
				}
				if group {
					args.IgnoredResourceGroups = []string{"example.com"}
				}
			}
		}
		if disable != "" {
			p.Plugins.Filter.Disabled = append(p.Plugins.Filter.Disabled, config.Plugin{Name: disable})
		}
	}
}

// candidates are the nodes that exist and the nodes the groups could add.
func (w *world) candidates() []*v1.Node {
	return append(append([]*v1.Node(nil), w.nodes...), w.templates...)
}

func (w *world) objects() []runtime.Object {
	var objs []runtime.Object
	objs = appendObjects(objs, w.nodes)
	objs = appendObjects(objs, w.classes)
	objs = appendObjects(objs, w.slices)
	objs = appendObjects(objs, w.csiNodes)
	objs = appendObjects(objs, w.scs)
	objs = appendObjects(objs, w.pvs)
	return appendObjects(objs, w.pvcs)
}

func appendObjects[T runtime.Object](objs []runtime.Object, items []T) []runtime.Object {
	for _, o := range items {
		objs = append(objs, o)
	}
	return objs
}

// realScheduler is the default profile of the v1.37.2 scheduler, wired as
// scheduler.New wires it (DRA manager, extended-resource cache fed by the
// DeviceClass informer), over a fake client holding the world.
type realScheduler struct {
	fw       framework.Framework
	snapshot *cache.Snapshot
	// profile is the configuration fw runs (newRealSchedulerProfile), for
	// Ballast's Options.ApplyProfile; nil: the default profile.
	profile *config.KubeSchedulerProfile
}

func newRealScheduler(t testing.TB, ctx context.Context, w *world) *realScheduler {
	t.Helper()
	return newRealSchedulerProfile(t, ctx, w, nil)
}

// newRealSchedulerProfile is newRealScheduler with the default profile
// changed by edit (if not nil), as a KubeSchedulerConfiguration's
// pluginConfig changes it.
func newRealSchedulerProfile(t testing.TB, ctx context.Context, w *world, edit func(*config.KubeSchedulerProfile)) *realScheduler {
	t.Helper()
	cfg, err := latest.Default()
	if err != nil {
		t.Fatalf("default scheduler configuration: %v", err)
	}
	prof := &cfg.Profiles[0]
	if edit != nil {
		edit(prof)
	}
	client := fake.NewClientset(w.objects()...)
	factory := informers.NewSharedInformerFactory(client, 0)
	logger := klog.FromContext(ctx)
	var draManager fwk.SharedDRAManager
	var synced []toolscache.InformerSynced
	if utilfeature.DefaultFeatureGate.Enabled(features.DynamicResourceAllocation) {
		claims := assumecache.NewAssumeCache(logger, factory.Resource().V1().ResourceClaims().Informer(), "ResourceClaim", "", nil)
		opts := resourceslicetracker.Options{
			EnableDeviceTaintRules:   utilfeature.DefaultFeatureGate.Enabled(features.DRADeviceTaintRules),
			EnableConsumableCapacity: utilfeature.DefaultFeatureGate.Enabled(features.DRAConsumableCapacity),
			SliceInformer:            factory.Resource().V1().ResourceSlices(),
			KubeClient:               client,
		}
		if opts.EnableDeviceTaintRules {
			opts.TaintInformer = factory.Resource().V1().DeviceTaintRules()
		}
		tracker, err := resourceslicetracker.StartTracker(ctx, opts)
		if err != nil {
			t.Fatalf("resource slice tracker: %v", err)
		}
		dm := dynamicresources.NewDRAManager(ctx, claims, tracker, factory)
		draManager = dm
		if erCache, ok := dm.DeviceClassResolver().(*extendedresourcecache.ExtendedResourceCache); ok && erCache != nil {
			reg, err := factory.Resource().V1().DeviceClasses().Informer().AddEventHandler(erCache)
			if err != nil {
				t.Fatalf("device class handler: %v", err)
			}
			synced = append(synced, reg.HasSynced)
		}
	}
	snapshot := cache.NewSnapshot(nil, w.candidates())
	fw, err := frameworkruntime.NewFramework(ctx, plugins.NewInTreeRegistry(), prof,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithSharedDRAManager(draManager),
		frameworkruntime.WithSharedCSIManager(nodevolumelimits.NewCSIManager(factory.Storage().V1().CSINodes().Lister())),
		frameworkruntime.WithSnapshotSharedLister(snapshot))
	if err != nil {
		t.Fatalf("building the profile: %v", err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		t.Fatal("DeviceClass handler did not sync")
	}
	return &realScheduler{fw: fw, snapshot: snapshot, profile: prof}
}

// verdicts runs the real PreFilter once and Filter on every candidate; it
// returns, per node name, "" for pass or the plugin that rejected it.
func (rs *realScheduler) verdicts(ctx context.Context, pod *v1.Pod, nodes []*v1.Node) (map[string]string, map[string]string) {
	rejectedBy, why := map[string]string{}, map[string]string{}
	state := framework.NewCycleState()
	res, s, _ := rs.fw.RunPreFilterPlugins(ctx, state, pod)
	for _, n := range nodes {
		switch {
		case !s.IsSuccess() && !s.IsSkip():
			rejectedBy[n.Name], why[n.Name] = "PreFilter/"+s.Plugin(), s.Message()
		case res != nil && !res.AllNodes() && !res.NodeNames.Has(n.Name):
			rejectedBy[n.Name], why[n.Name] = "PreFilterResult", "not in PreFilterResult"
		default:
			ni, err := rs.snapshot.Get(n.Name)
			if err != nil {
				rejectedBy[n.Name], why[n.Name] = "snapshot", err.Error()
				continue
			}
			if st := rs.fw.RunFilterPlugins(ctx, state, pod, ni); !st.IsSuccess() {
				rejectedBy[n.Name], why[n.Name] = st.Plugin(), st.Message()
			} else {
				rejectedBy[n.Name] = ""
			}
		}
	}
	return rejectedBy, why
}

// ballastOptions are the options the plugin builds in New, from the same gates.
func ballastOptions() *shapes.Options {
	opts := shapes.FeatureOptions(utilfeature.DefaultFeatureGate)
	opts.IdentityLabels = sets.New(v1.LabelHostname)
	return opts
}

// tally collects what the oracle saw over many worlds.
type tally struct {
	pairs, realPass, ballastPass int
	hopeless, feasible           int
	lenient                      map[string]int // real fails, Ballast passes: by rejecting plugin
	missedParks                  int            // Ballast feasible, the real plugins pass nowhere
	narrowedExtra                int            // narrowed nodes the real plugins reject
}

// check runs the oracle on one world. fail is t.Fatalf with the seed.
func check(ctx context.Context, t testing.TB, w *world, tl *tally, fail func(format string, args ...any)) {
	opts := ballastOptions()
	var rs *realScheduler
	modeled, preFilterResultModeled := modeledPlugins, true
	if w.profile != nil {
		rs = newRealSchedulerProfile(t, ctx, w, w.profile)
		if err := opts.ApplyProfile(rs.profile, nil); err != nil {
			fail("%s: %v", w.name, err)
		}
		// A disabled filter's PreFilter still runs: its rejections, and its
		// PreFilterResult, are the scheduler's business then.
		modeled = modeledPlugins.Difference(opts.DisabledFilters)
		preFilterResultModeled = opts.DisabledFilters.Len() == 0
	} else {
		rs = newRealScheduler(t, ctx, w)
	}
	store := w.store(opts)
	lookup := w.volumeLookup()
	cands := w.candidates()
	for _, pod := range w.pods {
		vols, _, _ := shapes.ResolveBoundVolumes(pod, lookup)
		req := shapes.NewRequirements(pod, vols, opts)
		rejectedBy, why := rs.verdicts(ctx, pod, cands)
		anyReal := false
		for _, n := range cands {
			tl.pairs++
			real := rejectedBy[n.Name] == ""
			f := req.Check(n)
			if real {
				tl.realPass++
				anyReal = true
			}
			if f == nil {
				tl.ballastPass++
			}
			switch {
			case real && f != nil:
				fail("FALSE PARK on a node: %s: pod %s fails %s on node %s (%+v), but the real plugins pass it\npod: %s\nnode: %s",
					w.name, pod.Name, f.Reason, n.Name, f, dump(pod.Spec), dump(n))
			case !real && f == nil:
				plugin := rejectedBy[n.Name]
				tl.lenient[plugin]++
				if modeled.Has(strings.TrimPrefix(plugin, "PreFilter/")) || (plugin == "PreFilterResult" && preFilterResultModeled) {
					fail("%s: pod %s passes Ballast on node %s, but %s (modeled) rejects it: %s\npod: %s\nnode: %s",
						w.name, pod.Name, n.Name, plugin, why[n.Name], dump(pod.Spec), dump(n))
				}
			}
		}
		v := store.Evaluate(req)
		if v.FailOpen {
			fail("%s: the store failed open with valid templates", w.name)
		}
		if v.Hopeless {
			tl.hopeless++
			if anyReal {
				fail("FALSE PARK: %s: pod %s hopeless (%s) but the real plugins pass a node\npod: %s", w.name, pod.Name, v.Message, dump(pod.Spec))
			}
			continue
		}
		tl.feasible++
		if !anyReal {
			tl.missedParks++
		}
		if v.Nodes == nil {
			continue
		}
		for _, n := range w.nodes {
			if rejectedBy[n.Name] == "" && !v.Nodes.Has(n.Name) {
				fail("FALSE NARROWING: %s: pod %s narrowed to %v, dropping node %s that the real plugins pass", w.name, pod.Name, sets.List(v.Nodes), n.Name)
			}
			if rejectedBy[n.Name] != "" && v.Nodes.Has(n.Name) {
				tl.narrowedExtra++
			}
		}
	}
}

// quietContext logs only what the plugins say at V(2) or less: at their
// V(5) the run would spend its time logging.
func quietContext(t testing.TB) context.Context {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	t.Cleanup(cancel)
	return ctx
}

func dump(v any) string { return fmt.Sprintf("%+v", v) }

// diffSeed is the seed of this run: BALLAST_DIFF_SEED replays one.
func diffSeed(t *testing.T) int64 {
	if s := os.Getenv("BALLAST_DIFF_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("BALLAST_DIFF_SEED=%q: %v", s, err)
		}
		return seed
	}
	return time.Now().UnixNano()
}

// TestDifferentialPerNode is the oracle described at the top of this file,
// over randomly drawn clusters; the seed changes per run.
func TestDifferentialPerNode(t *testing.T) {
	schedmetrics.Register()
	ctx := quietContext(t)
	seed := diffSeed(t)
	t.Logf("seed %d (replay with BALLAST_DIFF_SEED=%d)", seed, seed)
	r := rand.New(rand.NewSource(seed))
	clusters, pods := 250, 40
	if testing.Short() {
		clusters = 30
	}
	tl := &tally{lenient: map[string]int{}}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d (replay with BALLAST_DIFF_SEED=%d): "+format, append([]any{seed, seed}, args...)...)
	}
	start := time.Now()
	for c := 0; c < clusters; c++ {
		cctx, cancel := context.WithCancel(ctx)
		check(cctx, t, drawWorld(r, fmt.Sprintf("c%d", c), 10, pods), tl, fail)
		cancel()
	}
	report(t, tl, time.Since(start))
	if tl.realPass < tl.pairs/100 || tl.realPass > tl.pairs*95/100 || tl.hopeless < clusters*pods/50 || tl.feasible < clusters*pods/20 {
		t.Fatalf("seed %d: the generator is lopsided: %+v", seed, tl)
	}
}

func report(t testing.TB, tl *tally, took time.Duration) {
	var plugins []string
	for p, n := range tl.lenient {
		plugins = append(plugins, fmt.Sprintf("%s=%d", p, n))
	}
	sort.Strings(plugins)
	t.Logf("%d (pod, node) pairs in %v: real plugins pass %d, Ballast passes %d; verdicts: %d hopeless, %d feasible, of which %d no real node passes (left to the scheduler); narrowing kept %d nodes the real plugins reject",
		tl.pairs, took.Round(time.Millisecond), tl.realPass, tl.ballastPass, tl.hopeless, tl.feasible, tl.missedParks, tl.narrowedExtra)
	t.Logf("nodes Ballast passes and the real plugins reject, by plugin (not modeled on purpose): %s", strings.Join(plugins, " "))
}

// FuzzVerdictAgainstRealFilters is the same oracle with the fuzzer choosing
// the cluster and the pods. Run long with:
//
//	go test -run '^$' -fuzz FuzzVerdictAgainstRealFilters -fuzztime 10m ./internal/shapes/
func FuzzVerdictAgainstRealFilters(f *testing.F) {
	schedmetrics.Register()
	f.Add([]byte{})
	f.Add([]byte("\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
	f.Add([]byte("ballast: a node, a group, a pod with a claim and a DRA extended resource"))
	f.Add([]byte{9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 7, 7, 7, 7, 7, 200, 100, 50, 25})
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithCancel(quietContext(t))
		defer cancel()
		tl := &tally{lenient: map[string]int{}}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("input %q: "+format, append([]any{data}, args...)...)
		}
		check(ctx, t, drawWorld(&byteChooser{b: data}, "f", 6, 4), tl, fail)
	})
}
