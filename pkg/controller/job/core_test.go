package job

import (
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func pods(phases ...v1.PodPhase) []*v1.Pod {
	out := make([]*v1.Pod, len(phases))
	for i, ph := range phases {
		out[i] = &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("p", i), Namespace: "ns"},
			Status: v1.PodStatus{Phase: ph}}
	}
	return out
}

// failedAt returns failed pods whose containers finished at the given times.
func failedAt(times ...time.Time) []*v1.Pod {
	out := make([]*v1.Pod, len(times))
	for i, at := range times {
		p := pods(v1.PodFailed)[0]
		p.Name = fmt.Sprint("f", i)
		p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c",
			State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 1, FinishedAt: metav1.NewTime(at)}}}}
		out[i] = p
	}
	return out
}

type jobOpt func(*batchv1.Job)

func newJob(opts ...jobOpt) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "ns"}}
	j.Spec.Parallelism, j.Spec.Completions, j.Spec.BackoffLimit = ptrTo(int32(1)), ptrTo(int32(1)), ptrTo(int32(6))
	j.Spec.Template.Spec.RestartPolicy = v1.RestartPolicyNever
	for _, o := range opts {
		o(j)
	}
	return j
}

func parallel(p, c int32) jobOpt {
	return func(j *batchv1.Job) { j.Spec.Parallelism, j.Spec.Completions = ptrTo(p), ptrTo(c) }
}
func backoff(n int32) jobOpt { return func(j *batchv1.Job) { j.Spec.BackoffLimit = ptrTo(n) } }
func started(d time.Duration) jobOpt {
	return func(j *batchv1.Job) { s := metav1.NewTime(t0.Add(-d)); j.Status.StartTime = &s }
}
func withCond(t batchv1.JobConditionType, reason string, at time.Time) jobOpt {
	return func(j *batchv1.Job) {
		j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: t, Status: v1.ConditionTrue,
			Reason: reason, LastTransitionTime: metav1.NewTime(at)})
	}
}

