package balancer

// The nodes a group ran, as cluster-autoscaler's templates remember them.
//
// cluster-autoscaler 1.36.1 (processors/nodeinfosprovider,
// MixedTemplateNodeInfoProvider) builds a group's template from a real node
// of the group when it has a good one: Ready for longer than a minute, not
// unschedulable, without its ToBeDeletedByClusterAutoscaler taint, and not
// made unready by a startup taint or a GPU not allocatable yet
// (goodTemplateNode). The
// template is that node sanitized: its hostname label replaced, its own
// taints, node-condition taints and the startup/status/ignore taints removed;
// every other label, its allocatable and capacity are kept. It caches that
// template per group and, when the group has no good node any more (scaled
// to zero), uses the cached one until --node-info-cache-expire-time (87600h
// by default) or until it restarts; only then does it build the template from
// the ASG's tags. A group that vanishes is dropped from the cache.
//
// So, for a group, CA may use either the tags template or the template of
// any good node the group ran since CA started. az-balancer publishes per
// group a template that is never stricter than those, as far as one
// template can be, the tags template widened with the last good nodes:
//   - labels: the tags template's, plus every label of the group's last good
//     nodes that the tags template does not set (not the hostname: no new
//     node has it). Where both set a key, the tags template's value stays;
//     between nodes, the first node by name gives the value;
//   - allocatable: per resource the largest of the tags template and the
//     nodes;
//   - taints: only those of the tags template that every good node carried
//     too (a node never adds a taint).
//
// One template cannot hold two values of a label, so the group also carries
// each template CA may use, exactly, as a variant (nodegroups.Variant): the
// tags template, and each distinct last good node sanitized as CA sanitizes
// it (all labels but the hostname, its allocatable, the taints CA keeps).
// A variant that the widened template or an earlier variant covers (admits
// every pod it admits) is left out; at most nodegroups.MaxVariants are
// published, the rest reported (ReasonTemplateIncomplete) and covered only
// by the widening, as before variants existed. The ConfigMap's data stays
// under maxConfigMapBytes the same way (encodeData).
//
// What is remembered of the last good nodes (the widening summary, and each
// distinct node's template under "nodes") is kept in the ConfigMap under
// lastNodesKey and read back when az-balancer starts, so a restart does not
// republish the narrower tags-only template; a memory written before
// variants existed (no "nodes") reads as a summary only. It is saved even
// when no list is published (into a ConfigMap holding only lastNodesKey if
// none exists yet; the scheduler plugin counts that as no list). It is
// bounded: one entry per existing group, at most maxRememberedLabels labels
// and maxRememberedTaints taints each (and per node), maxRememberedNodes
// nodes, dropped after lastNodeTTL (CA's default cache expiry).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
)

const (
	// lastNodesKey is the ConfigMap data key that holds what az-balancer
	// remembers of each group's last good nodes (JSON). The scheduler plugin
	// reads only nodegroups.DataKey.
	lastNodesKey = "last-good-nodes.json"
	// lastNodeTTL is cluster-autoscaler's default --node-info-cache-expire-time.
	lastNodeTTL = 87600 * time.Hour
	// nodeStabilization is how long a node must have been Ready to be a good
	// template node (CA's stabilizationDelay).
	nodeStabilization = time.Minute
	// Bounds of one remembered entry.
	maxRememberedLabels = 128
	maxRememberedTaints = 64
	// maxRememberedNodes bounds lastNode.Nodes: no more can be published as
	// variants of one group.
	maxRememberedNodes = nodegroups.MaxVariants
	// defaultMaxPods is what a template without pods offers
	// (nodegroups.NodeGroup.TemplateNode, kubelet's --max-pods default).
	defaultMaxPods = 110
)

// lastNode is what az-balancer remembers of a group's good nodes.
type lastNode struct {
	// Labels: the union of the good nodes' labels, less the per-node ones.
	Labels map[string]string `json:"labels,omitempty"`
	// Allocatable: per resource the largest the good nodes offered.
	Allocatable v1.ResourceList `json:"allocatable,omitempty"`
	// Taints: the taints every good node carried, sanitized as CA does.
	Taints []v1.Taint `json:"taints,omitempty"`
	// SeenAt: when a good node of the group was last seen.
	SeenAt time.Time `json:"seenAt"`
	// Nodes: each distinct good node as cluster-autoscaler's sanitized
	// template of it (all labels but the hostname, sanitized taints, its
	// allocatable), by node name, at most maxRememberedNodes. Absent from
	// memories written before variants were published.
	Nodes []nodegroups.Variant `json:"nodes,omitempty"`
}

