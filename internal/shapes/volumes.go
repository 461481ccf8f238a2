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
		read := readVolume(pod.Namespace, vol.PersistentVolumeClaim.ClaimName, l)
		reads = append(reads, read)
		if pv := read.pv; pv != nil && pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
			vols = append(vols, BoundVolume{Claim: read.claim.Name, PV: pv})
			key += pv.Name + "@" + pv.ResourceVersion + ";"
		}
	}
	return vols, key, reads
}

// VolumeReads are the claims and PVs ResolveBoundVolumes read for a pod,
// one per claim the pod names, in order.
type VolumeReads []volumeRead

// volumeRead is a claim as looked up (nil: not found) and, for a fully bound
// claim, its PV (nil: not found), each with the resourceVersion it had then.
type volumeRead struct {
	claim   *v1.PersistentVolumeClaim
	claimRV string
	pv      *v1.PersistentVolume
	pvRV    string
}

// readVolume looks up the claim named claim and, if it is fully bound, its PV.
func readVolume(namespace, claim string, l VolumeLookup) volumeRead {
	var read volumeRead
	pvc, ok := l.Claim(namespace, claim)
	if !ok {
		return read
	}
	read.claim, read.claimRV = pvc, pvc.ResourceVersion
	if !ClaimFullyBound(pvc) {
		return read
	}
	if pv, ok := l.PV(pvc.Spec.VolumeName); ok {
		read.pv, read.pvRV = pv, pv.ResourceVersion
	}
	return read
}

// Unchanged reports whether resolving pod's bound volumes with l now reads
// the very objects of reads, so that it returns what it returned then. An
// informer replaces an object on every change and never modifies one in
// place, so the same pointer is the same object (the resourceVersion read
// then is compared as well, for a lookup that modifies in place). This
// costs a lookup or two per claim, where resolving again builds the key
// anew, on every judge of every parked pod of a re-check.
func (reads VolumeReads) Unchanged(pod *v1.Pod, l VolumeLookup) bool {
	i := 0
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil {
			continue
		}
		if i == len(reads) || readVolume(pod.Namespace, vol.PersistentVolumeClaim.ClaimName, l) != reads[i] {
			return false
		}
		i++
	}
	return i == len(reads)
}
