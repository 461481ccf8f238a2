package balancer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/smithy-go"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/asg"
)

// lifecycleState is what the hook and lifecycle steps keep between loops.
type lifecycleState struct {
	hooks     map[string]time.Time // groups known to carry our hook, when last checked
	completed map[string]bool      // instances whose lifecycle action we let go
}

// protect makes every node that holds a bound local volume safe from
// cluster-autoscaler (annotation) and from the group's scale-in (instance
// protection), and removes what it set once the volumes are released.
//
// Ownership is recorded on the node before the instance is protected and
// cleared after it is unprotected, so a failure in between is repaired by the
// next loop and protection set by anyone else is never removed.
//
// Only instances in a state AWS accepts are put in a SetInstanceProtection
// call, since one other fails the whole call; the rest are reported and
// retried by the next loops. Nothing is released on the loop's list alone:
// the release is confirmed by a quorum read first.
func (b *Balancer) protect(ctx context.Context, inv *inventory) error {
	logger := klog.FromContext(ctx)
	var errs []error
	protect, unprotect := map[string][]string{}, map[string][]string{} // group -> instance ids
	unprotectNodes := map[string]*v1.Node{}                            // instance id -> node
	held := 0
	for _, n := range inv.nodes {
		id := inv.instOf[n.Name]
		ref, inGroup := inv.instances[id]
		ownsAnno := n.Annotations[AnnotationProtectedBy] == Source
		ownsScaleIn := n.Annotations[AnnotationScaleInProtectedBy] == Source
		if vols := inv.held[n.Name]; len(vols) > 0 {
			held++
			patch := map[string]any{}
			if n.Annotations[AnnotationScaleDownDisabled] != "true" {
				patch[AnnotationScaleDownDisabled], patch[AnnotationProtectedBy] = "true", Source
			}
			needsProtection := inGroup && !ref.inst.ProtectedFromScaleIn
			if needsProtection && !protectable(ref.inst.LifecycleState) {
				needsProtection = false
				b.warnNode(n, ReasonProtectionDeferred, "%s", msgProtectionDeferred(id, ref.group.Name, ref.inst.LifecycleState))
			}
			if needsProtection && !ownsScaleIn {
				patch[AnnotationScaleInProtectedBy] = Source
			}
			if len(patch) > 0 {
				if err := b.patchAnnotations(ctx, n.Name, patch); err != nil {
					errs = append(errs, err)
					continue // without recorded ownership, do not touch the instance
				}
				b.recorder.Eventf(n, v1.EventTypeNormal, ReasonProtected, "%s", msgProtected(vols))
			}
			switch {
			case needsProtection:
				protect[ref.group.Name] = append(protect[ref.group.Name], id)
			case id == "":
				if err := inv.badIDs[n.Name]; err != nil {
					b.warnNode(n, ReasonUnmappedNode, "%s", msgUnmappedNode(err))
				}
			}
			continue
		}
		if !ownsAnno && !ownsScaleIn {
			continue
		}
		if still, err := b.stillHeld(ctx, inv, n.Name); err != nil || still {
			errs = append(errs, err)
			continue
		}
		if ownsAnno {
			patch := map[string]any{AnnotationProtectedBy: nil}
			if n.Annotations[AnnotationScaleDownDisabled] == "true" {
				patch[AnnotationScaleDownDisabled] = nil
			}
			if err := b.patchAnnotations(ctx, n.Name, patch); err != nil {
				errs = append(errs, err)
			} else {
				b.recorder.Event(n, v1.EventTypeNormal, ReasonUnprotected, msgUnprotected)
			}
		}
		if ownsScaleIn {
			if inGroup && ref.inst.ProtectedFromScaleIn && !protectable(ref.inst.LifecycleState) {
				continue // AWS refuses it in this state; the next loops retry
			}
			if inGroup && ref.inst.ProtectedFromScaleIn {
				unprotect[ref.group.Name] = append(unprotect[ref.group.Name], id)
				unprotectNodes[id] = n
			} else if err := b.patchAnnotations(ctx, n.Name, map[string]any{AnnotationScaleInProtectedBy: nil}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	b.metrics.protectedNodes.Set(float64(held))

	for _, g := range sortedKeys(protect) {
		if err := b.cloud.SetInstanceProtection(ctx, g, protect[g], true); err != nil {
			errs = append(errs, fmt.Errorf("protecting %d instances of %s: %w", len(protect[g]), g, err))
			continue
		}
		logger.Info("Set scale-in protection", "group", g, "instances", len(protect[g]))
	}
	for _, g := range sortedKeys(unprotect) {
		if err := b.cloud.SetInstanceProtection(ctx, g, unprotect[g], false); err != nil {
			errs = append(errs, fmt.Errorf("removing scale-in protection of %d instances of %s: %w", len(unprotect[g]), g, err))
			continue
		}
		logger.Info("Removed scale-in protection", "group", g, "instances", len(unprotect[g]))
		for _, id := range unprotect[g] {
			if err := b.patchAnnotations(ctx, unprotectNodes[id].Name, map[string]any{AnnotationScaleInProtectedBy: nil}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ensureHooks puts a termination hook on every group that holds a volume, so
// that whatever AWS terminates there (rebalancing, health replacement, a
// human) waits, and on every group being split, whose hooks the split copies
// to its per-zone groups.
func (b *Balancer) ensureHooks(ctx context.Context, inv *inventory) error {
	var errs []error
	for _, g := range inv.groups {
		if heldIn(inv, &g) || splitting(&g) {
			errs = append(errs, b.ensureHook(ctx, g.Name))
		}
	}
	return errors.Join(errs...)
}

// protectable reports whether AWS accepts SetInstanceProtection for an
// instance in this lifecycle state; one in any other state fails the whole call.
func protectable(state string) bool {
	switch state {
	case asg.StateInService, asg.StateEnteringStandby, asg.StateStandby:
		return true
	}
	return false
}

// stillHeld reads the node's volumes again past the watch cache, before
// anything is removed from it: a stale list alone releases nothing.
func (b *Balancer) stillHeld(ctx context.Context, inv *inventory, node string) (bool, error) {
	fresh, err := b.confirmed(ctx, inv)
	if err != nil {
		return true, err
	}
	if vols := fresh.held[node]; len(vols) > 0 {
		klog.FromContext(ctx).V(2).Info("Not releasing a node the loop's list showed free: a quorum read shows bound local volumes", "node", node, "volumes", vols)
		return true, nil
	}
	return false, nil
}

func heldIn(inv *inventory, g *asg.Group) bool {
	for _, i := range g.Instances {
		if n := inv.nodeOf[i.ID]; n != nil && len(inv.held[n.Name]) > 0 {
			return true
		}
	}
	return false
}

// ensureHook puts the balancer's termination hook on a group unless it was
// seen there within HookResync.
func (b *Balancer) ensureHook(ctx context.Context, group string) error {
	if at, ok := b.lifecycle.hooks[group]; ok && b.clock.Since(at) < b.opts.HookResync {
		return nil
	}
	hooks, err := b.cloud.DescribeLifecycleHooks(ctx, group)
	if err != nil {
		return fmt.Errorf("describing lifecycle hooks of %s: %w", group, err)
	}
	want := b.hook(group)
	if i := slices.IndexFunc(hooks, func(h asg.Hook) bool { return h.Name == HookName }); i < 0 ||
		hooks[i].HeartbeatTimeout != want.HeartbeatTimeout || hooks[i].Transition != want.Transition {
		if err := b.cloud.PutLifecycleHook(ctx, want); err != nil {
			return fmt.Errorf("putting lifecycle hook on %s: %w", group, err)
		}
		klog.FromContext(ctx).Info("Put termination lifecycle hook", "group", group, "hook", HookName, "heartbeatTimeout", b.opts.HeartbeatTimeout)
	}
	b.lifecycle.hooks[group] = b.clock.Now()
	return nil
}

func (b *Balancer) hook(group string) asg.Hook {
	return OwnHook(group, b.opts.HeartbeatTimeout)
}

// OwnHook is the balancer's termination hook on group with heartbeatTimeout
// (--lifecycle-heartbeat-timeout): what ensureHook puts on a group that holds
// volumes, and what a split gives the per-zone groups (split.Options.Hook),
// the loop's and `az-balancer split`'s alike.
func OwnHook(group string, heartbeatTimeout time.Duration) asg.Hook {
	return asg.Hook{
		Group: group, Name: HookName, Transition: asg.TransitionTerminating,
		HeartbeatTimeout: int32(heartbeatTimeout.Seconds()), DefaultResult: asg.ResultContinue,
	}
}

// lifecycleActions heartbeats the held terminations of instances that hold
// bound local volumes (on their node, or recorded on a volume whose node is
// gone), and lets the others go at once so that the hook does not slow down
// cluster-autoscaler's own scale-down. An instance is let go only when a
// quorum read agrees it holds nothing; one whose node is unknown even to the
// quorum read and that no volume records is left to the hook's timeout:
// nothing is released on a guess. The hook's default result is CONTINUE, so
// an error never drops an instance from the held set: when the group's hooks
// cannot be described (after a restart) or the quorum read fails, what may
// hold is held and heartbeated. AWS still terminates after the global timeout
// (48h or 100 heartbeat timeouts); the TerminationHeld event says so.
func (b *Balancer) lifecycleActions(ctx context.Context, inv *inventory) error {
	var errs []error
	holding := map[heldInstance]bool{}
	hold := func(g, id string) bool {
		holding[heldInstance{group: g, instance: id}] = true
		err := b.cloud.RecordLifecycleActionHeartbeat(ctx, g, HookName, id)
		if noActiveLifecycleAction(err) {
			// The balancer's hook holds no action of it any more (its
			// heartbeat timeout passed while the balancer was down, or the
			// termination started before the hook was on the group); another
			// hook may still hold it. Nothing here can hold it again: report
			// it, and stop heartbeating it.
			delete(holding, heldInstance{group: g, instance: id})
			b.lifecycle.completed[id] = true
			msg := msgTerminationNotHeld(id, g)
			klog.FromContext(ctx).Info("Termination no longer held by the balancer's hook", "group", g, "instance", id, "err", err)
			if n := inv.nodeOf[id]; n != nil {
				b.recorder.Eventf(n, v1.EventTypeWarning, ReasonTerminationNotHeld, "%s", msg)
			}
			return false
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("heartbeat for %s: %w", id, err))
			return false
		}
		return true
	}
	for gi := range inv.groups {
		g := &inv.groups[gi]
		checked, unsure := false, false
		for _, i := range g.Instances {
			if i.LifecycleState != asg.StateTerminatingWait || b.lifecycle.completed[i.ID] {
				continue
			}
			if _, ok := b.lifecycle.hooks[g.Name]; !ok && !checked {
				// Learn whether our hook is there (after a restart), once per group.
				checked = true
				hooks, err := b.cloud.DescribeLifecycleHooks(ctx, g.Name)
				if err != nil {
					// Maybe ours: hold what holds (a heartbeat for a hook that
					// is not there only fails), let nothing go.
					errs = append(errs, fmt.Errorf("describing lifecycle hooks of %s: %w", g.Name, err))
					unsure = true
				} else if !slices.ContainsFunc(hooks, func(h asg.Hook) bool { return h.Name == HookName }) {
					break
				} else {
					b.lifecycle.hooks[g.Name] = b.clock.Now()
				}
			}
			src := inv
			vols := holds(src, i.ID)
			if len(vols) == 0 {
				// Free on the loop's list, or its node unknown there: ask past
				// the watch cache before letting it go or leaving it to the timeout.
				fresh, err := b.confirmed(ctx, inv)
				if err != nil {
					errs = append(errs, err)
					hold(g.Name, i.ID) // a failed read lets nothing go
					continue
				}
				src, vols = fresh, holds(fresh, i.ID)
			}
			n := src.nodeOf[i.ID]
			switch {
			case len(vols) > 0:
				if hold(g.Name, i.ID) {
					b.reportHeld(src, n, g.Name, i.ID, vols)
				}
			case n == nil:
				// Unknown node, no volume records the instance: the hook's timeout decides.
			case unsure:
				// Whether our hook holds it is unknown; the next loop decides.
			default:
				if err := b.cloud.CompleteLifecycleAction(ctx, g.Name, HookName, i.ID, asg.ResultContinue); noActiveLifecycleAction(err) {
					// Already let go (before a restart, which forgot it): it
					// waits for another group's hook, nothing of ours holds it.
					klog.FromContext(ctx).V(2).Info("Termination already let go by the balancer's hook; it waits for another hook", "group", g.Name, "instance", i.ID, "err", err)
					b.lifecycle.completed[i.ID] = true
					continue
				} else if err != nil {
					errs = append(errs, fmt.Errorf("completing lifecycle action of %s: %w", i.ID, err))
					continue
				}
				b.lifecycle.completed[i.ID] = true
				b.recorder.Eventf(n, v1.EventTypeNormal, ReasonTerminationReleased, "%s", msgTerminationReleased(i.ID))
			}
		}
	}
	keep := func(g, id string) { holding[heldInstance{group: g, instance: id}] = true }
	if err := b.heldUndiscovered(ctx, inv, hold, keep); err != nil {
		errs = append(errs, err)
	}
	b.held.replace(holding)
	b.metrics.heldTerminations.Set(float64(len(holding)))
	return errors.Join(errs...)
}

// heldUndiscovered keeps holding the terminations of instances with bound
// local volumes whose group is no longer discovered (its enabled tag changed
// or mistyped): the balancer's hook is still on that group, and its
// DefaultResult CONTINUE at the timeout would terminate the instance with its
// volume. It finds them in the terminations held before (described by group
// name) and, since that set is lost on a restart, among the instances of
// bound local volumes (their nodes, and the volumes' recorded instance) that
// no discovered group holds, asked of DescribeAutoScalingInstances, which
// answers for any group. An instance still in Terminating:Wait under the
// balancer's hook is heartbeated while a bound local volume holds it. A
// failed describe or quorum read holds it too.
//
// When DescribeAutoScalingInstances fails, the instances asked about are
// heartbeaten in the groups their volumes recorded (AnnotationGroup) and
// kept for the heartbeat timer (keep).
func (b *Balancer) heldUndiscovered(ctx context.Context, inv *inventory, hold func(g, id string) bool, keep func(g, id string)) error {
	discovered := map[string]bool{}
	for gi := range inv.groups {
		discovered[inv.groups[gi].Name] = true
	}
	var left []heldInstance
	names := map[string]bool{}
	known := map[string]bool{}
	for _, h := range b.held.list() {
		if !discovered[h.group] {
			left = append(left, h)
			names[h.group] = true
			known[h.instance] = true
		}
	}
	var errs []error
	lifecycle := map[heldInstance]string{}
	if len(left) > 0 {
		gs, err := b.cloud.DescribeGroups(ctx, asg.Selector{Names: sortedKeys(names)})
		if err != nil {
			for _, h := range left {
				hold(h.group, h.instance)
			}
			errs = append(errs, fmt.Errorf("describing groups %v, no longer discovered, of held terminations: %w", sortedKeys(names), err))
			left = nil
		}
		for gi := range gs {
			for _, i := range gs[gi].Instances {
				lifecycle[heldInstance{group: gs[gi].Name, instance: i.ID}] = i.LifecycleState
			}
		}
	}
	found, asked, err := b.undiscoveredHolders(ctx, inv, known)
	errs = append(errs, err)
	if len(asked) > 0 {
		// DescribeAutoScalingInstances failed: after a restart nothing else
		// names their group. Heartbeat those a bound local volume records
		// with its group (a heartbeat for an instance that is not waiting
		// only fails).
		recorded := recordedGroups(inv)
		blind := map[heldInstance]bool{}
		for _, id := range asked {
			if g := recorded[id]; g != "" && !b.lifecycle.completed[id] {
				blind[heldInstance{group: g, instance: id}] = true
				keep(g, id)
			}
		}
		b.heartbeatBlind(ctx, blind)
	}
	for _, m := range found {
		h := heldInstance{group: m.Group, instance: m.ID}
		left = append(left, h)
		lifecycle[h] = m.LifecycleState
	}
	slices.SortFunc(left, func(a, c heldInstance) int { return strings.Compare(a.group+"/"+a.instance, c.group+"/"+c.instance) })
	for _, h := range left {
		if lifecycle[h] != asg.StateTerminatingWait || b.lifecycle.completed[h.instance] {
			continue // no longer waiting on the hook: nothing to hold
		}
		src, vols := inv, holds(inv, h.instance)
		if len(vols) == 0 {
			fresh, err := b.confirmed(ctx, inv)
			if err != nil {
				errs = append(errs, err)
				hold(h.group, h.instance)
				continue
			}
			src, vols = fresh, holds(fresh, h.instance)
		}
		if len(vols) > 0 && hold(h.group, h.instance) {
			b.reportHeld(src, src.nodeOf[h.instance], h.group, h.instance, vols)
		}
	}
	return errors.Join(errs...)
}

// undiscoveredHolders returns the instances of bound local volumes (their
// node's, or the one a volume recorded) that no discovered group holds and
// that wait in Terminating:Wait, in a group that carries the balancer's hook
// (or whose hooks cannot be described: a heartbeat for a hook that is not
// there only fails), and, when DescribeAutoScalingInstances fails, the
// instances it asked about. Instances in known are already handled.
func (b *Balancer) undiscoveredHolders(ctx context.Context, inv *inventory, known map[string]bool) ([]asg.GroupMember, []string, error) {
	var ask []string
	for _, id := range holderIDs(inv) {
		if _, in := inv.instances[id]; !in && !known[id] {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return nil, nil, nil
	}
	members, err := b.cloud.DescribeAutoScalingInstances(ctx, ask)
	if err != nil {
		return nil, ask, fmt.Errorf("describing the instances %v of bound local volumes that no discovered group holds: %w", ask, err)
	}
	var out []asg.GroupMember
	var errs []error
	ours := map[string]bool{}
	for _, m := range members {
		if m.LifecycleState != asg.StateTerminatingWait || !slices.Contains(ask, m.ID) {
			continue
		}
		hooked, seen := ours[m.Group]
		if !seen {
			hooked = true
			if hooks, err := b.cloud.DescribeLifecycleHooks(ctx, m.Group); err != nil {
				errs = append(errs, fmt.Errorf("describing lifecycle hooks of %s: %w", m.Group, err))
			} else {
				hooked = slices.ContainsFunc(hooks, func(h asg.Hook) bool { return h.Name == HookName })
			}
			ours[m.Group] = hooked
		}
		if hooked {
			out = append(out, m)
		}
	}
	return out, nil, errors.Join(errs...)
}

// holds returns the bound local volumes that keep an instance: those on its
// node, and those that recorded it while their node existed.
func holds(inv *inventory, id string) []string {
	var vols []string
	if n := inv.nodeOf[id]; n != nil {
		vols = append(vols, inv.held[n.Name]...)
	}
	vols = append(vols, inv.named[id]...)
	slices.Sort(vols)
	return slices.Compact(vols)
}

// reportHeld says why a termination is held: on the node, or, when the node
// is gone, on the volumes that recorded the instance.
func (b *Balancer) reportHeld(inv *inventory, n *v1.Node, group, id string, vols []string) {
	limit := globalTimeout(b.opts.HeartbeatTimeout.Seconds())
	if n != nil {
		b.warnNode(n, ReasonTerminationHeld, "%s", msgTerminationHeld(id, group, vols, limit))
		return
	}
	for _, name := range vols {
		if pv := inv.volumes[name]; pv != nil {
			b.report(pv, ReasonTerminationHeld, "%s", msgTerminationHeldNodeGone(id, group, name, limit))
		}
	}
}

func globalTimeout(heartbeat float64) string {
	hours := min(48, heartbeat*100/3600)
	return fmt.Sprintf("%.1fh", hours)
}

// warnNode emits a warning event on a node once per distinct message.
func (b *Balancer) warnNode(n *v1.Node, reason, format string, args ...any) {
	b.warnObject(n, reason, format, args...)
}

func (b *Balancer) warnObject(obj interface {
	runtime.Object
	metav1.Object
}, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := string(obj.GetUID()) + obj.GetName() + "\x00" + reason + "\x00" + msg
	if b.warned[key] {
		return
	}
	b.warned[key] = true
	b.recorder.Event(obj, v1.EventTypeWarning, reason, msg)
}

// patchAnnotations sets (string) or removes (nil) node annotations with a merge patch.
func (b *Balancer) patchAnnotations(ctx context.Context, node string, annotations map[string]any) error {
	return patchMetadataAnnotations(ctx, "node", node, annotations, func(ctx context.Context, data []byte) error {
		_, err := b.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, data, metav1.PatchOptions{FieldManager: Source})
		return err
	})
}

// patchMetadataAnnotations renders the merge patch of annotations and sends it with patch.
func patchMetadataAnnotations(ctx context.Context, kind, name string, annotations map[string]any, patch func(context.Context, []byte) error) error {
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	if err := patch(ctx, data); err != nil {
		return fmt.Errorf("patching %s %s: %w", kind, name, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// noActiveLifecycleAction reports whether CompleteLifecycleAction refused
// because the balancer's hook holds no action of the instance: AWS answers
// "ValidationError: No active Lifecycle Action found with instance ID <id>"
// when the action was completed already (or timed out), while the instance
// may still be Terminating:Wait for another hook of its group (user guide,
// lifecycle-hooks). Any other error is a failure.
func noActiveLifecycleAction(err error) bool {
	var api smithy.APIError
	return asg.IsValidationError(err) && errors.As(err, &api) && strings.HasPrefix(api.ErrorMessage(), "No active Lifecycle Action found")
}
