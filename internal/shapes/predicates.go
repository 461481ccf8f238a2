// Package shapes keeps the cluster's node shapes and node-group templates and
// evaluates a pod's static predicates against them. It is pure: no client, no
// informer; the caller feeds it objects.
package shapes

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-base/featuregate"
	resourcehelper "k8s.io/component-helpers/resource"
	v1helper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	volumehelper "k8s.io/component-helpers/storage/volume"
	csitrans "k8s.io/csi-translation-lib"
	csiplugins "k8s.io/csi-translation-lib/plugins"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
)

// Reason is why a node fails a pod's static predicates. The values are the
// metric labels; messages shown to users are built from them in one place.
type Reason string

const (
	ReasonNone                Reason = ""
	ReasonNodeAffinity        Reason = "node-affinity"
	ReasonVolumeNodeAffinity  Reason = "volume-node-affinity"
	ReasonTaint               Reason = "taint"
	ReasonUnschedulable       Reason = "node-unschedulable"
	ReasonInsufficientMaximum Reason = "requests-above-allocatable"
)

// reasonOrder is the order predicates are checked in: the pod's placement
// intent first, so that a message speaks of the nodes the pod targets.
var reasonOrder = []Reason{ReasonNodeAffinity, ReasonVolumeNodeAffinity, ReasonTaint, ReasonUnschedulable, ReasonInsufficientMaximum}

// Options are the feature switches that change the upstream predicates.
type Options struct {
	// IdentityLabels are per-node unique labels (kubernetes.io/hostname).
	IdentityLabels sets.Set[string]
	// EnableTaintTolerationComparisonOperators mirrors the feature gate.
	EnableTaintTolerationComparisonOperators bool
	// EnablePodLevelResources mirrors the feature gate.
	EnablePodLevelResources bool
	// EnableDRAExtendedResource mirrors the feature gate (GA and locked on in
	// v1.37): a resource some DeviceClass maps is DynamicResources' business
	// on every node that does not advertise it.
	EnableDRAExtendedResource bool
	// DeviceClasses are the extended resource names DeviceClasses map. NewStore
	// fills it in when nil; the plugin feeds it from a DeviceClass informer.
	DeviceClasses *DeviceClasses
	// DisabledFilters are the MirroredFilters the scheduler profile does not
	// run: their predicates pass every node. Nil: the default profile.
	DisabledFilters sets.Set[string]
	// IgnoredResources and IgnoredResourceGroups mirror NodeResourcesFit's
	// args (with the extenders' ignoredByScheduler resources): those
	// extended resources are not compared with allocatable. See ApplyProfile.
	IgnoredResources, IgnoredResourceGroups sets.Set[string]
}

// FeatureOptions returns the options the v1.37.2 filters run with under fg,
// the feature gates of the scheduler binary (utilfeature.DefaultFeatureGate).
func FeatureOptions(fg featuregate.FeatureGate) *Options {
	return &Options{
		EnableTaintTolerationComparisonOperators: fg.Enabled(features.TaintTolerationComparisonOperators),
		EnablePodLevelResources:                  fg.Enabled(features.PodLevelResources),
		EnableDRAExtendedResource:                fg.Enabled(features.DRAExtendedResource),
	}
}

// BoundVolume is a bound PVC whose PV constrains the nodes.
type BoundVolume struct {
	Claim string
	PV    *v1.PersistentVolume
}

// boundVolume is a BoundVolume with, for an in-tree PV that VolumeBinding
// translates to CSI on nodes whose CSINode lists the plugin as migrated, the
// translated PV: its zone keys become the CSI driver's (EBS:
// topology.ebs.csi.aws.com/zone). Which nodes are migrated is no static
// fact of the node, so a node passes when it matches either form.
type boundVolume struct {
	BoundVolume
	translated *v1.PersistentVolume
	// affinity and translatedAffinity are the PVs' required node affinity,
	// parsed once: a re-check weighs thousands of such volumes on every
	// node change, and parsing a selector on each check was most of that.
	affinity, translatedAffinity *pvAffinity
}

// pvAffinity is a PV's required node affinity, parsed once, matched as
// volumehelper.CheckNodeAffinity (VolumeBinding's check of a bound claim in
// v1.37.2) matches it: against a node that has only the node's labels and no
// name, so that a term's metadata.name requirements are not checked at all
// (a term of only those matches every node); a term that does not parse
// matches nothing, the others still may. Nil passes every node.
type pvAffinity struct {
	sel *nodeaffinity.LazyErrorNodeSelector
}

func newPVAffinity(pv *v1.PersistentVolume) *pvAffinity {
	if pv == nil || pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return nil
	}
	return &pvAffinity{sel: nodeaffinity.NewLazyErrorNodeSelector(pv.Spec.NodeAffinity.Required)}
}

