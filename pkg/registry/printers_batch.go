package registry

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var jobColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Status", "string", "Status of the job."),
	column("Completions", "string", batchv1.JobStatus{}.SwaggerDoc()["succeeded"]),
	column("Duration", "string", "Time required to complete the job."),
	ageColumn,
	wideColumn("Containers", "string", "Names of each container in the template."),
	wideColumn("Images", "string", "Images referenced by each container in the template."),
	wideColumn("Selector", "string", batchv1.JobSpec{}.SwaggerDoc()["selector"]),
}

func jobRow(obj runtime.Object, now time.Time) []interface{} {
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return nil
	}
	names, images := containersAndImages(job.Spec.Template.Spec.Containers)
	return []interface{}{
		job.Name, jobStatus(job), jobCompletions(job), jobDuration(job, now),
		age(job.CreationTimestamp, now), names, images, selectorString(job.Spec.Selector),
	}
}

// jobStatus is the STATUS cell: the finished conditions first, then
// Terminating, Suspended, the interim conditions, else Running.
func jobStatus(job *batchv1.Job) string {
	conds := job.Status.Conditions
	switch {
	case HasJobCondition(conds, batchv1.JobComplete):
		return "Complete"
	case HasJobCondition(conds, batchv1.JobFailed):
		return "Failed"
	case job.DeletionTimestamp != nil:
		return "Terminating"
	case HasJobCondition(conds, batchv1.JobSuspended):
		return "Suspended"
	case HasJobCondition(conds, batchv1.JobFailureTarget):
		return "FailureTarget"
	case HasJobCondition(conds, batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}

// HasJobCondition reports whether conds holds a true condition of type t.
func HasJobCondition(conds []batchv1.JobCondition, t batchv1.JobConditionType) bool {
	for _, c := range conds {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// jobCompletions is "succeeded/completions"; a Job without completions
// finishes on its first success, "n/1", with "of <parallelism>" when more
// than one pod runs at a time.
func jobCompletions(job *batchv1.Job) string {
	if c := job.Spec.Completions; c != nil {
		return fmt.Sprintf("%d/%d", job.Status.Succeeded, *c)
	}
	if p := job.Spec.Parallelism; p != nil && *p > 1 {
		return fmt.Sprintf("%d/1 of %d", job.Status.Succeeded, *p)
	}
	return fmt.Sprintf("%d/1", job.Status.Succeeded)
}

// jobDuration is how long the Job ran (until now while it runs), empty
// before it started.
func jobDuration(job *batchv1.Job, now time.Time) string {
	st := job.Status
	switch {
	case st.StartTime == nil:
		return ""
	case st.CompletionTime == nil:
		return HumanDuration(now.Sub(st.StartTime.Time))
	}
	return HumanDuration(st.CompletionTime.Sub(st.StartTime.Time))
}
