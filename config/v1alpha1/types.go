// Package v1alpha1 holds the versioned arguments of the Ballast scheduler
// plugins, as written in a KubeSchedulerConfiguration's pluginConfig.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupVersion of the plugin args. `apiVersion` and `kind` may be omitted in
// pluginConfig; when given they must match.
const (
	GroupVersion          = "ballast.k8s.io/v1alpha1"
	HopelessPodsArgsKind  = "HopelessPodsArgs"
	DefaultIdentityLabel  = "kubernetes.io/hostname"
	DefaultStatusWriteQPS = 20
)

// HopelessPodsArgs configures the HopelessPods plugin.
type HopelessPodsArgs struct {
	metav1.TypeMeta `json:",inline"`

	// Autoscaling says whether nodes can be added by cluster-autoscaler. When
	// true, node-group templates are read from NodeGroupsConfigMap and a pod
	// that fits a template is never parked; when the templates are missing or
	// stale, nothing is parked.
	Autoscaling *bool `json:"autoscaling,omitempty"`
	// NodeGroupsConfigMap locates the node-group templates.
	NodeGroupsConfigMap *ConfigMapRef `json:"nodeGroupsConfigMap,omitempty"`
	// MaxTemplateAge is how old the templates' generatedAt may get before the
	// plugin stops trusting them. 0 disables the check (hand-written lists).
	MaxTemplateAge *metav1.Duration `json:"maxTemplateAge,omitempty"`
	// IdentityLabels are node labels unique per node (kept out of node shapes
	// so that a cluster has tens of shapes, not thousands).
	IdentityLabels []string `json:"identityLabels,omitempty"`
	// NarrowFilter lets PreFilter restrict Filter to the nodes whose shape
	// passes the pod's static predicates. Off by default: the nodes left out
	// are then reported as "didn't satisfy plugin(s) [HopelessPods]" in the
	// message of a pod that stays pending, instead of their real reasons.
	NarrowFilter *bool `json:"narrowFilter,omitempty"`
	// GateAtPreEnqueue keeps pods of signatures known to be hopeless out of
	// the active queue (no scheduling attempt at all). When false they are
	// rejected at PreFilter, once per attempt.
	GateAtPreEnqueue *bool `json:"gateAtPreEnqueue,omitempty"`
	// StatusWritesPerSecond bounds the PodScheduled condition writes the
	// plugin makes for pods it parks at PreEnqueue.
	StatusWritesPerSecond *int32 `json:"statusWritesPerSecond,omitempty"`
}

// ConfigMapRef names a ConfigMap.
type ConfigMapRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}