// passes reports whether a node with labels passes the affinity.
func (a *pvAffinity) passes(labels map[string]string) bool {
	if a == nil {
		return true
	}
	ok, _ := a.sel.Match(&v1.Node{ObjectMeta: metav1.ObjectMeta{Labels: labels}})
	return ok
}

var translator = csitrans.New()

// migratedPlugins are the in-tree plugins VolumeBinding translates (its
// isCSIMigrationOnForPlugin in v1.37.2).
var migratedPlugins = sets.New(csiplugins.AWSEBSInTreePluginName, csiplugins.GCEPDInTreePluginName,
	csiplugins.AzureDiskInTreePluginName, csiplugins.CinderInTreePluginName, csiplugins.PortworxVolumePluginName)

func translate(pv *v1.PersistentVolume) *v1.PersistentVolume {
	if !translator.IsPVMigratable(pv) {
		return nil
	}
	name, err := translator.GetInTreePluginNameFromSpec(pv, nil)
	if err != nil || !migratedPlugins.Has(name) {
		return nil
	}
	t, err := translator.TranslateInTreePVToCSI(klog.Background(), pv)
	if err != nil {
		return nil
	}
	return t
}

// Requirements are a pod's static predicates, parsed once.
type Requirements struct {
	Pod      *v1.Pod
	affinity nodeaffinity.RequiredNodeAffinity
	requests v1.ResourceList
	volumes  []boundVolume
	// identity is true when a predicate names a per-node label or field, so
	// that one node of a shape may pass where another fails.
	identity bool
	opts     *Options
}

// NewRequirements parses pod's static predicates. volumes are its bound
// PVCs' PVs that carry node affinity.
func NewRequirements(pod *v1.Pod, volumes []BoundVolume, opts *Options) *Requirements {
	r := &Requirements{
		Pod:      pod,
		affinity: nodeaffinity.GetRequiredNodeAffinity(pod),
		requests: resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{SkipPodLevelResources: !opts.EnablePodLevelResources}),
		opts:     opts,
	}
	for _, v := range volumes {
		t := translate(v.PV)
		r.volumes = append(r.volumes, boundVolume{BoundVolume: v, translated: t,
			affinity: newPVAffinity(v.PV), translatedAffinity: newPVAffinity(t)})
	}
	r.identity = referencesIdentity(pod, volumes, opts.IdentityLabels)
	return r
}

// Identity reports whether the verdict depends on individual nodes.
func (r *Requirements) Identity() bool { return r.identity }

func referencesIdentity(pod *v1.Pod, volumes []BoundVolume, identity sets.Set[string]) bool {
	for k := range pod.Spec.NodeSelector {
		if identity.Has(k) {
			return true
		}
	}
	termsUse := func(ns *v1.NodeSelector) bool {
		if ns == nil {
			return false
		}
		for _, t := range ns.NodeSelectorTerms {
			if len(t.MatchFields) > 0 {
				return true
			}
			for _, e := range t.MatchExpressions {
				if identity.Has(e.Key) {
					return true
				}
			}
		}
		return false
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && termsUse(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution) {
		return true
	}
	for _, v := range volumes {
		if v.PV.Spec.NodeAffinity != nil && termsUse(v.PV.Spec.NodeAffinity.Required) {
			return true
		}
	}
	return false
}

// ClaimFullyBound mirrors VolumeBinding: a claim is bound once it names its
// volume and the PV controller marked the binding complete.
func ClaimFullyBound(pvc *v1.PersistentVolumeClaim) bool {
	return pvc.Spec.VolumeName != "" && metav1.HasAnnotation(pvc.ObjectMeta, volumehelper.AnnBindCompleted)
}

// Failure is the first static predicate a node fails.
type Failure struct {
	Reason Reason
	// Taint is the untolerated taint, for ReasonTaint.
	Taint *v1.Taint
	// Resources lists the requests above allocatable, for ReasonInsufficientMaximum.
	Resources []v1.ResourceName
	// Allocatable is the node's allocatable, for ReasonInsufficientMaximum.
	Allocatable v1.ResourceList
	// Claim is the claim whose PV rules the node out, for ReasonVolumeNodeAffinity.
	Claim string
	PV    *v1.PersistentVolume
}

// Check evaluates the static predicates on node, in reasonOrder, exactly as
// the v1.37.2 Filter plugins NodeAffinity, VolumeBinding (bound claims),
// TaintToleration, NodeUnschedulable and NodeResourcesFit (allocatable part)
// do. It returns nil when node passes all of them. A predicate whose plugin
// the profile does not run as a filter (Options.DisabledFilters) passes.
func (r *Requirements) Check(node *v1.Node) *Failure {
	if r.opts.filtered(names.NodeAffinity) {
		if ok, _ := r.affinity.Match(node); !ok {
			return &Failure{Reason: ReasonNodeAffinity}
		}
	}
	if r.opts.filtered(names.VolumeBinding) {
		for _, v := range r.volumes {
			if !v.affinity.passes(node.Labels) &&
				(v.translated == nil || !v.translatedAffinity.passes(node.Labels)) {
				return &Failure{Reason: ReasonVolumeNodeAffinity, Claim: v.Claim, PV: v.PV}
			}
		}
	}
	logger := klog.Background()
	if r.opts.filtered(names.TaintToleration) {
		if t, untolerated := v1helper.FindMatchingUntoleratedTaint(logger, node.Spec.Taints, r.Pod.Spec.Tolerations,
			doNotScheduleTaints, r.opts.EnableTaintTolerationComparisonOperators); untolerated {
			return &Failure{Reason: ReasonTaint, Taint: &t}
		}
	}
	if r.opts.filtered(names.NodeUnschedulable) && node.Spec.Unschedulable &&
		!v1helper.TolerationsTolerateTaint(logger, r.Pod.Spec.Tolerations, &unschedulableTaint,
			r.opts.EnableTaintTolerationComparisonOperators) {
		return &Failure{Reason: ReasonUnschedulable}
	}
	if r.opts.filtered(names.NodeResourcesFit) {
		if over := r.aboveAllocatable(node.Status.Allocatable); len(over) > 0 {
			return &Failure{Reason: ReasonInsufficientMaximum, Resources: over, Allocatable: node.Status.Allocatable}
		}
	}
	return nil
}

var unschedulableTaint = v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}

