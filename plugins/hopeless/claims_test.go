package hopeless

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// localPV is a bound local PV of claim default/claim pinned to node.
func localPV(name, claim, node string) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			ClaimRef:               &v1.ObjectReference{Namespace: "default", Name: claim},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{node}}},
			}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
}

// TestClaimUpdateRereportsStillHopeless: a claim update that leaves its
// parked pod hopeless for another reason (the claim now names another PV,
// pinned to another gone node) re-reports the pod with the new reason at
// once, as a recheck does (issue 10: "When a parked pod's reason changes,
// its condition says the current reason within seconds"), instead of
// keeping the old PV in its condition until the queue's flush.
func TestClaimUpdateRereportsStillHopeless(t *testing.T) {
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-db-0", Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: "pv-0"},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
	f := newTestPlugin(t, "", makeNode("n1").Obj(), localPV("pv-0", "data-db-0", "gone-node"), localPV("pv-1", "data-db-0", "other-gone-node"), pvc)
	pod := podWithClaim("db-0", "data-db-0")
	f.parkViaPreEnqueue(t, pod)
	waitFor(t, 5*time.Second, "the parked pod's condition names pv-0", func() bool {
		c := f.podCondition("db-0")
		return c != nil && strings.Contains(c.Message, "pv-0")
	})
	updated := pvc.DeepCopy()
	updated.Spec.VolumeName = "pv-1"
	if _, err := f.client.CoreV1().PersistentVolumeClaims("default").Update(f.ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the parked pod's condition names pv-1", func() bool {
		c := f.podCondition("db-0")
		return c != nil && strings.Contains(c.Message, "pv-1")
	})
	if p, ok := f.plugin.parking.lot.get(pod.UID); !ok || !strings.Contains(p.message, "pv-1") {
		t.Errorf("the pod's parked verdict is %q (parked %v), want the pv-1 reason", p.message, ok)
	}
}