// goodTemplateNode reports whether cluster-autoscaler, run with the flags o
// holds, would build a template from the node. CA builds templates only from
// the nodes its obtainNodeLists returns as ready, and of those only from the
// good candidates (isNodeGoodTemplateCandidate). A node is one when it is:
//   - ready, as CA reads readiness (NodeReady true, no DiskPressure or
//     NetworkUnavailable condition true, none of the not-ready,
//     disk-pressure and network-unavailable taints), for longer than
//     nodeStabilization since the latest of those transitions;
//   - without a startup taint (FilterOutNodesWithStartupTaints): no taint
//     whose key --startup-taint or --ignore-taint names, or that starts with
//     startup-taint.cluster-autoscaler.kubernetes.io/,
//     ignore-taint.cluster-autoscaler.kubernetes.io/ or a
//     --startup-taint-prefix (status taints do not count);
//   - with its GPU allocatable if it has one (the GPU processor's
//     FilterOutNodesWithUnreadyResources): a node with the AWS provider's GPU
//     label and none of the GPU resources allocatable yet is unready to CA;
//   - schedulable and not being deleted by the autoscaler.
//
// A node that is not stays out of what is remembered of its group, as CA
// keeps its cached template of the group's earlier node meanwhile.
func goodTemplateNode(n *v1.Node, now time.Time, o TemplateOptions) bool {
	if n.Spec.Unschedulable || n.DeletionTimestamp != nil {
		return false
	}
	if unreadyGPU(n) {
		return false
	}
	var last time.Time
	ready := false
	for _, c := range n.Status.Conditions {
		switch c.Type {
		case v1.NodeReady:
			ready = c.Status == v1.ConditionTrue
		case v1.NodeDiskPressure, v1.NodeNetworkUnavailable:
			if c.Status == v1.ConditionTrue {
				return false
			}
		default:
			continue
		}
		if c.LastTransitionTime.After(last) {
			last = c.LastTransitionTime.Time
		}
	}
	for _, t := range n.Spec.Taints {
		switch t.Key {
		case "ToBeDeletedByClusterAutoscaler", v1.TaintNodeNotReady, v1.TaintNodeDiskPressure, v1.TaintNodeNetworkUnavailable:
			return false
		}
		if o.startupTaint(t.Key) {
			return false
		}
	}
	return ready && last.Add(nodeStabilization).Before(now)
}

// labelAWSGPU is cluster-autoscaler's GPU label for AWS (the AWS cloud
// provider's GPULabel).
const labelAWSGPU = "k8s.amazonaws.com/accelerator"

// gpuResources are the GPU resources cluster-autoscaler 1.36.1 looks for in
// a node's allocatable (utils/gpu GPUVendorResourceNames).
var gpuResources = []v1.ResourceName{"nvidia.com/gpu", "habana.ai/gaudi", "gpu.intel.com/xe", "amd.com/gpu", "microsoft.com/directx"}

// unreadyGPU reports whether cluster-autoscaler takes the node for one whose
// GPU is not ready yet: it has the GPU label and none of gpuResources
// allocatable above zero (the GPU may appear in allocatable up to 15 minutes
// after the node is Ready, while the driver installs). The AWS provider never
// exposes a GPU through DRA, which CA would otherwise exempt.
func unreadyGPU(n *v1.Node) bool {
	if _, ok := n.Labels[labelAWSGPU]; !ok {
		return false
	}
	for _, r := range gpuResources {
		if q, ok := n.Status.Allocatable[r]; ok && !q.IsZero() {
			return false
		}
	}
	return true
}

// perNodeLabel reports whether a node's label is left out of its group's
// template: only kubernetes.io/hostname, as cluster-autoscaler's sanitized
// template node replaces only it (simulator/node_info_utils.go); a label
// whose value happens to be the node's name or instance ID stays, which
// can only make the template admit more (review 10d #3).
func perNodeLabel(k, _ string, _ *v1.Node, _ string) bool {
	return k == v1.LabelHostname
}

