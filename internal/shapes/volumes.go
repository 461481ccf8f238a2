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
// binder's business and constrains nothing here. reads is what it read, for
// VolumeReads.Unchanged.
func ResolveBoundVolumes(pod *v1.Pod, l VolumeLookup) (vols []BoundVolume, key string, reads VolumeReads) {
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil {
			continue
		}
		pvc, ok := l.Claim(pod.Namespace, vol.PersistentVolumeClaim.ClaimName)
		if !ok {
			pvc = nil
		}
		read := volumeRead{claim: pvc, claimRV: resourceVersion(pvc)}
		if pvc == nil || !ClaimFullyBound(pvc) {
			reads = append(reads, read)
			continue
		}
		pv, ok := l.PV(pvc.Spec.VolumeName)
		if ok {
			read.pv, read.pvRV = pv, pv.ResourceVersion
		}
		reads = append(reads, read)
		if !ok || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
			continue
		}
		vols = append(vols, BoundVolume{Claim: pvc.Name, PV: pv})
		key += pv.Name + "@" + pv.ResourceVersion + ";"
	}
	return vols, key, reads
}

// VolumeReads are the claims and PVs ResolveBoundVolumes read for a pod,
// in the order it read them (nil: not found).
type VolumeReads []volumeRead

type volumeRead struct {
	claim   *v1.PersistentVolumeClaim
	claimRV string
	pv      *v1.PersistentVolume
	pvRV    string
}

// Unchanged reports whether resolving pod's bound volumes with l now reads
// the very objects of reads, so that it returns what it returned then. An
// informer replaces an object on every change and never modifies one in
// place, so the same pointer is the same object (the resourceVersion read
// then is compared as well, for a lookup that modifies in place); this costs two map lookups per claim where resolving again
// builds the key anew, on every judge of every parked pod of a re-check.
func (reads VolumeReads) Unchanged(pod *v1.Pod, l VolumeLookup) bool {
	i := 0
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil {
			continue
		}
		if i >= len(reads) {
			return false
		}
		read := reads[i]
		i++
		pvc, ok := l.Claim(pod.Namespace, vol.PersistentVolumeClaim.ClaimName)
		if !ok {
			pvc = nil
		}
		if pvc != read.claim || resourceVersion(pvc) != read.claimRV {
			return false
		}
		if pvc == nil || !ClaimFullyBound(pvc) {
			continue
		}
		pv, ok := l.PV(pvc.Spec.VolumeName)
		if !ok {
			pv = nil
		}
		if pv != read.pv || resourceVersion(pv) != read.pvRV {
			return false
		}
	}
	return i == len(reads)
}

// resourceVersion is o's, "" for nil.
func resourceVersion[T interface {
	*v1.PersistentVolumeClaim | *v1.PersistentVolume
	GetResourceVersion() string
}](o T) string {
	if o == nil {
		return ""
	}
	return o.GetResourceVersion()
}