func conds(st batchv1.JobStatus) string {
	s := ""
	for _, c := range st.Conditions {
		s += fmt.Sprintf("%s=%s/%s ", c.Type, c.Status, c.Reason)
	}
	return s
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name           string
		job            *batchv1.Job
		pods           []*v1.Pod
		create, delete int
		active, succ   int32
		failed         int32
		conds          string
		events         string
		deleteJob      bool
		requeue        time.Duration
	}{
		{name: "new job starts one pod", job: newJob(), create: 1, active: 1},
		{name: "parallel up to parallelism", job: newJob(parallel(2, 3)), create: 2, active: 2},
		{name: "no more than completions left", job: newJob(parallel(2, 3)), pods: pods(v1.PodSucceeded, v1.PodSucceeded, v1.PodRunning),
			active: 1, succ: 2},
		{name: "extra pods deleted", job: newJob(parallel(1, 3)), pods: pods(v1.PodRunning, v1.PodPending),
			delete: 1, active: 1},
		{name: "completions reached", job: newJob(parallel(2, 3)), pods: pods(v1.PodSucceeded, v1.PodSucceeded, v1.PodSucceeded),
			succ: 3, conds: "SuccessCriteriaMet=True/CompletionsReached Complete=True/CompletionsReached ", events: "Completed"},
		{name: "no completions: first success ends it", job: newJob(func(j *batchv1.Job) { j.Spec.Completions, j.Spec.Parallelism = nil, ptrTo(int32(3)) }),
			pods: pods(v1.PodSucceeded, v1.PodRunning), active: 1, succ: 1},
		{name: "failed pods replaced under the limit", job: newJob(backoff(1)), pods: pods(v1.PodFailed), create: 1, active: 1, failed: 1},
		{name: "re-creation backs off after a failure", job: newJob(backoff(3)), pods: failedAt(t0.Add(-4 * time.Second)),
			failed: 1, requeue: 6 * time.Second},
		{name: "back-off doubles", job: newJob(backoff(3)), pods: failedAt(t0.Add(-15*time.Second), t0.Add(-12*time.Second)),
			failed: 2, requeue: 8 * time.Second},
		{name: "back-off over", job: newJob(backoff(3)), pods: failedAt(t0.Add(-11 * time.Second)),
			create: 1, active: 1, failed: 1},
		{name: "backoff limit exceeded", job: newJob(backoff(1)), pods: pods(v1.PodFailed, v1.PodFailed), failed: 2,
			conds: "FailureTarget=True/BackoffLimitExceeded Failed=True/BackoffLimitExceeded ", events: "BackoffLimitExceeded"},
		{name: "failing job deletes active pods first", job: newJob(backoff(0), parallel(2, 2)), pods: pods(v1.PodFailed, v1.PodRunning),
			delete: 1, failed: 1, conds: "FailureTarget=True/BackoffLimitExceeded "},
		{name: "deadline exceeded", job: newJob(started(time.Minute), func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptrTo(int64(30)) }),
			pods: pods(v1.PodRunning), delete: 1, conds: "FailureTarget=True/DeadlineExceeded "},
		{name: "deadline ahead", job: newJob(started(10*time.Second), func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptrTo(int64(30)) }),
			pods: pods(v1.PodRunning), active: 1, requeue: 20 * time.Second},
		{name: "suspended", job: newJob(func(j *batchv1.Job) { j.Spec.Suspend = ptrTo(true) }), pods: pods(v1.PodRunning),
			delete: 1, conds: "Suspended=True/JobSuspended ", events: "Suspended"},
		{name: "resumed", job: newJob(withCond(batchv1.JobSuspended, ReasonSuspended, t0)), create: 1, active: 1,
			conds: "Suspended=False/JobResumed ", events: "Resumed"},
		{name: "ttl due", job: newJob(withCond(batchv1.JobComplete, ReasonCompletionsReached, t0.Add(-time.Minute)),
			func(j *batchv1.Job) { j.Spec.TTLSecondsAfterFinished = ptrTo(int32(30)) }),
			conds: "Complete=True/CompletionsReached ", deleteJob: true},
		{name: "ttl ahead", job: newJob(withCond(batchv1.JobFailed, ReasonBackoffLimitExceeded, t0.Add(-time.Minute)),
			func(j *batchv1.Job) { j.Spec.TTLSecondsAfterFinished = ptrTo(int32(100)) }),
			conds: "Failed=True/BackoffLimitExceeded ", requeue: 40 * time.Second},
	}
	for _, tt := range tests {
		p := Compute(tt.job, tt.pods, t0)
		events := ""
		for _, e := range p.Events {
			events += e.Reason
		}
		st := p.Status
		if p.Create != tt.create || len(p.Delete) != tt.delete || st.Active != tt.active || st.Succeeded != tt.succ ||
			st.Failed != tt.failed || conds(st) != tt.conds || events != tt.events || p.DeleteJob != tt.deleteJob || p.Requeue != tt.requeue {
			t.Errorf("%s: Compute = create %d delete %d active %d succeeded %d failed %d conds %q events %q deleteJob %v requeue %v, want %d %d %d %d %d %q %q %v %v",
				tt.name, p.Create, len(p.Delete), st.Active, st.Succeeded, st.Failed, conds(st), events, p.DeleteJob, p.Requeue,
				tt.create, tt.delete, tt.active, tt.succ, tt.failed, tt.conds, tt.events, tt.deleteJob, tt.requeue)
		}
	}
}

func TestComputeSettles(t *testing.T) {
	// A second sync over the same world changes nothing: no write loop.
	job := newJob(parallel(2, 3))
	ps := pods(v1.PodSucceeded, v1.PodSucceeded, v1.PodSucceeded)
	first := Compute(job, ps, t0)
	job.Status = first.Status
	second := Compute(job, ps, t0.Add(time.Minute))
	if len(second.Events) != 0 || conds(second.Status) != conds(first.Status) || !second.Status.CompletionTime.Equal(first.Status.CompletionTime) {
		t.Errorf("second Compute = %q events %v, want %q and none", conds(second.Status), second.Events, conds(first.Status))
	}
}