// rememberNodes updates, from the inventory, what is remembered of each
// group's good nodes: replaced while the group has good nodes, kept while it
// has none (until lastNodeTTL), forgotten with the group. The first call
// reads back what the ConfigMap holds; it fails when the ConfigMap cannot be
// read, so that no narrower template is published meanwhile.
func (b *Balancer) rememberNodes(ctx context.Context, inv *inventory, w *warnings) error {
	if !b.templates.lastLoaded {
		m, err := b.loadLastNodes(ctx, w)
		if err != nil {
			return err
		}
		b.templates.lastNodes, b.templates.lastLoaded = m, true
	}
	now := b.clock.Now()
	keep := map[string]lastNode{}
	for i := range inv.groups {
		g := &inv.groups[i]
		var good []*v1.Node
		ids := map[string]string{} // node name -> instance id
		for _, inst := range g.Instances {
			if n := inv.nodeOf[inst.ID]; n != nil && goodTemplateNode(n, now, b.opts.Templates) {
				good = append(good, n)
				ids[n.Name] = inst.ID
			}
		}
		if len(good) == 0 {
			if e, ok := b.templates.lastNodes[g.Name]; ok && now.Sub(e.SeenAt) <= lastNodeTTL {
				keep[g.Name] = e
			}
			continue
		}
		sort.Slice(good, func(i, j int) bool { return good[i].Name < good[j].Name })
		keep[g.Name] = b.summarizeNodes(g, good, ids, now, w)
	}
	b.templates.lastNodes = keep
	return nil
}

// summarizeNodes folds a group's good nodes into one lastNode.
func (b *Balancer) summarizeNodes(g *asg.Group, good []*v1.Node, ids map[string]string, now time.Time, w *warnings) lastNode {
	e := lastNode{Labels: map[string]string{}, Allocatable: v1.ResourceList{}, SeenAt: now}
	dropped := 0
	for i, n := range good {
		for _, k := range sortedKeys(n.Labels) {
			v := n.Labels[k]
			if perNodeLabel(k, v, n, ids[n.Name]) {
				continue
			}
			if _, set := e.Labels[k]; set {
				continue // the first node by name gives the value
			}
			if len(e.Labels) >= maxRememberedLabels {
				dropped++
				continue
			}
			e.Labels[k] = v
		}
		for r, q := range n.Status.Allocatable {
			if cur, ok := e.Allocatable[r]; !ok || q.Cmp(cur) > 0 {
				e.Allocatable[r] = q.DeepCopy()
			}
		}
		taints := b.opts.Templates.sanitize(n.Spec.Taints)
		if i == 0 {
			e.Taints = taints
			continue
		}
		e.Taints = slices.DeleteFunc(e.Taints, func(t v1.Taint) bool { return !hasTaint(taints, t) })
	}
	if len(e.Taints) > maxRememberedTaints {
		// Fewer remembered taints only takes more taints off the template.
		e.Taints = e.Taints[:maxRememberedTaints]
	}
	if dropped > 0 {
		w.warn(ReasonTemplateIncomplete, "Group %s: %d labels of its nodes are not remembered for its template (at most %d are)", g.Name, dropped, maxRememberedLabels)
	}
	skipped := 0
	for _, n := range good {
		v := b.nodeVariant(n)
		if validVariant(v) != nil {
			skipped++ // too many labels or taints, or nothing allocatable: only widens the group's template
			continue
		}
		if slices.ContainsFunc(e.Nodes, func(x nodegroups.Variant) bool { return covers(x, v) }) {
			continue
		}
		if len(e.Nodes) >= maxRememberedNodes {
			skipped++
			continue
		}
		e.Nodes = append(e.Nodes, v)
	}
	if skipped > 0 {
		w.warn(ReasonTemplateIncomplete, "Group %s: %d of its nodes are not remembered as template variants (at most %d are, each with at most %d labels and %d taints); its template admits the union of its nodes' labels instead",
			g.Name, skipped, maxRememberedNodes, maxRememberedLabels, maxRememberedTaints)
	}
	return e
}

// nodeVariant is cluster-autoscaler's sanitized template of a good node:
// every label but the hostname, the taints CA keeps, the allocatable.
func (b *Balancer) nodeVariant(n *v1.Node) nodegroups.Variant {
	v := nodegroups.Variant{Labels: map[string]string{}, Allocatable: v1.ResourceList{}}
	for k, val := range n.Labels {
		if !perNodeLabel(k, val, n, "") {
			v.Labels[k] = val
		}
	}
	for r, q := range n.Status.Allocatable {
		v.Allocatable[r] = q.DeepCopy()
	}
	v.Taints = b.opts.Templates.sanitize(n.Spec.Taints)
	return v
}

