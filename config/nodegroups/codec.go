package nodegroups

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/ballast-k8s/ballast/config/internal/strict"
)

// Decode parses and validates the document of a ConfigMap's data. Unknown
// fields are errors: a typo must not silently drop a template.
func Decode(data map[string]string) (*NodeGroupList, error) {
	raw, ok := data[DataKey]
	if !ok {
		return nil, fmt.Errorf("data key %q is missing", DataKey)
	}
	list := &NodeGroupList{}
	if err := strict.Unmarshal([]byte(raw), list); err != nil {
		return nil, fmt.Errorf("%s: %w", DataKey, err)
	}
	if errs := Validate(list); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", DataKey, errs.ToAggregate())
	}
	return list, nil
}

// Encode validates the list and renders the ConfigMap data.
func Encode(list *NodeGroupList) (map[string]string, error) {
	list.APIVersion, list.Kind = APIVersion, Kind
	if errs := Validate(list); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	out, err := yaml.Marshal(list)
	if err != nil {
		return nil, err
	}
	return map[string]string{DataKey: string(out)}, nil
}

// Stale reports whether the list is older than maxAge at now. A list without
// generatedAt, or maxAge 0, is never stale.
func (l *NodeGroupList) Stale(now time.Time, maxAge time.Duration) bool {
	if maxAge <= 0 || l.GeneratedAt == nil {
		return false
	}
	return now.Sub(*l.GeneratedAt) > maxAge
}

// Validate returns every problem of the list, with field paths.
func Validate(l *NodeGroupList) field.ErrorList {
	var errs field.ErrorList
	if l.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), l.APIVersion, []string{APIVersion}))
	}
	if l.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), l.Kind, []string{Kind}))
	}
	seen := map[string]bool{}
	for i := range l.NodeGroups {
		g := &l.NodeGroups[i]
		p := field.NewPath("nodeGroups").Index(i)
		if g.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else if seen[g.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), g.Name))
		}
		seen[g.Name] = true
		if g.MinSize < 0 {
			errs = append(errs, field.Invalid(p.Child("minSize"), g.MinSize, "must be >= 0"))
		}
		if g.MaxSize < g.MinSize {
			errs = append(errs, field.Invalid(p.Child("maxSize"), g.MaxSize, "must be >= minSize"))
		}
		if g.CurrentSize < 0 {
			errs = append(errs, field.Invalid(p.Child("currentSize"), g.CurrentSize, "must be >= 0"))
		}
		errs = append(errs, validateNode(p, g.Labels, g.Taints, g.Allocatable)...)
		if len(g.Variants) > MaxVariants {
			errs = append(errs, field.TooMany(p.Child("variants"), len(g.Variants), MaxVariants))
		}
		for j := range g.Variants {
			v := &g.Variants[j]
			errs = append(errs, validateNode(p.Child("variants").Index(j), v.Labels, v.Taints, v.Allocatable)...)
		}
	}
	return errs
}

// validateNode checks the labels, taints and allocatable of a template (a
// group's own or a variant's) at path p.
func validateNode(p *field.Path, labels map[string]string, taints []v1.Taint, allocatable v1.ResourceList) field.ErrorList {
	var errs field.ErrorList
	for k, v := range labels {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(k), v, msg))
		}
	}
	for j, t := range taints {
		tp := p.Child("taints").Index(j)
		if t.Key == "" {
			errs = append(errs, field.Required(tp.Child("key"), ""))
		}
		switch t.Effect {
		case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
		default:
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect,
				[]string{string(v1.TaintEffectNoSchedule), string(v1.TaintEffectPreferNoSchedule), string(v1.TaintEffectNoExecute)}))
		}
	}
	if len(allocatable) == 0 {
		errs = append(errs, field.Required(p.Child("allocatable"), "a template without allocatable would fit nothing"))
	}
	for k, q := range allocatable {
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(p.Child("allocatable").Key(string(k)), q.String(), "must not be negative"))
		}
	}
	return errs
}
