package balancer

// EKS managed node groups and cluster-autoscaler's template flags.
//
// cluster-autoscaler 1.36.1 takes a group for an EKS managed node group when
// its template labels (from the ASG's tags) have nodegroup-name and
// cluster-name, which the eks:nodegroup-name and eks:cluster-name tags EKS
// puts on the ASG give. For such a group it asks EKS DescribeNodegroup and
// adds to its template: the labels diskSize, amiType,
// eks.amazonaws.com/capacityType (from capacityType), k8sVersion and
// eks.amazonaws.com/nodegroup, then the node group's Kubernetes labels, all
// over the labels of the ASG's tags; the node group's taints (those with a
// key and a value), after the taints of the ASG's tags; and the resources of
// its node-template resource tags, over those of the ASG. It keeps the reply
// for 6 minutes (less a jitter of 5 to 60 seconds). Then its template
// sanitizer drops the taints its --startup-taint, --ignore-taint,
// --status-taint and --startup-taint-prefix flags name, from both sources.
//
// az-balancer does the same, with one difference: when DescribeNodegroup
// fails, cluster-autoscaler builds its template without the node group's
// labels and taints, which would be a template stricter than the nodes the
// group launches. az-balancer then publishes no list at all (the plugin
// fails open once the list is missing or older than maxTemplateAge), and
// asks again after eksErrorRetry.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	"github.com/ballast-k8s/ballast/config/nodegroups"
	"github.com/ballast-k8s/ballast/internal/asg"
)

// TemplateOptions are the cluster-autoscaler flags that change its
// templates; az-balancer takes the same values (cmd/az-balancer options).
type TemplateOptions struct {
	// StartupTaints are CA's --startup-taint and --ignore-taint values,
	// StatusTaints its --status-taint values: taint keys left out of templates.
	StartupTaints, StatusTaints []string
	// StartupTaintPrefixes are CA's --startup-taint-prefix values: taints
	// whose key starts with one are left out too.
	StartupTaintPrefixes []string
}