// covers reports whether a template with a's labels, taints and
// allocatable admits every pod one with b's admits, as far as the static
// predicates tell: the same labels (a label more can fail a NotIn or
// DoesNotExist), no taint b lacks, at least b's allocatable of every
// resource b offers (pods counted as kubelet's default where not given) and
// no other resource than the core ones that b does not offer.
func covers(a, b nodegroups.Variant) bool {
	if len(a.Labels) != len(b.Labels) {
		return false
	}
	for k, v := range b.Labels {
		if x, ok := a.Labels[k]; !ok || x != v {
			return false
		}
	}
	for _, t := range a.Taints {
		if !hasTaint(b.Taints, t) {
			return false
		}
	}
	pods := func(l v1.ResourceList) resource.Quantity {
		if q, ok := l[v1.ResourcePods]; ok {
			return q
		}
		return *resource.NewQuantity(defaultMaxPods, resource.DecimalSI)
	}
	for r, q := range b.Allocatable {
		have, ok := a.Allocatable[r]
		if r == v1.ResourcePods {
			have, ok = pods(a.Allocatable), true
		}
		if !ok || have.Cmp(q) < 0 {
			return false
		}
	}
	if _, ok := b.Allocatable[v1.ResourcePods]; !ok {
		if q := pods(a.Allocatable); q.Cmp(pods(b.Allocatable)) < 0 {
			return false
		}
	}
	// More of a resource does not always admit more: NodeResourcesFit leaves
	// an extended resource that a node does not advertise (absent or 0) and
	// that a DeviceClass maps to DynamicResources, so a node without it may
	// admit a request that one advertising less rejects. Beyond the core
	// resources, a offers exactly the resources b offers.
	for r, q := range a.Allocatable {
		switch r {
		case v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage, v1.ResourcePods:
			continue
		}
		if q.IsZero() {
			continue
		}
		if have, ok := b.Allocatable[r]; !ok || have.IsZero() {
			return false
		}
	}
	return true
}

// variants returns the template variants of a group whose published
// template is base: the tags template (tags) when base does not cover it,
// then each remembered node base and the earlier variants do not cover, at
// most nodegroups.MaxVariants; over the bound the rest are left out and
// reported (base, widened with all the nodes' labels, stays the fallback).
func variants(name string, base, tags nodegroups.NodeGroup, e lastNode, w *warnings) []nodegroups.Variant {
	var cands []nodegroups.Variant
	_, cpu := tags.Allocatable[v1.ResourceCPU]
	_, mem := tags.Allocatable[v1.ResourceMemory]
	if cpu && mem { // else cluster-autoscaler cannot build it either
		// A variant's labels are taken exactly; the tags template gets the
		// beta twins cluster-autoscaler's template from tags has.
		cands = append(cands, nodegroups.Variant{Labels: nodegroups.WithBetaTwins(tags.Labels), Taints: tags.Taints, Allocatable: tags.Allocatable})
	}
	cands = append(cands, e.Nodes...)
	own := nodegroups.Variant{Labels: nodegroups.WithBetaTwins(base.Labels), Taints: base.Taints, Allocatable: base.Allocatable}
	var out []nodegroups.Variant
	left := 0
	for _, c := range cands {
		if covers(own, c) || slices.ContainsFunc(out, func(x nodegroups.Variant) bool { return covers(x, c) }) {
			continue
		}
		if len(out) >= nodegroups.MaxVariants {
			left++
			continue
		}
		out = append(out, c)
	}
	if left > 0 {
		w.warn(ReasonTemplateIncomplete, "Group %s: %d of its template variants are not published (at most %d are); its template admits the union of its nodes' labels instead",
			name, left, nodegroups.MaxVariants)
	}
	return out
}

func hasTaint(ts []v1.Taint, t v1.Taint) bool {
	return slices.ContainsFunc(ts, func(x v1.Taint) bool { return x.Key == t.Key && x.Value == t.Value && x.Effect == t.Effect })
}

// widen makes a group's template never stricter than the template
// cluster-autoscaler builds from the group's remembered good nodes (see the
// file comment).
func widen(ng *nodegroups.NodeGroup, e lastNode) {
	if ng.Labels == nil {
		ng.Labels = map[string]string{}
	}
	for k, v := range e.Labels {
		if _, set := ng.Labels[k]; !set {
			ng.Labels[k] = v
		}
	}
	if ng.Allocatable == nil {
		ng.Allocatable = v1.ResourceList{}
	}
	for r, q := range e.Allocatable {
		cur, ok := ng.Allocatable[r]
		if !ok && r == v1.ResourcePods {
			// A template without pods offers kubelet's default (and so does
			// CA's tags template): a node's smaller maxPods narrows nothing.
			cur, ok = *resource.NewQuantity(defaultMaxPods, resource.DecimalSI), true
		}
		if !ok || q.Cmp(cur) > 0 {
			ng.Allocatable[r] = q.DeepCopy()
		}
	}
	ng.Taints = slices.DeleteFunc(ng.Taints, func(t v1.Taint) bool { return !hasTaint(e.Taints, t) })
	if len(ng.Taints) == 0 {
		ng.Taints = nil
	}
}

