package hopeless

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReview17PVFixedOrClaimUnboundReleases: through the real informers and
// listers, a pod parked for its local PV's node affinity is released when
// the PV's affinity is fixed in place (same name, updated), or when its
// claim loses bind-completed (updated in place), or the claim is rebound.
// (The fake clientset does not bump
// resourceVersion; an update that keeps it is not released, here and on the
// base commit alike, since verdicts are keyed by PV name@resourceVersion: an
// artifact of the fake, not of the change under review.)
func TestReview17PVFixedOrClaimUnboundReleases(t *testing.T) {
	for name, change := range map[string]func(t *testing.T, f *testPlugin, pvc *v1.PersistentVolumeClaim) error{
		"PV affinity fixed, resourceVersion bumped": func(t *testing.T, f *testPlugin, _ *v1.PersistentVolumeClaim) error {
			pv, err := f.client.CoreV1().PersistentVolumes().Get(f.ctx, "pv-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			pv.ResourceVersion = "2"
			pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values = []string{"n1"}
			_, err = f.client.CoreV1().PersistentVolumes().Update(f.ctx, pv, metav1.UpdateOptions{})
			return err
		},
		// VolumeBinding reads a bound claim's PV by the claim's volumeName,
		// whatever the PV's claimRef: the pods are found by the old one.
		"PV affinity fixed and claimRef cleared in one update": func(t *testing.T, f *testPlugin, _ *v1.PersistentVolumeClaim) error {
			pv, err := f.client.CoreV1().PersistentVolumes().Get(f.ctx, "pv-0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			pv.ResourceVersion = "2"
			pv.Spec.ClaimRef = nil
			pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values = []string{"n1"}
			_, err = f.client.CoreV1().PersistentVolumes().Update(f.ctx, pv, metav1.UpdateOptions{})
			return err
		},
		"claim bind-completed dropped": func(t *testing.T, f *testPlugin, pvc *v1.PersistentVolumeClaim) error {
			u := pvc.DeepCopy()
			u.Annotations = nil
			_, err := f.client.CoreV1().PersistentVolumeClaims("default").Update(f.ctx, u, metav1.UpdateOptions{})
			return err
		},
		"claim rebound to a PV on n1": func(t *testing.T, f *testPlugin, pvc *v1.PersistentVolumeClaim) error {
			u := pvc.DeepCopy()
			u.Spec.VolumeName = "pv-ok"
			_, err := f.client.CoreV1().PersistentVolumeClaims("default").Update(f.ctx, u, metav1.UpdateOptions{})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			pvc := &v1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-db-0", Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
				Spec:       v1.PersistentVolumeClaimSpec{VolumeName: "pv-0"},
				Status:     v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound},
			}
			f := newTestPlugin(t, "", makeNode("n1").Obj(), localPV("pv-0", "data-db-0", "gone-node"), localPV("pv-ok", "data-db-0", "n1"), pvc)
			activator := &recordingActivator{}
			f.setActivator(activator)
			pod := podWithClaim("db-0", "data-db-0")
			f.parkViaPreEnqueue(t, pod)
			if !f.parked(pod) {
				t.Fatal("not parked")
			}
			if err := change(t, f, pvc); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the pod released", func() bool { return !f.parked(pod) && activator.has("default/db-0") })
		})
	}
}
