package registry

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/yaml"
)

const jobBase = `
metadata: {name: pi, namespace: default, uid: u1}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: busybox}]
`

// newJob decodes a Job and prepares and defaults it as the handler does on
// create.
func newJob(t *testing.T, s string) *batchv1.Job {
	t.Helper()
	job := &batchv1.Job{}
	if err := yaml.UnmarshalStrict([]byte(s), job); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	r := Lookup("batch", "jobs")
	r.PrepareForCreate(job)
	r.Default(job)
	return job
}

func TestDefaultJob(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	tests := []struct {
		name                     string
		spec                     string
		parallelism, completions *int32
		backoff                  int32
	}{
		{"both unset", "", i32(1), i32(1), 6},
		{"parallelism only", "  parallelism: 3\n", i32(3), nil, 6},
		{"completions only", "  completions: 5\n", i32(1), i32(5), 6},
		{"backoffLimit kept", "  backoffLimit: 0\n", i32(1), i32(1), 0},
	}
	for _, tt := range tests {
		job := newJob(t, strings.Replace(jobBase, "spec:\n  template", "spec:\n"+tt.spec+"  template", 1))
		s := job.Spec
		if !reflect.DeepEqual(s.Parallelism, tt.parallelism) || !reflect.DeepEqual(s.Completions, tt.completions) || *s.BackoffLimit != tt.backoff {
			t.Errorf("%s: parallelism %v completions %v backoffLimit %d, want %v %v %d", tt.name,
				ptrString(s.Parallelism), ptrString(s.Completions), *s.BackoffLimit, ptrString(tt.parallelism), ptrString(tt.completions), tt.backoff)
		}
		if *s.CompletionMode != batchv1.NonIndexedCompletion || *s.Suspend || *s.PodReplacementPolicy != batchv1.TerminatingOrFailed || s.ManualSelector != nil {
			t.Errorf("%s: completionMode %v suspend %v podReplacementPolicy %v manualSelector %v", tt.name,
				*s.CompletionMode, *s.Suspend, *s.PodReplacementPolicy, s.ManualSelector)
		}
	}
}

func ptrString(p *int32) string {
	if p == nil {
		return "nil"
	}
	return strconv.Itoa(int(*p))
}

func TestPrepareJobSelector(t *testing.T) {
	job := newJob(t, jobBase)
	wantLabels := map[string]string{
		"batch.kubernetes.io/controller-uid": "u1", "batch.kubernetes.io/job-name": "pi",
		"controller-uid": "u1", "job-name": "pi",
	}
	if !reflect.DeepEqual(job.Spec.Template.Labels, wantLabels) {
		t.Errorf("template labels = %v, want %v", job.Spec.Template.Labels, wantLabels)
	}
	if !reflect.DeepEqual(job.Labels, wantLabels) {
		t.Errorf("job labels = %v, want the template's %v", job.Labels, wantLabels)
	}
	wantSel := &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "u1"}}
	if !reflect.DeepEqual(job.Spec.Selector, wantSel) {
		t.Errorf("selector = %v, want %v", job.Spec.Selector, wantSel)
	}
	if job.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirst || job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("template not defaulted as a pod template: %+v", job.Spec.Template.Spec)
	}

	manual := newJob(t, `
metadata: {name: m, namespace: default, uid: u2}
spec:
  manualSelector: true
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {restartPolicy: Never, containers: [{name: c, image: i}]}
`)
	if !reflect.DeepEqual(manual.Spec.Template.Labels, map[string]string{"a": "b"}) || manual.Spec.Selector.MatchLabels["a"] != "b" {
		t.Errorf("manual selector changed: %v %v", manual.Spec.Template.Labels, manual.Spec.Selector)
	}
}

