package hopeless

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestReview10cClaimDeletedRereports (low: a stale reason, not a false
// park): a pod is parked because the local PV of its claim pins it to a node
// that is gone. The claim is deleted (the pvc-protection controller does not
// hold a claim for a pod that is not scheduled, pkg/controller/volume/
// pvcprotection podUsesPVC). From then on the real v1.37.2 VolumeBinding
// rejects the pod because the claim is missing (volume_binding.go PreFilter:
// persistentvolumeclaim "data-db-0" not found), and Ballast's own verdict
// of the pod is no longer hopeless (shapes.ResolveBoundVolumes: a missing
// claim constrains nothing). Issue 10: "When a parked pod's reason changes,
// its condition says the current reason within seconds." Ballast handles
// only adds and updates of claims (informers.go onAddOrUpdate(claimChanged));
// a deleted claim reaches nobody, so the pod stays parked and its condition
// keeps saying that PV pv-0 requires the gone node until the queue's
// 5-minute flush. (A StatefulSet's controller recreates the missing claim of
// a pending pod, whose Add then releases it; a pod of any other owner waits.)
func TestReview10cClaimDeletedRereports(t *testing.T) {
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-0"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("10Gi")},
			PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: "/mnt/disks/ssd0"}},
			ClaimRef:               &v1.ObjectReference{Namespace: "default", Name: "data-db-0"},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{"gone-node"}}},
			}}}},
		},
		Status: v1.PersistentVolumeStatus{Phase: v1.VolumeBound},
	}
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-db-0", Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec:       v1.PersistentVolumeClaimSpec{VolumeName: "pv-0"},
		Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
	}
	f := newTestPlugin(t, "", makeNode("n1").Obj(), pv, pvc)
	pod := podWithClaim("db-0", "data-db-0")
	f.parkViaPreEnqueue(t, pod)
	waitFor(t, 5*time.Second, "the parked pod's condition names pv-0", func() bool {
		c := f.podCondition("db-0")
		return c != nil && strings.Contains(c.Message, "pv-0")
	})
	if err := f.client.CoreV1().PersistentVolumeClaims("default").Delete(f.ctx, "data-db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lister := f.handle.SharedInformerFactory().Core().V1().PersistentVolumeClaims().Lister()
	waitFor(t, 5*time.Second, "the claim's delete reached the plugin's informer", func() bool {
		_, err := lister.PersistentVolumeClaims("default").Get("data-db-0")
		return err != nil
	})
	if v, _, ok := f.plugin.verdicts.judge(pod); ok && v.Hopeless {
		t.Fatalf("setup: the plugin's verdict after the delete is still hopeless (%s); the defect is about a verdict that changed", v.Message)
	}
	current := func(context.Context) (bool, error) {
		p, ok := f.plugin.parking.lot.get(pod.UID)
		return !ok || !strings.Contains(p.message, "pv-0"), nil
	}
	if err := wait.PollUntilContextTimeout(f.ctx, 10*time.Millisecond, 5*time.Second, true, current); err == nil {
		return
	}
	msg := ""
	if c := f.podCondition("db-0"); c != nil {
		msg = c.Message
	}
	t.Errorf("5 s after claim data-db-0 was deleted the pod is still parked for its PV: condition %q; "+
		"its verdict is no longer hopeless (the missing claim is VolumeBinding's reason now)", msg)
}
