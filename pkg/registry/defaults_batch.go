package registry

import (
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels a Job's generated selector matches, on the Job's template and so on
// its pods: the current ones and the legacy unprefixed ones older clients
// select on.
const (
	JobControllerUIDLabel       = "batch.kubernetes.io/controller-uid"
	JobNameLabel                = "batch.kubernetes.io/job-name"
	LegacyJobControllerUIDLabel = "controller-uid"
	LegacyJobNameLabel          = "job-name"
)

// prepareJob generates a new Job's selector unless spec.manualSelector is
// true: the Job's uid (already set on create) and name go on the template's
// labels, and the selector matches the uid.
func prepareJob(job *batchv1.Job) {
	if job.Spec.ManualSelector != nil && *job.Spec.ManualSelector {
		return
	}
	uid, name := string(job.UID), job.Name
	if job.Spec.Template.Labels == nil {
		job.Spec.Template.Labels = map[string]string{}
	}
	l := job.Spec.Template.Labels
	l[JobControllerUIDLabel] = uid
	l[JobNameLabel] = name
	l[LegacyJobControllerUIDLabel] = uid
	l[LegacyJobNameLabel] = name
	job.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{JobControllerUIDLabel: uid}}
}

// DefaultJob sets Kubernetes' batch/v1 defaults: parallelism and completions
// 1 when both are unset (completions stays unset when only parallelism is
// given), backoffLimit 6, completionMode NonIndexed, suspend false,
// podReplacementPolicy TerminatingOrFailed, and the Job's labels from its
// template's when it has none. The template is defaulted as any pod
// template, except that an unset restartPolicy stays unset: a Job's pods
// must say OnFailure or Never themselves.
func DefaultJob(job *batchv1.Job) {
	s := &job.Spec
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptrTo(int32(1))
	}
	if s.Parallelism == nil {
		s.Parallelism = ptrTo(int32(1))
	}
	if s.BackoffLimit == nil {
		s.BackoffLimit = ptrTo(int32(6))
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptrTo(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptrTo(false)
	}
	if s.PodReplacementPolicy == nil {
		s.PodReplacementPolicy = ptrTo(batchv1.TerminatingOrFailed)
	}
	if len(job.Labels) == 0 && len(s.Template.Labels) > 0 {
		job.Labels = copyMap(s.Template.Labels)
	}
	restart := s.Template.Spec.RestartPolicy
	DefaultPodSpec(&s.Template.Spec)
	s.Template.Spec.RestartPolicy = restart
}
