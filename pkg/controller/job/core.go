package job

import (
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-org/skiff/pkg/controller/replicaset"
)

// Condition reasons and messages, and event reasons, as Kubernetes' job
// controller writes them.
const (
	ReasonCompletionsReached   = "CompletionsReached"
	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonSuspended            = "JobSuspended"
	ReasonResumed              = "JobResumed"

	msgCompletionsReached = "Reached expected number of succeeded pods"
	msgBackoffLimit       = "Job has reached the specified backoff limit"
	msgDeadline           = "Job was active longer than specified deadline"
	msgSuspended          = "Job suspended"
	msgResumed            = "Job resumed"

	EventCompleted = "Completed"
	EventSuspended = "Suspended"
	EventResumed   = "Resumed"
)

// Back-off of pod re-creation after failures: DefaultBackoff after the
// first, doubling with each further failure, at most MaxBackoff, counted
// from when the last failed pod's containers finished.
const (
	DefaultBackoff = 10 * time.Second
	MaxBackoff     = 6 * time.Minute
)

// Event is an event the plan asks to record on the Job.
type Event struct {
	Type, Reason, Message string
}

// Plan is what one sync of a Job does: pods to create and delete, the
// status to write, events to record, whether the Job itself is due for
// deletion (ttlSecondsAfterFinished), and when to look again.
type Plan struct {
	Create    int
	Delete    []*v1.Pod
	Status    batchv1.JobStatus
	Events    []Event
	DeleteJob bool
	Requeue   time.Duration // 0: no timed look needed
}

// podCounts sorts a Job's pods by where they are in their lives.
type podCounts struct {
	active      []*v1.Pod // neither finished nor being deleted
	ready       int32     // of active
	terminating int32     // being deleted, not finished
	succeeded   int32
	failed      int32
	restarts    int32     // container restarts of active pods
	lastFailure time.Time // when the last failed pod's containers finished
}

func countPods(pods []*v1.Pod) podCounts {
	var c podCounts
	for _, p := range pods {
		switch {
		case p.Status.Phase == v1.PodSucceeded:
			c.succeeded++
		case p.Status.Phase == v1.PodFailed:
			c.failed++
			for _, s := range p.Status.ContainerStatuses {
				if t := s.State.Terminated; t != nil && t.FinishedAt.After(c.lastFailure) {
					c.lastFailure = t.FinishedAt.Time
				}
			}
		case p.DeletionTimestamp != nil:
			c.terminating++
		default:
			c.active = append(c.active, p)
			if replicaset.Ready(p) {
				c.ready++
			}
			for _, s := range p.Status.InitContainerStatuses {
				c.restarts += s.RestartCount
			}
			for _, s := range p.Status.ContainerStatuses {
				c.restarts += s.RestartCount
			}
		}
	}
	return c
}

