package shapes

import (
	"math/rand"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	volumehelper "k8s.io/component-helpers/storage/volume"
)

// TestReview17VolumeCheckIsOldFormula: Requirements.Check's volume
// predicate (parsed once, original and translated) answers what the
// previous formula (CheckNodeAffinity on the PV, then on its CSI
// translation) answered, for in-tree EBS, GCE PD, local and CSI PVs with
// random terms: zone keys of both generations, metadata.name fields,
// empty terms, bad operators.
func TestReview17VolumeCheckIsOldFormula(t *testing.T) {
	rng := rand.New(rand.NewSource(1717))
	keys := []string{v1.LabelTopologyZone, v1.LabelFailureDomainBetaZone, v1.LabelHostname,
		"topology.ebs.csi.aws.com/zone", "topology.gke.io/zone", v1.LabelTopologyRegion}
	values := []string{"z1", "z2", "us-central1-a", "us-central1-a__us-central1-b", "r1"}
	ops := []v1.NodeSelectorOperator{v1.NodeSelectorOpIn, v1.NodeSelectorOpNotIn, v1.NodeSelectorOpExists, v1.NodeSelectorOpDoesNotExist, "Bogus"}
	randomPV := func() *v1.PersistentVolume {
		pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv", Labels: map[string]string{}}}
		switch rng.Intn(4) {
		case 0:
			pv.Spec.AWSElasticBlockStore = &v1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1"}
		case 1:
			pv.Spec.GCEPersistentDisk = &v1.GCEPersistentDiskVolumeSource{PDName: "pd"}
		case 2:
			pv.Spec.Local = &v1.LocalVolumeSource{Path: "/x"}
		case 3:
			pv.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}
		}
		if rng.Intn(3) == 0 {
			pv.Labels[keys[rng.Intn(2)]] = values[rng.Intn(len(values))]
		}
		sel := randomSelector(rng, keys, values, ops, "n")
		pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{Required: sel}
		return pv
	}
	randomNode := func() *v1.Node {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{}}}
		for _, k := range keys {
			if rng.Intn(2) == 0 {
				n.Labels[k] = values[rng.Intn(len(values))]
			}
		}
		n.Status.Allocatable = v1.ResourceList{v1.ResourcePods: resource.MustParse("110")}
		return n
	}
	opts := &Options{IdentityLabels: sets.New[string]()}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d"}}
	translatedCases, diffs := 0, 0
	for i := range 20000 {
		pv := randomPV()
		r := NewRequirements(pod, []BoundVolume{{Claim: "c", PV: pv}}, opts)
		tr := r.volumes[0].translated
		if tr != nil {
			translatedCases++
		}
		for range 3 {
			node := randomNode()
			oldFails := volumehelper.CheckNodeAffinity(pv, node.Labels) != nil &&
				(tr == nil || volumehelper.CheckNodeAffinity(tr, node.Labels) != nil)
			f := r.Check(node)
			newFails := f != nil && f.Reason == ReasonVolumeNodeAffinity
			if oldFails != newFails {
				diffs++
				t.Errorf("case %d: PV %+v translated %+v node %v: old fails %v, new fails %v", i, pv.Spec.NodeAffinity, tr, node.Labels, oldFails, newFails)
				if diffs > 3 {
					t.FailNow()
				}
			}
		}
	}
	if translatedCases < 1000 {
		t.Fatalf("only %d translated cases", translatedCases)
	}
}

// TestReview17MetadataNameTermMatchesEveryNode: a metadata.name term is not
// checked against a labels-only node, so a PV term of only that matches
// every node, in CheckNodeAffinity and in pvAffinity alike (review 17 found
// pvAffinity's doc comment saying the opposite).
func TestReview17MetadataNameTermMatchesEveryNode(t *testing.T) {
	pv := &v1.PersistentVolume{Spec: v1.PersistentVolumeSpec{NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{
		NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{"only-this"}}}}}}}}}
	labels := map[string]string{"any": "node"}
	if volumehelper.CheckNodeAffinity(pv, labels) != nil {
		t.Fatal("CheckNodeAffinity rejects")
	}
	if !newPVAffinity(pv).passes(labels) {
		t.Fatal("pvAffinity rejects")
	}
}