func doNotScheduleTaints(t *v1.Taint) bool {
	return t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute
}

// aboveAllocatable returns the resources the pod requests beyond what the
// node has in total, which no amount of waiting can change. Like
// NodeResourcesFit, a pod that requests nothing only needs a pod slot, and a
// node without a pods allocatable has none.
func (r *Requirements) aboveAllocatable(alloc v1.ResourceList) []v1.ResourceName {
	var over []v1.ResourceName
	if pods := alloc[v1.ResourcePods]; pods.Value() < 1 {
		over = append(over, v1.ResourcePods)
	}
	for name, req := range r.requests {
		if req.IsZero() || name == v1.ResourcePods {
			continue
		}
		if !compared(name) || r.opts.ignored(name) {
			continue
		}
		if r.delegatedToDRA(name, alloc) {
			continue
		}
		have := alloc[name]
		if exceeds(name, req, have) {
			over = append(over, name)
		}
	}
	slices.Sort(over)
	return over
}

// delegatedToDRA mirrors NodeResourcesFit's shouldDelegateResourceToDRA: a
// resource the node does not advertise (allocatable 0 or absent) and some
// DeviceClass maps is left to DynamicResources, which allocates devices for
// it (the implicit deviceclass.resource.kubernetes.io/<class> name included).
func (r *Requirements) delegatedToDRA(name v1.ResourceName, alloc v1.ResourceList) bool {
	if !r.opts.EnableDRAExtendedResource {
		return false
	}
	if have, ok := alloc[name]; ok && have.Value() > 0 {
		return false
	}
	return r.opts.DeviceClasses.Maps(name)
}

// compared says whether NodeResourcesFit checks the resource at all: the
// native ones and scalar ones (extended, hugepages, attachable volumes).
func compared(name v1.ResourceName) bool {
	switch name {
	case v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage:
		return true
	}
	return schedutil.IsScalarResourceName(name)
}

func exceeds(name v1.ResourceName, req, have resource.Quantity) bool {
	if name == v1.ResourceCPU {
		return req.MilliValue() > have.MilliValue()
	}
	return req.Value() > have.Value()
}

// Requests returns the pod's requests as the scheduler computes them.
func (r *Requirements) Requests() v1.ResourceList { return r.requests }

// describeTaint renders a taint the way kubectl does: key=value:Effect.
func describeTaint(t *v1.Taint) string {
	if t.Value == "" {
		return fmt.Sprintf("%s:%s", t.Key, t.Effect)
	}
	return fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
}

// describeTolerations renders everything the pod tolerates, for a message:
// the NoExecute defaults that admission adds included, since a user reading
// "tolerates node.kubernetes.io/not-ready:NoExecute" next to a NoSchedule
// taint of that key sees why it does not help.
func describeTolerations(tols []v1.Toleration) string {
	if len(tols) == 0 {
		return "pod has no tolerations"
	}
	var parts []string
	for _, t := range tols {
		s := t.Key
		if t.Operator == v1.TolerationOpExists {
			if s == "" {
				s = "*"
			}
		} else if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		parts = append(parts, s)
	}
	sort.Strings(parts)
	return "pod tolerates " + strings.Join(parts, ", ")
}
