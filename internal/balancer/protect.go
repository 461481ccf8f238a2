package balancer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/aws"
)

// protect makes every node that holds a bound local volume safe from
// cluster-autoscaler (annotation) and from the group's scale-in (instance
// protection), and removes what it set once the volumes are released.
//
// Ownership is recorded on the node before the instance is protected and
// cleared after it is unprotected, so a failure in between is repaired by the
// next loop and protection set by anyone else is never removed.
func (b *Balancer) protect(ctx context.Context, inv *inventory) error {
	logger := klog.FromContext(ctx)
	var errs []error
	protect, unprotect := map[string][]string{}, map[string][]string{} // group -> instance ids
	unprotectNodes := map[string]*v1.Node{}                            // instance id -> node
	var notInGroup []string
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
			if needsProtection && !ownsScaleIn {
				patch[AnnotationScaleInProtectedBy] = Source
			}
			if len(patch) > 0 {
				if err := b.patchAnnotations(ctx, n.Name, patch); err != nil {
					errs = append(errs, err)
					continue // without recorded ownership, do not touch the instance
				}
				b.recorder.Eventf(n, v1.EventTypeNormal, ReasonProtected, "Protected from scale-down: holds bound local volumes %s", strings.Join(vols, ", "))
			}
			switch {
			case needsProtection:
				protect[ref.group.Name] = append(protect[ref.group.Name], id)
			case id == "":
				if err := inv.badIDs[n.Name]; err != nil {
					b.warnNode(n, ReasonUnmappedNode, "Holds bound local volumes but cannot be mapped to an instance: %v", err)
				}
			case !inGroup:
				notInGroup = append(notInGroup, id)
			}
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
				b.recorder.Event(n, v1.EventTypeNormal, ReasonUnprotected, "Local volumes released: scale-down allowed again")
			}
		}
		if ownsScaleIn {
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

	// A termination hook on every group that holds a volume, so that whatever
	// AWS terminates there (rebalancing, health replacement, a human) waits.
	for _, g := range inv.groups {
		if heldIn(inv, &g) {
			errs = append(errs, b.ensureHook(ctx, g.Name))
		}
	}
	errs = append(errs, b.orphans(ctx, inv, notInGroup))
	return errors.Join(errs...)
}

func heldIn(inv *inventory, g *aws.Group) bool {
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
	if at, ok := b.hooks[group]; ok && b.clock.Since(at) < b.opts.HookResync {
		return nil
	}
	hooks, err := b.cloud.DescribeLifecycleHooks(ctx, group)
	if err != nil {
		return fmt.Errorf("describing lifecycle hooks of %s: %w", group, err)
	}
	want := b.hook(group)
	if i := slices.IndexFunc(hooks, func(h aws.Hook) bool { return h.Name == HookName }); i < 0 ||
		hooks[i].HeartbeatTimeout != want.HeartbeatTimeout || hooks[i].Transition != want.Transition {
		if err := b.cloud.PutLifecycleHook(ctx, want); err != nil {
			return fmt.Errorf("putting lifecycle hook on %s: %w", group, err)
		}
		klog.FromContext(ctx).Info("Put termination lifecycle hook", "group", group, "hook", HookName, "heartbeatTimeout", b.opts.HeartbeatTimeout)
	}
	b.hooks[group] = b.clock.Now()
	return nil
}

func (b *Balancer) hook(group string) aws.Hook {
	return aws.Hook{
		Group: group, Name: HookName, Transition: aws.TransitionTerminating,
		HeartbeatTimeout: int32(b.opts.HeartbeatTimeout.Seconds()), DefaultResult: aws.ResultContinue,
	}
}

// lifecycleActions heartbeats the held terminations of instances whose nodes
// hold bound local volumes, and lets the others go at once so that the hook
// does not slow down cluster-autoscaler's own scale-down. An instance whose
// node is unknown is left to the hook's timeout: nothing is released on a
// guess. AWS still terminates after the global timeout (48h or 100 heartbeat
// timeouts); the TerminationHeld event says so.
func (b *Balancer) lifecycleActions(ctx context.Context, inv *inventory) error {
	var errs []error
	holding := 0
	for gi := range inv.groups {
		g := &inv.groups[gi]
		for _, i := range g.Instances {
			if i.LifecycleState != aws.StateTerminatingWait || b.completed[i.ID] {
				continue
			}
			if _, ok := b.hooks[g.Name]; !ok {
				// Learn whether our hook is there (after a restart), once per group.
				hooks, err := b.cloud.DescribeLifecycleHooks(ctx, g.Name)
				if err != nil {
					errs = append(errs, fmt.Errorf("describing lifecycle hooks of %s: %w", g.Name, err))
					break
				}
				if !slices.ContainsFunc(hooks, func(h aws.Hook) bool { return h.Name == HookName }) {
					break
				}
				b.hooks[g.Name] = b.clock.Now()
			}
			n := inv.nodeOf[i.ID]
			switch {
			case n == nil:
			case len(inv.held[n.Name]) > 0:
				holding++
				if err := b.cloud.RecordLifecycleActionHeartbeat(ctx, g.Name, HookName, i.ID); err != nil {
					errs = append(errs, fmt.Errorf("heartbeat for %s: %w", i.ID, err))
					continue
				}
				b.warnNode(n, ReasonTerminationHeld, "AWS is terminating instance %s of group %s; held while local volumes %s are bound (at most %s)",
					i.ID, g.Name, strings.Join(inv.held[n.Name], ", "), globalTimeout(b.opts.HeartbeatTimeout.Seconds()))
			default:
				if err := b.cloud.CompleteLifecycleAction(ctx, g.Name, HookName, i.ID, aws.ResultContinue); err != nil {
					errs = append(errs, fmt.Errorf("completing lifecycle action of %s: %w", i.ID, err))
					continue
				}
				b.completed[i.ID] = true
				b.recorder.Eventf(n, v1.EventTypeNormal, ReasonTerminationReleased, "Holds no bound local volume: let the termination of %s proceed", i.ID)
			}
		}
	}
	b.metrics.heldTerminations.Set(float64(holding))
	return errors.Join(errs...)
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
