package shapes

import (
	"math/rand"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	volumehelper "k8s.io/component-helpers/storage/volume"
)

// TestPVAffinityIsCheckNodeAffinity: the PV affinity parsed once answers
// what volumehelper.CheckNodeAffinity (what VolumeBinding runs for a bound
// claim in v1.37.2) answers, for random terms: several terms, unparsable
// ones (a bad operator, a bad value), metadata.name fields, no affinity.
func TestPVAffinityIsCheckNodeAffinity(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	keys := []string{v1.LabelHostname, v1.LabelTopologyZone, "pool"}
	values := []string{"a", "b", "c", "not a value!"}
	ops := []v1.NodeSelectorOperator{v1.NodeSelectorOpIn, v1.NodeSelectorOpNotIn, v1.NodeSelectorOpExists,
		v1.NodeSelectorOpDoesNotExist, v1.NodeSelectorOpGt, "Bogus"}
	pick := func(s []string) string { return s[rng.Intn(len(s))] }
	randomPV := func() *v1.PersistentVolume {
		pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv"}}
		switch rng.Intn(6) {
		case 0:
			return pv // no affinity
		case 1:
			pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{} // no required part
			return pv
		}
		sel := randomSelector(rng, keys, values, ops, "node-a")
		pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{Required: sel}
		return pv
	}
	randomNode := func() *v1.Node {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{}}}
		for _, k := range keys {
			if rng.Intn(3) > 0 {
				n.Labels[k] = pick(values[:3])
			}
		}
		return n
	}
	passes, fails := 0, 0
	for i := range 3000 {
		pv, node := randomPV(), randomNode()
		want := volumehelper.CheckNodeAffinity(pv, node.Labels) == nil
		if got := newPVAffinity(pv).passes(node.Labels); got != want {
			t.Fatalf("case %d: PV affinity %+v, node labels %v: passes %v, CheckNodeAffinity says %v", i, pv.Spec.NodeAffinity, node.Labels, got, want)
		}
		if want {
			passes++
		} else {
			fails++
		}
	}
	if passes < 100 || fails < 100 {
		t.Fatalf("the random cases do not exercise both answers: %d pass, %d fail", passes, fails)
	}
}

// TestVolumeReadsUnchanged: what a pod's bound volumes resolved to holds
// while every claim and PV read is the same object; a claim or PV replaced
// (as an informer does on any change), added, deleted, or changed in place
// with a new resourceVersion, and the pod must be resolved again.
func TestVolumeReadsUnchanged(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cass-0"}, Spec: v1.PodSpec{Volumes: []v1.Volume{
		{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
		{Name: "logs", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "logs"}}},
	}}}
	claim := func(name, volume, rv string) *v1.PersistentVolumeClaim {
		return &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, ResourceVersion: rv, Annotations: map[string]string{volumehelper.AnnBindCompleted: "yes"}},
			Spec:       v1.PersistentVolumeClaimSpec{VolumeName: volume}}
	}
	pv := func(name, rv string) *v1.PersistentVolume {
		return &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv},
			Spec: v1.PersistentVolumeSpec{NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{"gone"}}}}}}}}}
	}
	type world struct {
		claims map[string]*v1.PersistentVolumeClaim
		pvs    map[string]*v1.PersistentVolume
	}
	lookup := func(w *world) VolumeLookup {
		return VolumeLookup{
			Claim: func(ns, name string) (*v1.PersistentVolumeClaim, bool) { c, ok := w.claims[ns+"/"+name]; return c, ok },
			PV:    func(name string) (*v1.PersistentVolume, bool) { p, ok := w.pvs[name]; return p, ok },
		}
	}
	base := func() *world {
		return &world{
			claims: map[string]*v1.PersistentVolumeClaim{"db/data": claim("data", "pv-data", "1")}, // logs: no claim yet
			pvs:    map[string]*v1.PersistentVolume{"pv-data": pv("pv-data", "1")},
		}
	}
	for name, change := range map[string]func(w *world){
		"claim replaced":         func(w *world) { w.claims["db/data"] = claim("data", "pv-data", "1") },
		"claim changed in place": func(w *world) { w.claims["db/data"].ResourceVersion = "2" },
		"claim deleted":          func(w *world) { delete(w.claims, "db/data") },
		"second claim created":   func(w *world) { w.claims["db/logs"] = claim("logs", "pv-logs", "1") },
		"PV replaced":            func(w *world) { w.pvs["pv-data"] = pv("pv-data", "2") },
		"PV changed in place":    func(w *world) { w.pvs["pv-data"].ResourceVersion = "2" },
		"PV deleted":             func(w *world) { delete(w.pvs, "pv-data") },
		"PV of the second created": func(w *world) {
			w.claims["db/logs"] = claim("logs", "pv-logs", "1")
			w.pvs["pv-logs"] = pv("pv-logs", "1")
		},
		"claim rebound to a new PV": func(w *world) {
			w.claims["db/data"] = claim("data", "pv-new", "2")
			w.pvs["pv-new"] = pv("pv-new", "1")
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := base()
			vols, key, reads := ResolveBoundVolumes(pod, lookup(w))
			if len(vols) != 1 || key == "" {
				t.Fatalf("resolved %v, key %q: want the data claim's PV", vols, key)
			}
			if !reads.Unchanged(pod, lookup(w)) {
				t.Fatal("nothing changed, and the reads do not hold")
			}
			change(w)
			if reads.Unchanged(pod, lookup(w)) {
				t.Fatal("the reads still hold")
			}
		})
	}
	t.Run("unrelated objects", func(t *testing.T) {
		w := base()
		_, _, reads := ResolveBoundVolumes(pod, lookup(w))
		w.claims["db/other"] = claim("other", "pv-other", "1")
		w.pvs["pv-other"] = pv("pv-other", "1")
		if !reads.Unchanged(pod, lookup(w)) {
			t.Fatal("a claim and a PV the pod does not use changed its reads")
		}
	})
	t.Run("another pod", func(t *testing.T) {
		w := base()
		_, _, reads := ResolveBoundVolumes(pod, lookup(w))
		other := pod.DeepCopy()
		other.Spec.Volumes = other.Spec.Volumes[:2]
		if reads.Unchanged(other, lookup(w)) {
			t.Fatal("the reads of a pod with two claims hold for one with one")
		}
	})
}

// randomSelector returns one to three random terms of up to two expressions
// each over keys, values and ops, a quarter of them with a metadata.name
// field requirement naming node.
func randomSelector(rng *rand.Rand, keys, values []string, ops []v1.NodeSelectorOperator, node string) *v1.NodeSelector {
	sel := &v1.NodeSelector{}
	for range rng.Intn(3) + 1 {
		var term v1.NodeSelectorTerm
		for range rng.Intn(3) {
			req := v1.NodeSelectorRequirement{Key: keys[rng.Intn(len(keys))], Operator: ops[rng.Intn(len(ops))]}
			for range rng.Intn(3) {
				req.Values = append(req.Values, values[rng.Intn(len(values))])
			}
			term.MatchExpressions = append(term.MatchExpressions, req)
		}
		if rng.Intn(4) == 0 {
			term.MatchFields = []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{node}}}
		}
		sel.NodeSelectorTerms = append(sel.NodeSelectorTerms, term)
	}
	return sel
}
