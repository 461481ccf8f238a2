package balancer

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/asg"
	"github.com/ballast-k8s/ballast/internal/split"
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
	ReasonTerminationNotHeld     = "TerminationNotHeld"
	ReasonPublishedNodeTemplates = "PublishedNodeGroups"
	ReasonGroupNotManaged        = "GroupNotManaged"
	// ReasonSplitGroup: with --enforce=split, a split pass made steps, waits
	// for instances to detach, or finished (split.go).
	ReasonSplitGroup = "SplitGroup"
	// ReasonSplitBlocked: a split cannot go on: it failed, another splitter
	// holds its lock, or instances are stranded in it.
	ReasonSplitBlocked = "SplitBlocked"
)

func msgMultiZoneGroup(g *asg.Group) string {
	return fmt.Sprintf("Auto Scaling group %s spans zones %v; local volumes need one group per zone", g.Name, g.Zones)
}

func msgSplitSteps(g *asg.Group, steps int) string {
	return fmt.Sprintf("Split of Auto Scaling group %s (zones %v): %d steps made", g.Name, g.Zones, steps)
}

func msgSplitStranded(g *asg.Group, stranded []string) string {
	return fmt.Sprintf("Split of Auto Scaling group %s leaves instances in it, which AWS would not attach to a per-zone group; replace them to let the split finish: %s",
		g.Name, strings.Join(stranded, "; "))
}

func msgSplitLocked(g *asg.Group, err error) string {
	return fmt.Sprintf("Split of Auto Scaling group %s waits: %v", g.Name, err)
}

func msgSplitWarning(g *asg.Group, st split.Step) string {
	return fmt.Sprintf("Split of Auto Scaling group %s goes on without %s %s %s, which AWS refused: %s", g.Name, st.Target, st.Verb, st.Detail, st.Warning)
}

func msgSplitFailed(g *asg.Group, err error) string {
	return fmt.Sprintf("Split of Auto Scaling group %s did not finish: %v", g.Name, err)
}

func msgSplitDone(g *asg.Group) string {
	return fmt.Sprintf("Split of Auto Scaling group %s is done", g.Name)
}

func msgSplitWaiting(g *asg.Group, waiting []string) string {
	return fmt.Sprintf("Split of Auto Scaling group %s in progress: %s", g.Name, strings.Join(waiting, "; "))
}

func msgSuspendedAZRebalance(g *asg.Group) string {
	return fmt.Sprintf("Suspended AZRebalance on Auto Scaling group %s (zones %v); it was found resumed", g.Name, g.Zones)
}

func msgProtectionDeferred(id, group, state string) string {
	return fmt.Sprintf("Holds bound local volumes, but instance %s of group %s is %s, in which AWS refuses scale-in protection (only InService, EnteringStandby and Standby); retried every loop",
		id, group, state)
}

