package registry

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// jobRestartPolicies are the restart policies a Job's pods may have.
var jobRestartPolicies = []corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}

func validateJobObj(obj, old runtime.Object) field.ErrorList {
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return nil
	}
	specPath := field.NewPath("spec")
	errs := validateJobSpec(&job.Spec, specPath)
	if o, ok := old.(*batchv1.Job); ok && o != nil {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(job.Spec.Selector, o.Spec.Selector, specPath.Child("selector"))...)
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(job.Spec.Template, o.Spec.Template, specPath.Child("template"))...)
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(job.Spec.Completions, o.Spec.Completions, specPath.Child("completions"))...)
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(job.Spec.CompletionMode, o.Spec.CompletionMode, specPath.Child("completionMode"))...)
	}
	return errs
}

func validateJobSpec(s *batchv1.JobSpec, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	nonNegative := func(v *int32, name string) {
		if v != nil {
			errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*v), specPath.Child(name))...)
		}
	}
	nonNegative(s.Parallelism, "parallelism")
	nonNegative(s.Completions, "completions")
	nonNegative(s.BackoffLimit, "backoffLimit")
	nonNegative(s.TTLSecondsAfterFinished, "ttlSecondsAfterFinished")
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(*s.ActiveDeadlineSeconds, specPath.Child("activeDeadlineSeconds"))...)
	}
	if m := s.CompletionMode; m != nil && *m != batchv1.NonIndexedCompletion {
		// skiff's job controller runs NonIndexed jobs only.
		errs = append(errs, field.NotSupported(specPath.Child("completionMode"), *m, []batchv1.CompletionMode{batchv1.NonIndexedCompletion}))
	}
	if s.BackoffLimitPerIndex != nil {
		errs = append(errs, field.Forbidden(specPath.Child("backoffLimitPerIndex"), "requires indexed completion mode, which skiff's job controller does not run"))
	}
	if s.MaxFailedIndexes != nil {
		errs = append(errs, field.Forbidden(specPath.Child("maxFailedIndexes"), "requires indexed completion mode, which skiff's job controller does not run"))
	}
	if s.PodFailurePolicy != nil {
		errs = append(errs, field.Forbidden(specPath.Child("podFailurePolicy"), "not supported by skiff's job controller; remove it and use backoffLimit"))
	}
	if s.SuccessPolicy != nil {
		errs = append(errs, field.Forbidden(specPath.Child("successPolicy"), "not supported by skiff's job controller; remove it and use completions"))
	}
	if p := s.PodReplacementPolicy; p != nil && *p != batchv1.TerminatingOrFailed && *p != batchv1.Failed {
		errs = append(errs, field.NotSupported(specPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.TerminatingOrFailed, batchv1.Failed}))
	}

	sel := s.Selector
	if sel == nil {
		errs = append(errs, field.Required(specPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, specPath.Child("selector"))...)
	}
	tp := specPath.Child("template")
	if selector, err := metav1.LabelSelectorAsSelector(sel); err == nil && sel != nil {
		if !selector.Empty() && !selector.Matches(labels.Set(s.Template.Labels)) {
			errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
		}
	}
	return append(errs, validateJobTemplate(&s.Template, tp)...)
}

// validateJobTemplate checks a Job's pod template like any other, except
// that its restartPolicy must be OnFailure or Never.
func validateJobTemplate(t *corev1.PodTemplateSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, fldPath.Child("metadata", "labels"))...)
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(t.Annotations, fldPath.Child("metadata", "annotations"))...)
	rpPath := fldPath.Child("spec", "restartPolicy")
	for _, e := range ValidatePodSpec(&t.Spec, fldPath.Child("spec")) {
		if e.Field != rpPath.String() {
			errs = append(errs, e)
		}
	}
	switch rp := t.Spec.RestartPolicy; {
	case rp == "":
		errs = append(errs, field.Required(rpPath, fmt.Sprintf("valid values: %q, %q", corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)))
	case !contains(jobRestartPolicies, rp):
		errs = append(errs, field.NotSupported(rpPath, rp, jobRestartPolicies))
	}
	return errs
}
