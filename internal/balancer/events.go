package balancer

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// Event reasons.
const (
	ReasonMultiZoneGroup         = "MultiZoneGroup"
	ReasonSuspendedAZRebalance   = "SuspendedAZRebalance"
	ReasonMalformedTag           = "MalformedNodeTemplateTag"
	ReasonTemplateIncomplete     = "NodeGroupTemplateIncomplete"
	ReasonProtected              = "LocalVolumeProtected"
	ReasonUnprotected            = "LocalVolumeProtectionRemoved"
	ReasonUnmappedNode           = "NodeNotMappedToInstance"
	ReasonInstanceNotInGroup     = "InstanceNotInManagedGroup"
	ReasonOrphanedVolume         = "OrphanedLocalVolume"
	ReasonOrphanReleased         = "OrphanedLocalVolumeReleased"
	ReasonOrphanNotReleased      = "OrphanedLocalVolumeNotReleased"
	ReasonInvalidReleaseDelay    = "InvalidReleaseOrphansAfter"
	ReasonVolumeNodeReplaced     = "LocalVolumeNodeReplaced"
	ReasonTerminationHeld        = "TerminationHeld"
	ReasonTerminationReleased    = "TerminationReleased"
	ReasonPublishedNodeTemplates = "PublishedNodeGroups"
)

// warnings collects the group-level findings of one loop. They are emitted as
// events on the ConfigMap, the balancer's own object, since groups are not
// Kubernetes objects; each distinct finding once per process.
type warnings struct{ items []finding }

type finding struct{ typ, reason, msg string }

func (w *warnings) warn(reason, format string, args ...any) {
	w.items = append(w.items, finding{v1.EventTypeWarning, reason, fmt.Sprintf(format, args...)})
}

func (w *warnings) normal(reason, format string, args ...any) {
	w.items = append(w.items, finding{v1.EventTypeNormal, reason, fmt.Sprintf(format, args...)})
}

func (b *Balancer) emit(ctx context.Context, w *warnings) {
	logger := klog.FromContext(ctx)
	ref := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: b.opts.ConfigMapNamespace, Name: b.opts.ConfigMapName}}
	for _, f := range w.items {
		key := f.reason + "\x00" + f.msg
		if b.warned[key] {
			continue
		}
		b.warned[key] = true
		if f.reason == ReasonMalformedTag {
			b.metrics.malformedTags.Inc()
		}
		if f.typ == v1.EventTypeWarning {
			logger.Info("Warning: "+f.msg, "reason", f.reason)
		} else {
			logger.V(2).Info(f.msg, "reason", f.reason)
		}
		b.recorder.Event(ref, f.typ, f.reason, f.msg)
	}
}