func TestValidateJob(t *testing.T) {
	r := Lookup("batch", "jobs")
	mod := func(spec string) string {
		return strings.Replace(jobBase, "spec:\n  template", "spec:\n"+spec+"  template", 1)
	}
	tests := []struct {
		name     string
		obj, old string
		want     []string
	}{
		{"valid", jobBase, "", nil},
		{"restartPolicy unset", strings.Replace(jobBase, "      restartPolicy: Never\n", "", 1), "",
			[]string{`spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"`}},
		{"restartPolicy Always", strings.Replace(jobBase, "restartPolicy: Never", "restartPolicy: Always", 1), "",
			[]string{`spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"`}},
		{"negative numbers", mod("  parallelism: -1\n  completions: -2\n  backoffLimit: -3\n"), "",
			[]string{"spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
				"spec.completions: Invalid value: -2: must be greater than or equal to 0",
				"spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0"}},
		{"indexed", mod("  completionMode: Indexed\n"), "",
			[]string{`spec.completionMode: Unsupported value: "Indexed": supported values: "NonIndexed"`}},
		{"backoffLimitPerIndex", mod("  backoffLimitPerIndex: 1\n"), "",
			[]string{"spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode"}},
		{"template immutable", strings.Replace(jobBase, "image: busybox", "image: nginx", 1), jobBase,
			[]string{"spec.template: Invalid value: "}},
		{"completions immutable", mod("  completions: 3\n"), jobBase,
			[]string{"spec.completions: Invalid value: 3: field is immutable"}},
		{"suspend mutable", mod("  suspend: true\n"), jobBase, nil},
	}
	for _, tt := range tests {
		obj := newJob(t, tt.obj)
		var old *batchv1.Job
		if tt.old != "" {
			old = newJob(t, tt.old)
		}
		var errs []string
		if old != nil {
			errs = strings.Split(errStrings(r.Validate(obj, old)), "\n")
		} else {
			errs = strings.Split(errStrings(r.Validate(obj, nil)), "\n")
		}
		if len(errs) == 1 && errs[0] == "" {
			errs = nil
		}
		ok := len(errs) == len(tt.want)
		for i := 0; ok && i < len(errs); i++ {
			ok = strings.HasPrefix(errs[i], tt.want[i])
		}
		if !ok {
			t.Errorf("%s: Validate = %q, want %q", tt.name, errs, tt.want)
		}
		if tt.name == "template immutable" && ok && !strings.HasSuffix(errs[0], "field is immutable") {
			t.Errorf("%s: Validate = %q, want field is immutable", tt.name, errs)
		}
	}
}

func TestJobRow(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	cond := func(ty batchv1.JobConditionType) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: ty, Status: corev1.ConditionTrue}}
	}
	start := ago(3 * time.Minute)
	done := ago(time.Minute)
	tests := []struct {
		name string
		job  batchv1.Job
		want []interface{}
	}{
		{"running", batchv1.Job{Spec: batchv1.JobSpec{Completions: i32(3), Parallelism: i32(2)},
			Status: batchv1.JobStatus{Succeeded: 1, StartTime: &start}},
			[]interface{}{"Running", "1/3", "3m"}},
		{"complete", batchv1.Job{Spec: batchv1.JobSpec{Completions: i32(1)},
			Status: batchv1.JobStatus{Succeeded: 1, StartTime: &start, CompletionTime: &done, Conditions: cond(batchv1.JobComplete)}},
			[]interface{}{"Complete", "1/1", "2m"}},
		{"failed", batchv1.Job{Spec: batchv1.JobSpec{Completions: i32(1)},
			Status: batchv1.JobStatus{StartTime: &start, Conditions: cond(batchv1.JobFailed)}},
			[]interface{}{"Failed", "0/1", "3m"}},
		{"suspended", batchv1.Job{Spec: batchv1.JobSpec{Completions: i32(1)},
			Status: batchv1.JobStatus{Conditions: cond(batchv1.JobSuspended)}},
			[]interface{}{"Suspended", "0/1", ""}},
		{"parallel without completions", batchv1.Job{Spec: batchv1.JobSpec{Parallelism: i32(3)}},
			[]interface{}{"Running", "0/1 of 3", ""}},
		{"single without completions", batchv1.Job{Spec: batchv1.JobSpec{Parallelism: i32(1)}},
			[]interface{}{"Running", "0/1", ""}},
	}
	for _, tt := range tests {
		job := tt.job
		job.Name = "pi"
		job.CreationTimestamp = ago(5 * time.Minute)
		job.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "u"}}
		job.Spec.Template.Spec.Containers = []corev1.Container{{Name: "pi", Image: "busybox"}}
		got := jobRow(&job, now)
		want := append(append([]interface{}{"pi"}, tt.want...), "5m", "pi", "busybox", "batch.kubernetes.io/controller-uid=u")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: jobRow = %v, want %v", tt.name, got, want)
		}
	}
}

func TestJobFields(t *testing.T) {
	job := &batchv1.Job{Status: batchv1.JobStatus{Succeeded: 2}}
	job.Name, job.Namespace = "pi", "ns"
	want := fields.Set{"metadata.name": "pi", "metadata.namespace": "ns", "status.successful": "2"}
	if got := jobFields(job); !reflect.DeepEqual(got, want) {
		t.Errorf("jobFields = %v, want %v", got, want)
	}
}
