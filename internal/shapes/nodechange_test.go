package shapes_test

import (
	"fmt"
	"math/rand"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/shapes"
)

// TestNodeChangeMattersIsExact: the release path skips judging a parked
// identity verdict again after a node change that NodeChangeMatters says
// cannot matter to it. Over randomly drawn clusters (the differential
// test's vocabulary) and a random node added, deleted or replaced, a change
// said not to matter must leave the verdict hopeless, with its reason and
// its message: skipping it must never miss a release or keep a stale reason.
// The seed changes per run (BALLAST_DIFF_SEED replays one).
func TestNodeChangeMattersIsExact(t *testing.T) {
	seed := diffSeed(t)
	t.Logf("seed %d (replay with BALLAST_DIFF_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	opts := ballastOptions()
	skipped, mattered := 0, 0
	for i := range 1500 {
		w := drawWorld(rng, fmt.Sprintf("w%d", i), 6, 4)
		lookup := w.volumeLookup()
		for p, pod := range w.pods {
			vols, _, _ := shapes.ResolveBoundVolumes(pod, lookup)
			req := shapes.NewRequirements(pod, vols, opts)
			if !req.Identity() {
				continue
			}
			store := w.store(opts)
			before := store.Evaluate(req)
			if !before.Hopeless {
				continue
			}
			// A message that names one of several failing volumes may
			// name another on the next evaluation (map order): compare
			// messages only when two evaluations agree.
			stableMessage := store.Evaluate(req).Message == before.Message
			g := &gen{c: rng, hosts: []string{w.name + "-gone"}}
			var changes []shapes.NodeChange
			for c := range 1 + rng.Intn(3) {
				var ch shapes.NodeChange
				switch k := rng.Intn(3); {
				case k == 0 || len(w.nodes) == 0:
					ch.New = g.node(fmt.Sprintf("%s-new%d-%d", w.name, p, c))
					store.UpsertNode(ch.New)
				case k == 1:
					ch.Old = w.nodes[rng.Intn(len(w.nodes))]
					store.DeleteNode(ch.Old.Name)
				default:
					ch.Old = w.nodes[rng.Intn(len(w.nodes))]
					ch.New = g.node(ch.Old.Name)
					store.UpsertNode(ch.New)
				}
				changes = append(changes, ch)
			}
			if store.NodeChangesMatter(req, before.Reason, changes) {
				mattered++
				continue
			}
			skipped++
			after := store.Evaluate(req)
			if !after.Hopeless || after.Reason != before.Reason || (stableMessage && after.Message != before.Message) {
				t.Fatalf("seed %d, %s, pod %s: the changes were said not to matter, but the verdict went from (hopeless %v, %s, %q) to (hopeless %v, %s, %q)\npod: %s\nchanges: %s",
					seed, w.name, pod.Name, before.Hopeless, before.Reason, before.Message, after.Hopeless, after.Reason, after.Message,
					dump(pod.Spec), dump(changes))
			}
		}
	}
	t.Logf("%d changes said not to matter (verdict unchanged), %d said to matter", skipped, mattered)
	if skipped < 20 || mattered < 20 {
		t.Fatalf("too few cases of each kind (%d skipped, %d judged): the test no longer exercises the skip", skipped, mattered)
	}
}

// store is a shape store of the world's nodes, DeviceClasses and groups.
func (w *world) store(opts *shapes.Options) *shapes.Store {
	store := shapes.NewStore(opts, len(w.groups) > 0)
	for _, n := range w.nodes {
		store.UpsertNode(n)
	}
	for _, dc := range w.classes {
		store.UpsertDeviceClass(dc)
	}
	store.SetTemplates(&nodegroups.NodeGroupList{APIVersion: nodegroups.APIVersion, Kind: nodegroups.Kind, NodeGroups: w.groups}, shapes.TemplatesOK)
	return store
}

// volumeLookup finds the world's claims and PVs.
func (w *world) volumeLookup() shapes.VolumeLookup {
	pvcs := map[string]*v1.PersistentVolumeClaim{}
	for _, c := range w.pvcs {
		pvcs[c.Namespace+"/"+c.Name] = c
	}
	pvs := map[string]*v1.PersistentVolume{}
	for _, v := range w.pvs {
		pvs[v.Name] = v
	}
	return shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) { c, ok := pvcs[ns+"/"+name]; return c, ok },
		PV:    func(name string) (*v1.PersistentVolume, bool) { v, ok := pvs[name]; return v, ok },
	}
}

// TestNodeChangeMattersStartingNode: a starting node counts for what it
// will be once initialized (becomesFit), not for what it shows. The node of
// a local PV re-registers under its name, still uninitialized and without
// its zone label: as it stands it fails the pod's zone selector, a
// predicate before the verdict's reason (the PV's node affinity), but once
// the cloud node controller labels it as its group's template says, it
// hosts the pod. The change matters, and the verdict is released.
func TestNodeChangeMattersStartingNode(t *testing.T) {
	opts := ballastOptions()
	store := shapes.NewStore(opts, true)
	alloc := v1.ResourceList{v1.ResourceCPU: milli(4000), v1.ResourceMemory: gib(16), v1.ResourcePods: qty(110)}
	store.UpsertNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other", Labels: map[string]string{v1.LabelHostname: "other", v1.LabelTopologyZone: zones[0]}},
		Status: v1.NodeStatus{Allocatable: alloc}})
	store.SetTemplates(&nodegroups.NodeGroupList{APIVersion: nodegroups.APIVersion, Kind: nodegroups.Kind, NodeGroups: []nodegroups.NodeGroup{{
		Name: "cassandra", Zone: zones[0], MaxSize: 3, CurrentSize: 1, Labels: map[string]string{v1.LabelTopologyZone: zones[0]}, Allocatable: alloc}}}, shapes.TemplatesOK)
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-data"},
		Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/data"}},
			ClaimRef: &v1.ObjectReference{Namespace: "db", Name: "data"},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{
				{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{"cass-0"}}}}}}}},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound}}
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data", Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: v1.PersistentVolumeClaimSpec{VolumeName: pv.Name}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cass-0"},
		Spec: v1.PodSpec{NodeSelector: map[string]string{v1.LabelTopologyZone: zones[0]}, Containers: []v1.Container{{Name: "c"}},
			Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}
	vols, _, _ := shapes.ResolveBoundVolumes(pod, shapes.VolumeLookup{
		Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) { return pvc, ns == "db" && name == "data" },
		PV:    func(name string) (*v1.PersistentVolume, bool) { return pv, name == pv.Name },
	})
	req := shapes.NewRequirements(pod, vols, opts)
	before := store.Evaluate(req)
	if !before.Hopeless || before.Reason != shapes.ReasonVolumeNodeAffinity || !req.Identity() {
		t.Fatalf("setup: verdict %+v (identity %v), want hopeless for the PV's node affinity", before, req.Identity())
	}
	starting := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cass-0", Labels: map[string]string{v1.LabelHostname: "cass-0"}},
		Spec:   v1.NodeSpec{Taints: []v1.Taint{{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{Allocatable: alloc}}
	store.UpsertNode(starting)
	if after := store.Evaluate(req); after.Hopeless {
		t.Fatalf("setup: the starting node of the PV does not release the pod: %+v", after)
	}
	if !store.NodeChangesMatter(req, before.Reason, []shapes.NodeChange{{New: starting}}) {
		t.Error("the starting node that hosts the pod once initialized was said not to matter: the parked pod would wait for the flush")
	}
}
