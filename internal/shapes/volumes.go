package shapes

import (
	v1 "k8s.io/api/core/v1"
)

// VolumeLookup finds claims and volumes (listers in the plugin, maps in tests).
type VolumeLookup struct {
	Claim func(namespace, name string) (*v1.PersistentVolumeClaim, bool)
	PV    func(name string) (*v1.PersistentVolume, bool)
}

// ResolveBoundVolumes returns the PVs of pod's fully bound claims that carry
// required node affinity, and a key that changes when any of them does. Only
// a fully bound claim is a static fact, exactly as VolumeBinding decides; a
// missing, unbound or half-bound claim, or one whose PV is missing, is the
// binder's business and constrains nothing here.
func ResolveBoundVolumes(pod *v1.Pod, l VolumeLookup) ([]BoundVolume, string) {
	var vols []BoundVolume
	key := ""
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil {
			continue
		}
		pvc, ok := l.Claim(pod.Namespace, vol.PersistentVolumeClaim.ClaimName)
		if !ok || !ClaimFullyBound(pvc) {
			continue
		}
		pv, ok := l.PV(pvc.Spec.VolumeName)
		if !ok || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
			continue
		}
		vols = append(vols, BoundVolume{Claim: pvc.Name, PV: pv})
		key += pv.Name + "@" + pv.ResourceVersion + ";"
	}
	return vols, key
}
