package shapes

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
)

// Messages shown to users. Every message starts with MessagePrefix so that a
// person (or a script) can tell Ballast's verdict from the scheduler's own.
const (
	MessagePrefix         = "hopeless: "
	msgNoNodes            = "the cluster has no nodes and no node group could add one"
	msgNodeAffinity       = "no node or node group matches the pod's node selector and required node affinity (%s)"
	msgVolumeNodeAffinity = "PersistentVolume %s bound to claim %s requires %s, and no node or node group that exists or could be added matches it (the node it was on is gone)"
	msgTaint              = "no node or node group tolerates %s %s (%s)"
	msgUnschedulable      = "every node the pod could use is cordoned (spec.unschedulable) and no node group could add one"
	msgRequests           = "the pod requests %s, more than the allocatable of any node or node group it could use (largest: %s)"
	msgUnmapped           = "; no node or node group advertises %s and no DeviceClass maps it"
	fixHint               = "; the pod stays pending until a node or node group that could host it appears"
)

// summarize picks the reason the pod got furthest with: failures at the last
// predicate reached concern the nodes the pod really targets.
func summarize(r *Requirements, failures []*Failure) (Reason, string) {
	if len(failures) == 0 {
		return ReasonNodeAffinity, MessagePrefix + msgNoNodes
	}
	reasons := sortedReasons(failures)
	reason := reasons[len(reasons)-1]
	var at []*Failure
	for _, f := range failures {
		if f.Reason == reason {
			at = append(at, f)
		}
	}
	var msg string
	switch reason {
	case ReasonNodeAffinity:
		msg = fmt.Sprintf(msgNodeAffinity, describeAffinity(r.Pod))
	case ReasonVolumeNodeAffinity:
		f := at[0]
		msg = fmt.Sprintf(msgVolumeNodeAffinity, f.PV.Name, f.Claim, describeNodeSelector(f.PV.Spec.NodeAffinity.Required))
	case ReasonTaint:
		seen := map[string]bool{}
		var taints []string
		for _, f := range at {
			d := describeTaint(f.Taint)
			if !seen[d] {
				seen[d] = true
				taints = append(taints, d)
			}
		}
		sort.Strings(taints)
		noun := "taint"
		if len(taints) > 1 {
			noun = "taints"
		}
		msg = fmt.Sprintf(msgTaint, noun, strings.Join(taints, ", "), describeTolerations(r.Pod.Spec.Tolerations))
	case ReasonUnschedulable:
		msg = msgUnschedulable
	case ReasonInsufficientMaximum:
		names := map[v1.ResourceName]bool{}
		largest := v1.ResourceList{}
		for _, f := range at {
			for _, n := range f.Resources {
				names[n] = true
				if q, ok := f.Allocatable[n]; ok {
					if cur, ok := largest[n]; !ok || q.Cmp(cur) > 0 {
						largest[n] = q
					}
				}
			}
		}
		var req, have []string
		for _, n := range sortedNames(names) {
			q := r.requests[n]
			if n == v1.ResourcePods {
				q = *resource.NewQuantity(1, resource.DecimalSI)
			}
			req = append(req, fmt.Sprintf("%s=%s", n, q.String()))
			l, ok := largest[n]
			if !ok {
				have = append(have, fmt.Sprintf("%s=0", n))
				continue
			}
			have = append(have, fmt.Sprintf("%s=%s", n, l.String()))
		}
		msg = fmt.Sprintf(msgRequests, strings.Join(req, ", "), strings.Join(have, ", "))
		var unmapped []string
		for _, n := range sortedNames(names) {
			if _, ok := largest[n]; !ok && schedutil.IsDRAExtendedResourceName(n) {
				unmapped = append(unmapped, string(n))
			}
		}
		if len(unmapped) > 0 {
			msg += fmt.Sprintf(msgUnmapped, strings.Join(unmapped, ", "))
		}
	}
	return reason, MessagePrefix + msg + fixHint
}

func sortedNames(m map[v1.ResourceName]bool) []v1.ResourceName {
	out := make([]v1.ResourceName, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func describeAffinity(pod *v1.Pod) string {
	var parts []string
	if len(pod.Spec.NodeSelector) > 0 {
		var sel []string
		for k, v := range pod.Spec.NodeSelector {
			sel = append(sel, k+"="+v)
		}
		sort.Strings(sel)
		parts = append(parts, "nodeSelector "+strings.Join(sel, ","))
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		parts = append(parts, "required node affinity "+describeNodeSelector(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

func describeNodeSelector(ns *v1.NodeSelector) string {
	if ns == nil {
		return "any node"
	}
	var terms []string
	for _, t := range ns.NodeSelectorTerms {
		var reqs []string
		for _, e := range t.MatchExpressions {
			reqs = append(reqs, describeRequirement(e))
		}
		for _, e := range t.MatchFields {
			reqs = append(reqs, describeRequirement(e))
		}
		terms = append(terms, strings.Join(reqs, " and "))
	}
	return strings.Join(terms, " or ")
}

func describeRequirement(e v1.NodeSelectorRequirement) string {
	switch e.Operator {
	case v1.NodeSelectorOpExists, v1.NodeSelectorOpDoesNotExist:
		return fmt.Sprintf("%s %s", e.Key, e.Operator)
	}
	return fmt.Sprintf("%s %s [%s]", e.Key, e.Operator, strings.Join(e.Values, ","))
}
