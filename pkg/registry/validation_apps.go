package registry

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func validateDeploymentObj(obj, old runtime.Object) field.ErrorList {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return nil
	}
	specPath := field.NewPath("spec")
	errs := validateWorkloadSelector(d.Spec.Selector, d.Spec.Replicas, d.Spec.MinReadySeconds, &d.Spec.Template, "Deployment", specPath)
	errs = append(errs, validateDeploymentStrategy(&d.Spec.Strategy, specPath.Child("strategy"))...)
	if l := d.Spec.RevisionHistoryLimit; l != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*l), specPath.Child("revisionHistoryLimit"))...)
	}
	if p := d.Spec.ProgressDeadlineSeconds; p != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*p), specPath.Child("progressDeadlineSeconds"))...)
		if *p <= d.Spec.MinReadySeconds {
			errs = append(errs, field.Invalid(specPath.Child("progressDeadlineSeconds"), *p, "must be greater than minReadySeconds"))
		}
	}
	if o, ok := old.(*appsv1.Deployment); ok && o != nil {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(d.Spec.Selector, o.Spec.Selector, specPath.Child("selector"))...)
	}
	return errs
}

func validateReplicaSetObj(obj, old runtime.Object) field.ErrorList {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return nil
	}
	specPath := field.NewPath("spec")
	errs := validateWorkloadSelector(rs.Spec.Selector, rs.Spec.Replicas, rs.Spec.MinReadySeconds, &rs.Spec.Template, "ReplicaSet", specPath)
	if o, ok := old.(*appsv1.ReplicaSet); ok && o != nil {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(rs.Spec.Selector, o.Spec.Selector, specPath.Child("selector"))...)
	}
	return errs
}

// validateWorkloadSelector checks what Deployments and ReplicaSets share:
// replicas, minReadySeconds, a non-empty selector matching the template's
// labels, and a template whose pods always restart.
func validateWorkloadSelector(sel *metav1.LabelSelector, replicas *int32, minReady int32, tmpl *corev1.PodTemplateSpec, kind string, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(replicasOr1(replicas)), specPath.Child("replicas"))...)
	errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(minReady), specPath.Child("minReadySeconds"))...)
	if sel == nil {
		errs = append(errs, field.Required(specPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, specPath.Child("selector"))...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			// Kubernetes words this the same for ReplicaSets.
			errs = append(errs, field.Invalid(specPath.Child("selector"), sel, "empty selector is invalid for deployment"))
		}
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return append(errs, field.Invalid(specPath.Child("selector"), sel, "invalid label selector"))
	}
	tp := specPath.Child("template")
	if !selector.Empty() && !selector.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, validatePodTemplate(tmpl, kind, tp)...)
	return errs
}

// validatePodTemplate checks a workload's template: labels, annotations,
// the pod spec, restartPolicy Always and no activeDeadlineSeconds.
func validatePodTemplate(t *corev1.PodTemplateSpec, kind string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, fldPath.Child("metadata", "labels"))...)
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(t.Annotations, fldPath.Child("metadata", "annotations"))...)
	errs = append(errs, ValidatePodSpec(&t.Spec, fldPath.Child("spec"))...)
	if t.Spec.RestartPolicy != "" && t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(fldPath.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(fldPath.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in "+kind+" is not Supported"))
	}
	return errs
}

func validateDeploymentStrategy(s *appsv1.DeploymentStrategy, fldPath *field.Path) field.ErrorList {
	switch s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			return field.ErrorList{field.Forbidden(fldPath.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")}
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if s.RollingUpdate == nil {
			return field.ErrorList{field.Required(fldPath.Child("rollingUpdate"), "this should be defaulted and never be nil")}
		}
		return validateRollingUpdate(s.RollingUpdate, fldPath.Child("rollingUpdate"))
	default:
		return field.ErrorList{field.NotSupported(fldPath.Child("type"), s.Type, []appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType})}
	}
	return nil
}

func validateRollingUpdate(ru *appsv1.RollingUpdateDeployment, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	unavailPath, surgePath := fldPath.Child("maxUnavailable"), fldPath.Child("maxSurge")
	errs = append(errs, validateIntOrPercent(ru.MaxUnavailable, unavailPath)...)
	errs = append(errs, validateIntOrPercent(ru.MaxSurge, surgePath)...)
	if intOrPercentValue(ru.MaxUnavailable) == 0 && intOrPercentValue(ru.MaxSurge) == 0 {
		errs = append(errs, field.Invalid(unavailPath, intOrStringValue(ru.MaxUnavailable), "may not be 0 when `maxSurge` is 0"))
	}
	if v, pct := percentValue(ru.MaxUnavailable); pct && v > 100 {
		errs = append(errs, field.Invalid(unavailPath, ru.MaxUnavailable.StrVal, "must not be greater than 100%"))
	}
	return errs
}

// intOrStringValue is the value as a user wrote it, for error messages.
func intOrStringValue(v *intstr.IntOrString) interface{} {
	if v == nil {
		return nil
	}
	if v.Type == intstr.String {
		return v.StrVal
	}
	return v.IntVal
}

func validateIntOrPercent(v *intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	var errs field.ErrorList
	if v.Type == intstr.String {
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(fldPath, v.StrVal, msg))
		}
		return errs
	}
	return apimachineryvalidation.ValidateNonnegativeField(int64(v.IntVal), fldPath)
}

func percentValue(v *intstr.IntOrString) (int, bool) {
	if v == nil || v.Type != intstr.String || len(validation.IsValidPercent(v.StrVal)) > 0 {
		return 0, false
	}
	n, _ := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	return n, true
}

func intOrPercentValue(v *intstr.IntOrString) int {
	if v == nil {
		return 0
	}
	if n, ok := percentValue(v); ok {
		return n
	}
	return v.IntValue()
}

func validateRCObj(obj, old runtime.Object) field.ErrorList {
	rc, ok := obj.(*corev1.ReplicationController)
	if !ok {
		return nil
	}
	specPath := field.NewPath("spec")
	var errs field.ErrorList
	errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(rc.Spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if len(rc.Spec.Selector) == 0 {
		errs = append(errs, field.Required(specPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(rc.Spec.Selector, specPath.Child("selector"))...)
	}
	errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(replicasOr1(rc.Spec.Replicas)), specPath.Child("replicas"))...)
	tp := specPath.Child("template")
	if rc.Spec.Template == nil {
		return append(errs, field.Required(tp, ""))
	}
	sel := labels.Set(rc.Spec.Selector).AsSelector()
	if !sel.Empty() && !sel.Matches(labels.Set(rc.Spec.Template.Labels)) {
		errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), rc.Spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	return append(errs, validatePodTemplate(rc.Spec.Template, "ReplicationController", tp)...)
}