func msgGroupNotManaged(g *asg.Group, key, got, want string) string {
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

// Messages of the nodes, volumes and claims (protect.go, orphans.go).

func msgProtected(vols []string) string {
	return fmt.Sprintf("Protected from scale-down: holds bound local volumes %s", strings.Join(vols, ", "))
}

func msgUnmappedNode(err error) string {
	return fmt.Sprintf("Holds bound local volumes but cannot be mapped to an instance: %v", err)
}

// msgUnprotected goes with ReasonUnprotected.
const msgUnprotected = "Local volumes released: scale-down allowed again"

func msgTerminationReleased(id string) string {
	return fmt.Sprintf("Holds no bound local volume: let the termination of %s proceed", id)
}

func msgTerminationNotHeld(id, group string) string {
	return fmt.Sprintf("AWS is terminating instance %s of group %s, but the balancer's hook no longer holds it (No active Lifecycle Action: its heartbeat timeout passed, or the termination started before the hook was on the group): it terminates once the group's other hooks let it go, with its bound local volumes",
		id, group)
}

func msgTerminationHeld(id, group string, vols []string, limit string) string {
	return fmt.Sprintf("AWS is terminating instance %s of group %s; held while local volumes %s are bound (at most %s)",
		id, group, strings.Join(vols, ", "), limit)
}

func msgTerminationHeldNodeGone(id, group, volume, limit string) string {
	return fmt.Sprintf("AWS is terminating instance %s of group %s, whose node is gone; held while volume %s, which records it, is bound (at most %s)",
		id, group, volume, limit)
}

func msgVolumeNodeReplacedKept(volume, was, node, now string) string {
	return fmt.Sprintf("Volume %s records instance %s, which holds its data and may still exist, but its node %s now runs instance %s: the record is kept while %s exists",
		volume, was, node, now, was)
}

func msgVolumeNodeReplaced(volume, was, node, now string) string {
	return fmt.Sprintf("Volume %s recorded instance %s, but its node %s now runs instance %s: the local data was on %s, which is gone",
		volume, was, node, now, was)
}

func msgOrphanedNode(vols []string, id, state string) string {
	return fmt.Sprintf("Holds bound local volumes %s but instance %s is %s", strings.Join(vols, ", "), id, state)
}

func msgInstanceNotInGroup(id, state string) string {
	return fmt.Sprintf("Holds bound local volumes but instance %s (%s) is in no Auto Scaling group the balancer manages; only the annotation protects it", id, state)
}

func msgInvalidReleaseDelay(invalid string) string {
	return fmt.Sprintf("Annotation %s: %s; orphaned volumes of this class are reported, never released", AnnotationReleaseOrphansAfter, invalid)
}

func msgClaimWithoutUID(volume, claim string) string {
	return fmt.Sprintf("Volume %s: its claim reference %s carries no UID, so the claim cannot be deleted safely", volume, claim)
}

func msgClaimRecreated(volume, claim string, uid, bound types.UID) string {
	return fmt.Sprintf("Volume %s: claim %s was recreated (uid %s, the volume is bound to uid %s); not deleted", volume, claim, uid, bound)
}

func msgClaimNotDeleted(volume, claim, reason string) string {
	return fmt.Sprintf("Volume %s: claim %s not deleted: %s", volume, claim, reason)
}

func msgClaimChanged(volume, claim string, bound types.UID) string {
	return fmt.Sprintf("Volume %s: claim %s changed before it could be deleted (the volume is bound to uid %s); not deleted", volume, claim, bound)
}

func msgOrphanUnrecorded(o *orphan) string {
	return fmt.Sprintf("Volume %s, bound to claim %s, is pinned to nodes %v that no longer exist; no instance was recorded for them while they did, so the volume is never released",
		o.pv.Name, o.claim(), o.hosts)
}

func msgOrphanNotInstanceID(o *orphan) string {
	return fmt.Sprintf("Volume %s, bound to claim %s, is pinned to nodes %v that no longer exist; its annotation %s=%q is not an instance ID, so the volume is never released",
		o.pv.Name, o.claim(), o.hosts, AnnotationInstanceID, o.instance)
}

func msgOrphanInstanceIsNode(o *orphan, node string) string {
	return fmt.Sprintf("Volume %s, bound to claim %s, is pinned to nodes %v that no longer exist, but its instance %s is node %s: not released",
		o.pv.Name, o.claim(), o.hosts, o.instance, node)
}

func msgOrphanMayComeBack(o *orphan, state string) string {
	return fmt.Sprintf("Volume %s, bound to claim %s, is pinned to nodes %v that no longer exist, but instance %s is %s: not released while it may come back",
		o.pv.Name, o.claim(), o.hosts, o.instance, state)
}

func msgOrphaned(o *orphan, state string) string {
	return fmt.Sprintf("Volume %s, bound to claim %s, is orphaned: its nodes %v no longer exist and instance %s is %s", o.pv.Name, o.claim(), o.hosts, o.instance, state)
}

func msgOrphanNotOptedIn(what, class string) string {
	return fmt.Sprintf("%s; not released: StorageClass %q has no %s annotation", what, class, AnnotationReleaseOrphansAfter)
}

func msgOrphanInvalidPolicy(what, class, invalid string) string {
	return fmt.Sprintf("%s; not released: StorageClass %q has an invalid %s: %s", what, class, AnnotationReleaseOrphansAfter, invalid)
}

func msgOrphanReleaseDue(what string, due time.Time, class string, delay time.Duration) string {
	return fmt.Sprintf("%s; its claim will be deleted after %s (StorageClass %q releases orphans after %s)",
		what, due.Format(time.RFC3339), class, delay)
}

func msgOrphanReleased(o *orphan, uid types.UID) string {
	return fmt.Sprintf("Deleted claim %s (uid %s) of volume %s: its nodes %v and instance %s are gone since %s, over the %s its StorageClass allows; its StatefulSet recreates the claim on a live node",
		o.claim(), uid, o.pv.Name, o.hosts, o.instance, o.since.Format(time.RFC3339), o.delay)
}

// Messages of the node-group templates (templates.go).

func msgInstanceTypeUnknown(group string, err error) string {
	return fmt.Sprintf("Cannot tell the instance type of group %s: %v", group, err)
}

func msgInstanceTypesNotDescribed(types []string, err error) string {
	return fmt.Sprintf("Cannot describe instance types %v: %v", types, err)
}

func msgNoTemplate(group, why string) string {
	return fmt.Sprintf("No template for group %s: %s", group, why)
}

func msgMalformedTag(group, key, value, why string) string {
	return fmt.Sprintf("Group %s: skipped tag %s=%q: %s", group, key, value, why)
}

func msgPublished(groups int) string {
	return fmt.Sprintf("Published %d node groups", groups)
}

// EKS managed node groups (templates_eks.go).
const (
	// ReasonMalformedEKSNodegroup: DescribeNodegroup returned a label, taint
	// or resource tag that is not valid in Kubernetes; it is skipped.
	ReasonMalformedEKSNodegroup = "MalformedEKSNodegroup"
)

func msgMalformedEKS(group, what, why string) string {
	return fmt.Sprintf("Group %s: skipped the EKS node group's %s: %s", group, what, why)
}

func msgEKSNodegroupNotFound(group, cluster, nodegroup string) string {
	return fmt.Sprintf("Group %s: its eks: tags name node group %s of cluster %s, which EKS does not know; its template has no EKS labels or taints, "+
		"as cluster-autoscaler's (check the tags if it is a managed node group)", group, nodegroup, cluster)
}

func msgEKSFailed(err error) string {
	return fmt.Sprintf("it is an EKS managed node group and EKS DescribeNodegroup failed (%v); its labels and taints are unknown, "+
		"so no node-group list is published until it succeeds (the scheduler plugin fails open meanwhile)", err)
}
