package deployment

import (
	"fmt"
	"math"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition reasons, as Kubernetes reports them.
const (
	ReasonNewRSCreated       = "NewReplicaSetCreated"
	ReasonFoundNewRS         = "FoundNewReplicaSet"
	ReasonRSUpdated          = "ReplicaSetUpdated"
	ReasonNewRSAvailable     = "NewReplicaSetAvailable"
	ReasonTimedOut           = "ProgressDeadlineExceeded"
	ReasonFailedRSCreate     = "ReplicaSetCreateError"
	ReasonPaused             = "DeploymentPaused"
	ReasonResumed            = "DeploymentResumed"
	ReasonMinimumAvailable   = "MinimumReplicasAvailable"
	ReasonMinimumUnavailable = "MinimumReplicasUnavailable"
)

// CalculateStatus derives a Deployment's status from its ReplicaSets, with
// the Available condition set; other conditions are carried over.
func CalculateStatus(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, now time.Time) appsv1.DeploymentStatus {
	available := sum(all, availReplicas)
	unavailable := max(0, sum(all, specReplicas)-available)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            sum(all, statusReplicas),
		ReadyReplicas:       sum(all, readyReplicas),
		AvailableReplicas:   available,
		UnavailableReplicas: unavailable,
		CollisionCount:      d.Status.CollisionCount,
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	st.Conditions = append([]appsv1.DeploymentCondition(nil), d.Status.Conditions...)
	if available >= want(d)-MaxUnavailable(d) {
		SetCondition(&st, NewCondition(appsv1.DeploymentAvailable, v1.ConditionTrue, ReasonMinimumAvailable, "Deployment has minimum availability.", now))
	} else {
		SetCondition(&st, NewCondition(appsv1.DeploymentAvailable, v1.ConditionFalse, ReasonMinimumUnavailable, "Deployment does not have minimum availability.", now))
	}
	return st
}

// NewCondition makes a condition that changed at now.
func NewCondition(t appsv1.DeploymentConditionType, s v1.ConditionStatus, reason, msg string, now time.Time) appsv1.DeploymentCondition {
	ts := metav1.NewTime(now)
	return appsv1.DeploymentCondition{Type: t, Status: s, Reason: reason, Message: msg, LastUpdateTime: ts, LastTransitionTime: ts}
}

// GetCondition returns the condition of type t, or nil.
func GetCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// SetCondition replaces the condition of c's type. A condition with the same
// status and reason is left alone; with the same status its transition time
// is kept.
func SetCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := GetCondition(st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	RemoveCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

// RemoveCondition drops the condition of type t.
func RemoveCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	out := st.Conditions[:0:0]
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

// HasProgressDeadline reports whether progress is tracked at all.
func HasProgressDeadline(d *appsv1.Deployment) bool {
	return d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds != math.MaxInt32
}

// Complete: every replica is updated and available, and the status is of
// the current generation.
func Complete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	return st.UpdatedReplicas == want(d) && st.Replicas == want(d) && st.AvailableReplicas == want(d) &&
		st.ObservedGeneration >= d.Generation
}

// progressing: something moved since the last recorded status.
func progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.Status
	return st.UpdatedReplicas > old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas
}

// TimedOut reports whether the rollout has made no progress for
// progressDeadlineSeconds since the Progressing condition last changed.
func TimedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	if !HasProgressDeadline(d) {
		return false
	}
	c := GetCondition(st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason == ReasonNewRSAvailable {
		return false
	}
	if c.Reason == ReasonTimedOut {
		return true
	}
	deadline := c.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second)
	return deadline.Before(now)
}

// Progress sets the Progressing condition (and copies a ReplicaSet's
// ReplicaFailure) on a freshly calculated status, as a rollout step ends.
func Progress(d *appsv1.Deployment, st *appsv1.DeploymentStatus, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, now time.Time) {
	if !HasProgressDeadline(d) {
		RemoveCondition(st, appsv1.DeploymentProgressing)
	}
	cur := GetCondition(st, appsv1.DeploymentProgressing)
	done := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewRSAvailable
	what := func(verb string) string {
		if newRS != nil {
			return fmt.Sprintf("ReplicaSet %q %s", newRS.Name, verb)
		}
		return fmt.Sprintf("Deployment %q %s", d.Name, verb)
	}
	if HasProgressDeadline(d) && !done {
		switch {
		case Complete(d, st):
			SetCondition(st, NewCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, ReasonNewRSAvailable, what("has successfully progressed."), now))
		case progressing(d, st):
			c := NewCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, ReasonRSUpdated, what("is progressing."), now)
			if cur != nil && cur.Status == v1.ConditionTrue {
				c.LastTransitionTime = cur.LastTransitionTime
			}
			// Always replace: LastUpdateTime moves, restarting the deadline.
			RemoveCondition(st, appsv1.DeploymentProgressing)
			st.Conditions = append(st.Conditions, c)
		case TimedOut(d, st, now):
			SetCondition(st, NewCondition(appsv1.DeploymentProgressing, v1.ConditionFalse, ReasonTimedOut, what("has timed out progressing."), now))
		}
	}
	var failure *appsv1.ReplicaSetCondition
	for _, rs := range all {
		if rs == nil {
			continue
		}
		for i, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && failure == nil {
				failure = &rs.Status.Conditions[i]
			}
		}
	}
	if failure != nil {
		SetCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: failure.Status,
			Reason: failure.Reason, Message: failure.Message, LastUpdateTime: failure.LastTransitionTime, LastTransitionTime: failure.LastTransitionTime})
	} else {
		RemoveCondition(st, appsv1.DeploymentReplicaFailure)
	}
}

// RecheckAfter says when a stuck rollout must be looked at again for its
// deadline; ok is false when no recheck is needed.
func RecheckAfter(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) (time.Duration, bool) {
	c := GetCondition(st, appsv1.DeploymentProgressing)
	if !HasProgressDeadline(d) || c == nil || Complete(d, st) || c.Reason == ReasonTimedOut || c.Reason == ReasonNewRSAvailable || d.Spec.Paused {
		return 0, false
	}
	after := c.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(now)
	return max(after+time.Second, time.Second), true
}

// PausedCondition sets the Progressing condition for pause and resume; it
// reports whether it changed anything.
func PausedCondition(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	if !HasProgressDeadline(d) {
		return false
	}
	c := GetCondition(st, appsv1.DeploymentProgressing)
	if c != nil && c.Reason == ReasonTimedOut {
		return false
	}
	paused := c != nil && c.Reason == ReasonPaused
	switch {
	case d.Spec.Paused && !paused:
		SetCondition(st, NewCondition(appsv1.DeploymentProgressing, v1.ConditionUnknown, ReasonPaused, "Deployment is paused", now))
	case !d.Spec.Paused && paused:
		SetCondition(st, NewCondition(appsv1.DeploymentProgressing, v1.ConditionUnknown, ReasonResumed, "Deployment is resumed", now))
	default:
		return false
	}
	return true
}
