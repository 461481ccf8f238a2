package v1alpha1

import (
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidateHopelessPodsArgs checks defaulted args; paths start at path.
func ValidateHopelessPodsArgs(path *field.Path, a *HopelessPodsArgs) field.ErrorList {
	var errs field.ErrorList
	if a.APIVersion != "" && a.APIVersion != GroupVersion {
		errs = append(errs, field.NotSupported(path.Child("apiVersion"), a.APIVersion, []string{GroupVersion}))
	}
	if a.Kind != "" && a.Kind != HopelessPodsArgsKind {
		errs = append(errs, field.NotSupported(path.Child("kind"), a.Kind, []string{HopelessPodsArgsKind}))
	}
	if cm := a.NodeGroupsConfigMap; cm != nil {
		p := path.Child("nodeGroupsConfigMap")
		for _, msg := range apivalidation.ValidateNamespaceName(cm.Namespace, false) {
			errs = append(errs, field.Invalid(p.Child("namespace"), cm.Namespace, msg))
		}
		for _, msg := range apivalidation.NameIsDNSSubdomain(cm.Name, false) {
			errs = append(errs, field.Invalid(p.Child("name"), cm.Name, msg))
		}
	}
	if a.MaxTemplateAge != nil && a.MaxTemplateAge.Duration < 0 {
		errs = append(errs, field.Invalid(path.Child("maxTemplateAge"), a.MaxTemplateAge.Duration.String(), "must not be negative"))
	}
	for i, l := range a.IdentityLabels {
		errs = append(errs, metavalidation.ValidateLabelName(l, path.Child("identityLabels").Index(i))...)
	}
	if q := a.StatusWritesPerSecond; q != nil && (*q < 1 || *q > 1000) {
		errs = append(errs, field.Invalid(path.Child("statusWritesPerSecond"), *q, "must be between 1 and 1000"))
	}
	return errs
}
