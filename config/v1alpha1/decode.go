package v1alpha1

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/ballast-k8s/ballast/config/internal/strict"
)

// DecodeHopelessPodsArgs turns the scheduler's raw pluginConfig args into
// defaulted, validated args. Unknown fields are errors that name the field.
func DecodeHopelessPodsArgs(obj runtime.Object) (*HopelessPodsArgs, error) {
	args := &HopelessPodsArgs{}
	switch o := obj.(type) {
	case nil:
	case *HopelessPodsArgs:
		args = o.DeepCopy()
	case *runtime.Unknown:
		if len(o.Raw) > 0 {
			if err := strict.Unmarshal(o.Raw, args); err != nil {
				return nil, fmt.Errorf("decoding HopelessPods args: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("want HopelessPods args of type runtime.Unknown, got %T", obj)
	}
	SetDefaults_HopelessPodsArgs(args)
	if errs := ValidateHopelessPodsArgs(field.NewPath("args"), args); len(errs) > 0 {
		return nil, fmt.Errorf("invalid HopelessPods args: %w", errs.ToAggregate())
	}
	return args, nil
}

// EncodeHopelessPodsArgs renders args as JSON, with apiVersion and kind set.
func EncodeHopelessPodsArgs(a *HopelessPodsArgs) ([]byte, error) {
	c := a.DeepCopy()
	c.APIVersion, c.Kind = GroupVersion, HopelessPodsArgsKind
	return json.Marshal(c)
}

// DeepCopy returns a copy that shares nothing with a.
func (a *HopelessPodsArgs) DeepCopy() *HopelessPodsArgs {
	if a == nil {
		return nil
	}
	c := *a
	if a.Autoscaling != nil {
		c.Autoscaling = new(bool)
		*c.Autoscaling = *a.Autoscaling
	}
	if a.NodeGroupsConfigMap != nil {
		r := *a.NodeGroupsConfigMap
		c.NodeGroupsConfigMap = &r
	}
	if a.MaxTemplateAge != nil {
		d := *a.MaxTemplateAge
		c.MaxTemplateAge = &d
	}
	if a.IdentityLabels != nil {
		c.IdentityLabels = append([]string(nil), a.IdentityLabels...)
	}
	if a.NarrowFilter != nil {
		c.NarrowFilter = new(bool)
		*c.NarrowFilter = *a.NarrowFilter
	}
	if a.GateAtPreEnqueue != nil {
		c.GateAtPreEnqueue = new(bool)
		*c.GateAtPreEnqueue = *a.GateAtPreEnqueue
	}
	if a.StatusWritesPerSecond != nil {
		c.StatusWritesPerSecond = new(int32)
		*c.StatusWritesPerSecond = *a.StatusWritesPerSecond
	}
	return &c
}

// DeepCopyObject implements runtime.Object.
func (a *HopelessPodsArgs) DeepCopyObject() runtime.Object { return a.DeepCopy() }