// stripped reports whether cluster-autoscaler, run with these flags, leaves
// the taint out of its templates.
func (o TemplateOptions) stripped(key string) bool {
	if strippedTaint(key) || slices.Contains(o.StartupTaints, key) || slices.Contains(o.StatusTaints, key) {
		return true
	}
	for _, p := range o.StartupTaintPrefixes {
		if p != "" && strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// startupTaint reports whether cluster-autoscaler, run with these flags,
// takes the taint for a startup taint (TaintConfig.IsStartupTaint): one its
// --startup-taint or --ignore-taint flags name, or whose key starts with its
// startup-taint or ignore-taint prefix or a --startup-taint-prefix. A node
// carrying one is unready to CA. Status taints are not startup taints.
func (o TemplateOptions) startupTaint(key string) bool {
	if slices.Contains(o.StartupTaints, key) {
		return true
	}
	for _, p := range startupTaintPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	for _, p := range o.StartupTaintPrefixes {
		if p != "" && strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func (o TemplateOptions) sanitize(taints []v1.Taint) []v1.Taint {
	var out []v1.Taint
	for _, t := range taints {
		if !o.stripped(t.Key) {
			out = append(out, t)
		}
	}
	return out
}

const (
	// eksCacheTTL is how long a DescribeNodegroup reply is used, as
	// cluster-autoscaler's managed node group cache keeps it.
	eksCacheTTL = 6 * time.Minute
	// eksJitterMin and eksJitterMax bound the time taken off eksCacheTTL per
	// entry, so that the node groups are not asked all at once.
	eksJitterMin, eksJitterMax = 5 * time.Second, 60 * time.Second
	// eksErrorRetry is how long a failure stands before EKS is asked again;
	// meanwhile no list is published.
	eksErrorRetry = time.Minute
)

// eksCloud is the EKS part of the cloud; *asg.Client has it.
type eksCloud interface {
	DescribeNodegroup(ctx context.Context, cluster, nodegroup string) (*asg.Nodegroup, error)
}

var _ eksCloud = (*asg.Client)(nil)

type eksEntry struct {
	ng    *asg.Nodegroup
	err   error
	until time.Time
	// notFound: EKS has no such node group (a self-managed group with eks:
	// tags); its template is the ASG's alone.
	notFound bool
}

// managedNodegroup returns the EKS node group the template's group is, as
// cluster-autoscaler tells it: the labels nodegroup-name and cluster-name
// (from the eks: tags) are both set.
func managedNodegroup(ng *nodegroups.NodeGroup) (cluster, name string, ok bool) {
	name, cluster = ng.Labels["nodegroup-name"], ng.Labels["cluster-name"]
	return cluster, name, name != "" && cluster != ""
}

// describeNodegroup returns the node group's description, from the cache
// while it holds.
func (b *Balancer) describeNodegroup(ctx context.Context, cluster, name string) (*asg.Nodegroup, error) {
	key := cluster + "/" + name
	now := b.clock.Now()
	if e, ok := b.templates.eks[key]; ok && now.Before(e.until) {
		if e.notFound {
			return nil, fmt.Errorf("EKS node group %s of cluster %s: %w", name, cluster, asg.ErrNodegroupNotFound)
		}
		return e.ng, e.err
	}
	ec, ok := b.cloud.(eksCloud)
	if !ok {
		return nil, asg.ErrEKSDisabled
	}
	ng, err := ec.DescribeNodegroup(ctx, cluster, name)
	if cerr := ctx.Err(); cerr != nil {
		return nil, errors.Join(cerr, err) // not the node group's fault: nothing cached
	}
	if b.templates.eks == nil {
		b.templates.eks = map[string]eksEntry{}
	}
	if errors.Is(err, asg.ErrNodegroupNotFound) {
		// No managed node group: its nodes carry no EKS labels, and
		// cluster-autoscaler builds its template without them, caching the
		// empty answer as long as a reply. So does the balancer.
		jitter := eksJitterMin + rand.N(eksJitterMax-eksJitterMin)
		b.templates.eks[key] = eksEntry{notFound: true, until: now.Add(eksCacheTTL - jitter)}
		return nil, err
	}
	if err != nil {
		b.templates.eks[key] = eksEntry{err: err, until: now.Add(eksErrorRetry)}
		klog.FromContext(ctx).Error(err, "EKS DescribeNodegroup failed; no node-group list is published until it succeeds", "cluster", cluster, "nodegroup", name)
		return nil, err
	}
	jitter := eksJitterMin + rand.N(eksJitterMax-eksJitterMin)
	b.templates.eks[key] = eksEntry{ng: ng, until: now.Add(eksCacheTTL - jitter)}
	return ng, nil
}

// eksLabels are the labels cluster-autoscaler's template takes from a
// DescribeNodegroup reply, in its order: the ones it derives, then the node
// group's own, which win.
func eksLabels(ng *asg.Nodegroup) map[string]string {
	out := map[string]string{}
	if ng.DiskSize != nil {
		out["diskSize"] = strconv.FormatInt(int64(*ng.DiskSize), 10)
	}
	if ng.AMIType != "" {
		out["amiType"] = ng.AMIType
	}
	if ng.CapacityType != "" {
		out["eks.amazonaws.com/capacityType"] = ng.CapacityType
	}
	if ng.Version != "" {
		out["k8sVersion"] = ng.Version
	}
	if ng.Name != "" {
		out[labelEKSNodegroup] = ng.Name
	}
	for k, v := range ng.Labels {
		out[k] = v
	}
	return out
}

// eksEffects translates EKS taint effects (EKS API Reference, Taint).
var eksEffects = map[string]v1.TaintEffect{
	"NO_SCHEDULE":        v1.TaintEffectNoSchedule,
	"NO_EXECUTE":         v1.TaintEffectNoExecute,
	"PREFER_NO_SCHEDULE": v1.TaintEffectPreferNoSchedule,
}

// mergeNodegroup adds what DescribeNodegroup says of a managed node group
// to its template, as cluster-autoscaler does. A label, taint or resource
// tag that is not valid is reported and skipped: skipping a taint only
// makes the template admit more, and EKS puts no invalid label on a node.
func mergeNodegroup(tmpl *nodegroups.NodeGroup, ng *asg.Nodegroup, w *warnings) {
	labels := eksLabels(ng)
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		if msgs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(msgs) > 0 {
			w.warn(ReasonMalformedEKSNodegroup, "%s", msgMalformedEKS(tmpl.Name, fmt.Sprintf("label %s=%q", k, v), strings.Join(msgs, "; ")))
			continue
		}
		tmpl.Labels[k] = v
	}
	for _, t := range ng.Taints {
		if !t.HasKey || !t.HasValue {
			continue // cluster-autoscaler takes only taints with a key and a value
		}
		what := fmt.Sprintf("taint %s=%s:%s", t.Key, t.Value, t.Effect)
		effect, ok := eksEffects[t.Effect]
		if !ok {
			w.warn(ReasonMalformedEKSNodegroup, "%s", msgMalformedEKS(tmpl.Name, what, "effect is not NO_SCHEDULE, NO_EXECUTE or PREFER_NO_SCHEDULE"))
			continue
		}
		if msgs := append(validation.IsQualifiedName(t.Key), validation.IsValidLabelValue(t.Value)...); len(msgs) > 0 {
			w.warn(ReasonMalformedEKSNodegroup, "%s", msgMalformedEKS(tmpl.Name, what, strings.Join(msgs, "; ")))
			continue
		}
		taint := v1.Taint{Key: t.Key, Value: t.Value, Effect: effect}
		if !slices.Contains(tmpl.Taints, taint) {
			tmpl.Taints = append(tmpl.Taints, taint)
		}
	}
	for _, k := range sortedKeys(ng.Tags) {
		name, ok := strings.CutPrefix(k, tagResourcePrefix)
		if !ok || name == "" {
			continue
		}
		q, err := resource.ParseQuantity(ng.Tags[k])
		if err == nil && q.Sign() < 0 {
			err = errors.New("negative")
		}
		if msgs := validation.IsQualifiedName(name); err == nil && len(msgs) > 0 {
			err = errors.New(strings.Join(msgs, "; "))
		}
		if err != nil {
			w.warn(ReasonMalformedEKSNodegroup, "%s", msgMalformedEKS(tmpl.Name, fmt.Sprintf("tag %s=%q", k, ng.Tags[k]), err.Error()))
			continue
		}
		tmpl.Allocatable[v1.ResourceName(name)] = q
	}
}

// eksTemplate completes the template of a managed node group with
// DescribeNodegroup's labels, taints and resources; other groups are left
// as they are. It fails when EKS does not answer; a node group EKS does not
// know leaves the template as the ASG's tags make it, as cluster-autoscaler's.
func (b *Balancer) eksTemplate(ctx context.Context, tmpl *nodegroups.NodeGroup, w *warnings) error {
	cluster, name, ok := managedNodegroup(tmpl)
	if !ok {
		return nil
	}
	ng, err := b.describeNodegroup(ctx, cluster, name)
	if errors.Is(err, asg.ErrNodegroupNotFound) {
		w.warn(ReasonTemplateIncomplete, "%s", msgEKSNodegroupNotFound(tmpl.Name, cluster, name))
		return nil
	}
	if err != nil {
		return err
	}
	mergeNodegroup(tmpl, ng, w)
	return nil
}
