package balancer

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/aws"
)

// Event reasons.
const (
	ReasonMultiZoneGroup         = "MultiZoneGroup"
	ReasonSuspendedAZRebalance   = "SuspendedAZRebalance"
	ReasonMalformedTag           = "MalformedNodeTemplateTag"
	ReasonTemplateIncomplete     = "NodeGroupTemplateIncomplete"
	ReasonProtected              = "LocalVolumeProtected"
	ReasonProtectionDeferred     = "LocalVolumeProtectionDeferred"
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
	ReasonGroupNotManaged        = "GroupNotManaged"
	// ReasonSplitGroup: with --enforce=split, a split pass made steps, waits
	// for instances to detach, or finished (split.go).
	ReasonSplitGroup = "SplitGroup"
	// ReasonSplitBlocked: a split cannot go on: it failed, another splitter
	// holds its lock, or instances are stranded in it.
	ReasonSplitBlocked = "SplitBlocked"
)

func msgMultiZoneGroup(g *aws.Group) string {
	return fmt.Sprintf("Auto Scaling group %s spans zones %v; local volumes need one group per zone", g.Name, g.Zones)
}

func msgSplitSteps(g *aws.Group, steps int) string {
	return fmt.Sprintf("Split of Auto Scaling group %s (zones %v): %d steps made", g.Name, g.Zones, steps)
}

func msgSplitStranded(g *aws.Group, stranded []string) string {
	return fmt.Sprintf("Split of Auto Scaling group %s leaves instances in it, which AWS would not attach to a per-zone group; replace them to let the split finish: %s",
		g.Name, strings.Join(stranded, "; "))
}

func msgSplitLocked(g *aws.Group, err error) string {
	return fmt.Sprintf("Split of Auto Scaling group %s waits: %v", g.Name, err)
}

func msgSplitFailed(g *aws.Group, err error) string {
	return fmt.Sprintf("Split of Auto Scaling group %s did not finish: %v", g.Name, err)
}

func msgSplitDone(g *aws.Group) string {
	return fmt.Sprintf("Split of Auto Scaling group %s is done", g.Name)
}

func msgSplitWaiting(g *aws.Group, waiting []string) string {
	return fmt.Sprintf("Split of Auto Scaling group %s in progress: %s", g.Name, strings.Join(waiting, "; "))
}

func msgSuspendedAZRebalance(g *aws.Group) string {
	return fmt.Sprintf("Suspended AZRebalance on Auto Scaling group %s (zones %v); it was found resumed", g.Name, g.Zones)
}

func msgProtectionDeferred(id, group, state string) string {
	return fmt.Sprintf("Holds bound local volumes, but instance %s of group %s is %s, in which AWS refuses scale-in protection (only InService, EnteringStandby and Standby); retried every loop",
		id, group, state)
}

func msgGroupNotManaged(g *aws.Group, key, got, want string) string {
	return fmt.Sprintf("Auto Scaling group %s carries the auto-discovery tag %s=%q, not %q: cluster-autoscaler may scale it (it matches tag keys only), but the balancer does not manage it, since its IAM policy allows changes only where the value is %q",
		g.Name, key, got, want, want)
}

// warnings collects the group-level findings of one loop. They are emitted as
// events on the ConfigMap, the balancer's own object, since groups are not
// Kubernetes objects; each distinct finding once per process.
type warnings struct{ items []finding }

type finding struct {
	typ, reason, msg string
	always           bool // emitted every time it is found, not once per process
}

func (w *warnings) warn(reason, format string, args ...any) {
	w.items = append(w.items, finding{typ: v1.EventTypeWarning, reason: reason, msg: fmt.Sprintf(format, args...)})
}

func (w *warnings) normal(reason, format string, args ...any) {
	w.items = append(w.items, finding{typ: v1.EventTypeNormal, reason: reason, msg: fmt.Sprintf(format, args...)})
}

// always records a finding that is emitted every loop it is found.
func (w *warnings) always(typ, reason, msg string) {
	w.items = append(w.items, finding{typ: typ, reason: reason, msg: msg, always: true})
}

func (b *Balancer) emit(ctx context.Context, w *warnings) {
	logger := klog.FromContext(ctx)
	ref := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: b.opts.ConfigMapNamespace, Name: b.opts.ConfigMapName}}
	for _, f := range w.items {
		key := f.reason + "\x00" + f.msg
		if b.warned[key] && !f.always {
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
