package balancer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/internal/asg"
)

// holdWithoutGroups is what a loop does when the groups cannot be described
// (DescribeAutoScalingGroups throttled past the SDK's retries, or failing):
// it still holds the terminations of the instances of bound local volumes,
// which the apiserver alone names, and lets nothing go. A termination may
// have started meanwhile (a human, a health-check replacement: scale-in
// protection stops neither), and after a restart nothing is held in memory,
// so the instances are asked of DescribeAutoScalingInstances, which answers
// each instance's group and lifecycle state without DescribeAutoScalingGroups;
// those in Terminating:Wait are heartbeaten. When that fails too, every
// instance held before and every instance a bound local volume records with
// its group (AnnotationGroup) is heartbeaten blindly: a heartbeat for an
// instance that is not waiting only fails. The hook's DefaultResult is
// CONTINUE: a termination not heartbeaten goes on at the timeout, with the
// volume's data.
func (b *Balancer) holdWithoutGroups(ctx context.Context, cause error) error {
	errs := []error{cause}
	before := b.held.list()
	holding := map[heldInstance]bool{}
	var inv *inventory
	nodes, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		errs = append(errs, fmt.Errorf("listing nodes: %w", err))
	}
	pvs, perr := b.kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if perr != nil {
		errs = append(errs, fmt.Errorf("listing persistent volumes: %w", perr))
	}
	if err != nil || perr != nil {
		for _, h := range before {
			holding[h] = true
		}
	} else {
		csinodes, _ := b.listCSINodes(ctx, "0") // without them, fewer volumes hold: the recorded ones still do
		inv = newInventory(nil, nodes.Items, pvs.Items, newNodeTopology(nodes.Items, csinodes))
		ids := holderIDs(inv)
		for _, h := range before {
			ids = append(ids, h.instance)
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) > 0 {
			members, err := b.cloud.DescribeAutoScalingInstances(ctx, ids)
			if err == nil {
				for _, m := range members {
					if m.LifecycleState == asg.StateTerminatingWait && slices.Contains(ids, m.ID) && !b.lifecycle.completed[m.ID] {
						holding[heldInstance{group: m.Group, instance: m.ID}] = true
					}
				}
			} else {
				errs = append(errs, fmt.Errorf("describing the instances of bound local volumes: %w", err))
				for _, h := range before {
					holding[h] = true
				}
				recorded := recordedGroups(inv)
				for _, id := range holderIDs(inv) {
					if g := recorded[id]; g != "" && !b.lifecycle.completed[id] {
						holding[heldInstance{group: g, instance: id}] = true
					}
				}
			}
		}
	}
	b.heartbeatBlind(ctx, holding)
	b.held.replace(holding)
	b.metrics.heldTerminations.Set(float64(len(holding)))
	if inv != nil {
		// Nothing can be done on AWS without the groups, but
		// cluster-autoscaler keeps scaling down from its cached groups and
		// reads only the node's annotation: mark the held nodes all the same
		// (after the heartbeats, which cannot wait).
		if err := b.annotateHeld(ctx, inv); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// heartbeatBlind heartbeats set, in order. A failure is logged only: the
// instance may not be waiting on the balancer's hook at all.
func (b *Balancer) heartbeatBlind(ctx context.Context, set map[heldInstance]bool) {
	list := make([]heldInstance, 0, len(set))
	for h := range set {
		list = append(list, h)
	}
	slices.SortFunc(list, func(a, c heldInstance) int { return strings.Compare(a.group+"/"+a.instance, c.group+"/"+c.instance) })
	for _, h := range list {
		if err := b.cloud.RecordLifecycleActionHeartbeat(ctx, h.group, HookName, h.instance); err != nil {
			klog.FromContext(ctx).V(2).Info("Heartbeat of a termination that may be held failed", "group", h.group, "instance", h.instance, "err", err)
		}
	}
}

// holderIDs returns the instances of bound local volumes: their node's, and
// the one each volume recorded; sorted, well-formed IDs only.
func holderIDs(inv *inventory) []string {
	ids := map[string]bool{}
	for _, n := range inv.nodes {
		if id := inv.instOf[n.Name]; id != "" && len(inv.held[n.Name]) > 0 {
			ids[id] = true
		}
	}
	for id := range inv.named {
		ids[id] = true
	}
	var out []string
	for _, id := range sortedKeys(ids) {
		if instanceIDPattern.MatchString(id) {
			out = append(out, id)
		}
	}
	return out
}

// recordedGroups returns, by instance, the group that the bound local
// volumes recording it (AnnotationInstanceID) recorded (AnnotationGroup).
func recordedGroups(inv *inventory) map[string]string {
	out := map[string]string{}
	for id, vols := range inv.named {
		for _, name := range vols {
			if g := inv.volumes[name].Annotations[AnnotationGroup]; g != "" {
				out[id] = g
			}
		}
	}
	return out
}
