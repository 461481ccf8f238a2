package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ballast-k8s/ballast/config/nodegroups"
)

// SetDefaults_HopelessPodsArgs fills every unset field.
func SetDefaults_HopelessPodsArgs(a *HopelessPodsArgs) { //nolint:revive // upstream naming of defaulters
	if a.Autoscaling == nil {
		a.Autoscaling = ptr.To(false)
	}
	if a.NodeGroupsConfigMap == nil {
		a.NodeGroupsConfigMap = &ConfigMapRef{}
	}
	if a.NodeGroupsConfigMap.Namespace == "" {
		a.NodeGroupsConfigMap.Namespace = nodegroups.DefaultNamespace
	}
	if a.NodeGroupsConfigMap.Name == "" {
		a.NodeGroupsConfigMap.Name = nodegroups.DefaultName
	}
	if a.MaxTemplateAge == nil {
		a.MaxTemplateAge = &metav1.Duration{Duration: 10 * time.Minute}
	}
	if a.IdentityLabels == nil {
		a.IdentityLabels = []string{DefaultIdentityLabel}
	}
	if a.NarrowFilter == nil {
		a.NarrowFilter = ptr.To(false)
	}
	if a.GateAtPreEnqueue == nil {
		a.GateAtPreEnqueue = ptr.To(true)
	}
	if a.StatusWritesPerSecond == nil {
		a.StatusWritesPerSecond = ptr.To[int32](DefaultStatusWriteQPS)
	}
}