// loadLastNodes reads what the ConfigMap remembers. A missing ConfigMap or
// key is an empty memory; a malformed key or entry is reported and skipped
// (the template is then the tags' one, as after a CA restart).
func (b *Balancer) loadLastNodes(ctx context.Context, w *warnings) (map[string]lastNode, error) {
	cm, err := b.kube.CoreV1().ConfigMaps(b.opts.ConfigMapNamespace).Get(ctx, b.opts.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string]lastNode{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the remembered nodes from ConfigMap %s/%s: %w", b.opts.ConfigMapNamespace, b.opts.ConfigMapName, err)
	}
	raw, ok := cm.Data[lastNodesKey]
	if !ok {
		return map[string]lastNode{}, nil
	}
	var m map[string]lastNode
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		w.warn(ReasonTemplateIncomplete, "ConfigMap %s/%s: key %s is not valid, the remembered nodes are ignored: %v", cm.Namespace, cm.Name, lastNodesKey, err)
		return map[string]lastNode{}, nil
	}
	out := map[string]lastNode{}
	for _, g := range sortedKeys(m) {
		if err := validLastNode(m[g]); err != nil {
			w.warn(ReasonTemplateIncomplete, "ConfigMap %s/%s: key %s: the remembered nodes of group %s are ignored: %v", cm.Namespace, cm.Name, lastNodesKey, g, err)
			continue
		}
		out[g] = m[g]
	}
	return out, nil
}

func validLastNode(e lastNode) error {
	if len(e.Labels) > maxRememberedLabels || len(e.Taints) > maxRememberedTaints {
		return fmt.Errorf("more than %d labels or %d taints", maxRememberedLabels, maxRememberedTaints)
	}
	if len(e.Nodes) > maxRememberedNodes {
		return fmt.Errorf("more than %d nodes", maxRememberedNodes)
	}
	for i, v := range e.Nodes {
		if err := validVariant(v); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	for k, v := range e.Labels {
		if msgs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(msgs) > 0 {
			return fmt.Errorf("label %s=%q: %v", k, v, msgs)
		}
	}
	for r, q := range e.Allocatable {
		if q.Sign() < 0 || len(validation.IsQualifiedName(string(r))) > 0 {
			return fmt.Errorf("resource %s=%s is not valid", r, q.String())
		}
	}
	return nil
}

// encodeLastNodes renders the memory for the ConfigMap; withTimes false
// leaves the times out, to compare two memories.
func encodeLastNodes(m map[string]lastNode, withTimes bool) string {
	out := make(map[string]lastNode, len(m))
	for g, e := range m {
		if !withTimes {
			e.SeenAt = time.Time{}
		} else {
			e.SeenAt = e.SeenAt.UTC().Truncate(time.Second)
		}
		out[g] = e
	}
	data, err := json.Marshal(out) // map keys are sorted
	if err != nil {
		return "{}"
	}
	return string(data)
}

// sameLastNodes reports whether the stored memory says what m says, times
// aside (a time lags by at most TemplateRefresh, against lastNodeTTL).
func sameLastNodes(stored string, m map[string]lastNode) bool {
	var old map[string]lastNode
	if err := json.Unmarshal([]byte(stored), &old); err != nil {
		return false
	}
	return encodeLastNodes(old, false) == encodeLastNodes(m, false)
}

// validVariant checks a remembered node as the list's validation will
// check it as a variant, within the memory's bounds.
func validVariant(v nodegroups.Variant) error {
	if len(v.Labels) > maxRememberedLabels || len(v.Taints) > maxRememberedTaints {
		return fmt.Errorf("more than %d labels or %d taints", maxRememberedLabels, maxRememberedTaints)
	}
	one := &nodegroups.NodeGroupList{APIVersion: nodegroups.APIVersion, Kind: nodegroups.Kind, NodeGroups: []nodegroups.NodeGroup{{
		Name: "remembered", Allocatable: v1.ResourceList{v1.ResourcePods: resource.MustParse("0")}, Variants: []nodegroups.Variant{v}}}}
	if errs := nodegroups.Validate(one); len(errs) > 0 {
		return errs.ToAggregate()
	}
	for r := range v.Allocatable {
		if len(validation.IsQualifiedName(string(r))) > 0 {
			return fmt.Errorf("resource name %q is not valid", r)
		}
	}
	return nil
}