// Compute decides one sync of job from the pods it controls at now. It
// never reads the clock or the API: the shell carries the plan out.
//
// Succeeded and failed counts never go down: a finished pod that is
// removed stays counted in the status it was already written to.
func Compute(job *batchv1.Job, pods []*v1.Pod, now time.Time) Plan {
	st := *job.Status.DeepCopy()
	c := countPods(pods)
	st.Succeeded = max(st.Succeeded, c.succeeded)
	st.Failed = max(st.Failed, c.failed)
	nowT := metav1.NewTime(now)
	p := Plan{}
	finish := func(active []*v1.Pod) {
		p.Delete = active
		st.Active = 0
		st.Ready = ptrTo(int32(0))
		st.Terminating = ptrTo(c.terminating + int32(len(active)))
	}

	if t, done := finishedAt(&st); done {
		finish(c.active)
		p.Status = st
		if ttl := job.Spec.TTLSecondsAfterFinished; ttl != nil {
			due := t.Add(time.Duration(*ttl) * time.Second)
			if !now.Before(due) {
				p.DeleteJob = true
			} else {
				p.Requeue = due.Sub(now)
			}
		}
		return p
	}

	if job.Spec.Suspend != nil && *job.Spec.Suspend {
		finish(c.active)
		if !hasCondition(st.Conditions, batchv1.JobSuspended, v1.ConditionTrue) {
			setCondition(&st, batchv1.JobSuspended, v1.ConditionTrue, ReasonSuspended, msgSuspended, nowT)
			p.Events = append(p.Events, Event{v1.EventTypeNormal, EventSuspended, msgSuspended})
		}
		p.Status = st
		return p
	}
	if hasCondition(st.Conditions, batchv1.JobSuspended, v1.ConditionTrue) {
		// Resumed: the active deadline counts from now.
		setCondition(&st, batchv1.JobSuspended, v1.ConditionFalse, ReasonResumed, msgResumed, nowT)
		p.Events = append(p.Events, Event{v1.EventTypeNormal, EventResumed, msgResumed})
		st.StartTime = &nowT
	}
	if st.StartTime == nil {
		st.StartTime = &nowT
	}

	// Failure: too many failed pods (or container restarts, for pods that
	// restart in place), or past the active deadline.
	reason, msg := "", ""
	if hasCondition(st.Conditions, batchv1.JobFailureTarget, v1.ConditionTrue) {
		reason, msg = conditionReason(st.Conditions, batchv1.JobFailureTarget)
	} else if backoffExceeded(job, st.Failed, c.restarts) {
		reason, msg = ReasonBackoffLimitExceeded, msgBackoffLimit
	} else if d := job.Spec.ActiveDeadlineSeconds; d != nil {
		deadline := st.StartTime.Add(time.Duration(*d) * time.Second)
		if !now.Before(deadline) {
			reason, msg = ReasonDeadlineExceeded, msgDeadline
		} else {
			p.Requeue = deadline.Sub(now)
		}
	}
	if reason != "" {
		p.Requeue = 0
		setCondition(&st, batchv1.JobFailureTarget, v1.ConditionTrue, reason, msg, nowT)
		finish(c.active)
		if len(c.active) == 0 && c.terminating == 0 {
			setCondition(&st, batchv1.JobFailed, v1.ConditionTrue, reason, msg, nowT)
			p.Events = append(p.Events, Event{v1.EventTypeWarning, reason, msg})
		}
		p.Status = st
		return p
	}

	// Run: up to parallelism pods, no more than the completions left.
	parallelism := int32(1)
	if job.Spec.Parallelism != nil {
		parallelism = *job.Spec.Parallelism
	}
	want := parallelism
	if comp := job.Spec.Completions; comp != nil {
		want = min(parallelism, max(*comp-st.Succeeded, 0))
	} else if st.Succeeded > 0 {
		// Any success finishes a Job without completions: start no more,
		// let the running ones end.
		want = min(want, int32(len(c.active)))
	}
	counted := int32(len(c.active))
	if job.Spec.PodReplacementPolicy != nil && *job.Spec.PodReplacementPolicy == batchv1.Failed {
		counted += c.terminating // replaced only once they have failed
	}
	active, terminating := int32(len(c.active)), c.terminating
	switch {
	case job.DeletionTimestamp != nil:
	case counted < want:
		if wait := backoffLeft(st.Failed, c.lastFailure, now); wait > 0 {
			if p.Requeue == 0 || wait < p.Requeue {
				p.Requeue = wait
			}
			break
		}
		p.Create = int(min(want-counted, replicaset.BurstReplicas))
		active += int32(p.Create)
	case active > want:
		p.Delete = replicaset.PodsToDelete(c.active, int(active-want), now)
		active -= int32(len(p.Delete))
		terminating += int32(len(p.Delete))
	}
	st.Active = active
	st.Ready = ptrTo(min(c.ready, active))
	st.Terminating = ptrTo(terminating)

	complete := st.Succeeded > 0 && job.Spec.Completions == nil ||
		job.Spec.Completions != nil && st.Succeeded >= *job.Spec.Completions
	if complete && active == 0 {
		setCondition(&st, batchv1.JobSuccessCriteriaMet, v1.ConditionTrue, ReasonCompletionsReached, msgCompletionsReached, nowT)
		if terminating == 0 {
			setCondition(&st, batchv1.JobComplete, v1.ConditionTrue, ReasonCompletionsReached, msgCompletionsReached, nowT)
			st.CompletionTime = &nowT
			p.Events = append(p.Events, Event{v1.EventTypeNormal, EventCompleted, "Job completed"})
		}
	}
	p.Status = st
	return p
}

// backoffLeft is how long pod creation still waits after the given number
// of failed pods, the last of which finished at last (zero when unknown).
func backoffLeft(failed int32, last, now time.Time) time.Duration {
	if failed == 0 || last.IsZero() {
		return 0
	}
	d := DefaultBackoff
	for i := int32(1); i < failed && d < MaxBackoff; i++ {
		d *= 2
	}
	return last.Add(min(d, MaxBackoff)).Sub(now)
}

// backoffExceeded: more failed pods than backoffLimit, or, for pods that
// restart in place, as many container restarts as backoffLimit (any, for a
// limit of 0).
func backoffExceeded(job *batchv1.Job, failed, restarts int32) bool {
	limit := int32(6)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	if failed > limit {
		return true
	}
	if job.Spec.Template.Spec.RestartPolicy != v1.RestartPolicyOnFailure {
		return false
	}
	if limit == 0 {
		return restarts > 0
	}
	return restarts >= limit
}

// finishedAt returns when the Job finished, if it has: its completion time
// or the time it was marked failed.
func finishedAt(st *batchv1.JobStatus) (time.Time, bool) {
	for _, c := range st.Conditions {
		if c.Status != v1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			if st.CompletionTime != nil {
				return st.CompletionTime.Time, true
			}
			return c.LastTransitionTime.Time, true
		case batchv1.JobFailed:
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}

func hasCondition(conds []batchv1.JobCondition, t batchv1.JobConditionType, s v1.ConditionStatus) bool {
	for _, c := range conds {
		if c.Type == t {
			return c.Status == s
		}
	}
	return false
}

func conditionReason(conds []batchv1.JobCondition, t batchv1.JobConditionType) (string, string) {
	for _, c := range conds {
		if c.Type == t {
			return c.Reason, c.Message
		}
	}
	return "", ""
}

// setCondition sets a condition; one already so is left alone, and its
// transition time moves only when its status does.
func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, s v1.ConditionStatus, reason, msg string, now metav1.Time) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status == s && c.Reason == reason && c.Message == msg {
			return
		}
		if c.Status != s {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = s, reason, msg, now
		return
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: s, Reason: reason, Message: msg,
		LastProbeTime: now, LastTransitionTime: now})
}

func ptrTo[T any](v T) *T { return &v }
