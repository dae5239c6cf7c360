package deployment

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

func TestProgressConditions(t *testing.T) {
	d := deploy(3, "1", "1")
	newRS := rs("web-abc", 0, 3, 1)
	newRS.Status.ReadyReplicas = 1
	all := []*appsv1.ReplicaSet{newRS}

	// Something moved: ReplicaSetUpdated.
	st := CalculateStatus(d, all, newRS, t0)
	Progress(d, &st, all, newRS, t0)
	c := GetCondition(&st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != ReasonRSUpdated || c.Message != `ReplicaSet "web-abc" is progressing.` {
		t.Fatalf("Progress(moving) = %+v, want ReplicaSetUpdated", c)
	}
	if a := GetCondition(&st, appsv1.DeploymentAvailable); a == nil || a.Status != v1.ConditionTrue || a.Reason != ReasonMinimumAvailable {
		// 1 available of 3 with maxUnavailable 1 is below the floor of 2.
		if a == nil || a.Reason != ReasonMinimumUnavailable || a.Status != v1.ConditionFalse {
			t.Errorf("Available = %+v, want False MinimumReplicasUnavailable", a)
		}
	}
	d.Status = st

	// Nothing moves past the deadline: ProgressDeadlineExceeded.
	late := t0.Add(601 * time.Second)
	st = CalculateStatus(d, all, newRS, late)
	Progress(d, &st, all, newRS, late)
	if c := GetCondition(&st, appsv1.DeploymentProgressing); c == nil || c.Reason != ReasonTimedOut || c.Status != v1.ConditionFalse ||
		c.Message != `ReplicaSet "web-abc" has timed out progressing.` {
		t.Fatalf("Progress(stuck) = %+v, want False ProgressDeadlineExceeded", c)
	}

	// Before the deadline it waits and asks to be woken at the deadline.
	early := t0.Add(100 * time.Second)
	st = CalculateStatus(d, all, newRS, early)
	Progress(d, &st, all, newRS, early)
	if c := GetCondition(&st, appsv1.DeploymentProgressing); c.Reason != ReasonRSUpdated {
		t.Errorf("Progress(before deadline) = %s, want ReplicaSetUpdated kept", c.Reason)
	}
	if after, ok := RecheckAfter(d, &st, early); !ok || after != 501*time.Second {
		t.Errorf("RecheckAfter = %v, %v, want 501s, true", after, ok)
	}

	// All available: NewReplicaSetAvailable, and Available true.
	newRS.Status.AvailableReplicas, newRS.Status.ReadyReplicas = 3, 3
	st = CalculateStatus(d, all, newRS, early)
	Progress(d, &st, all, newRS, early)
	c = GetCondition(&st, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != ReasonNewRSAvailable || c.Status != v1.ConditionTrue || c.Message != `ReplicaSet "web-abc" has successfully progressed.` {
		t.Errorf("Progress(complete) = %+v, want NewReplicaSetAvailable", c)
	}
	if a := GetCondition(&st, appsv1.DeploymentAvailable); a.Status != v1.ConditionTrue || a.Message != "Deployment has minimum availability." {
		t.Errorf("Available = %+v, want True", a)
	}
	if !Complete(d, &st) || st.UpdatedReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != 1 {
		t.Errorf("status = %+v, want complete", st)
	}
	if _, ok := RecheckAfter(d, &st, early); ok {
		t.Error("RecheckAfter(complete) asks for a recheck")
	}
}

func TestPausedCondition(t *testing.T) {
	d := deploy(3, "1", "1")
	d.Spec.Paused = true
	if !PausedCondition(d, &d.Status, t0) {
		t.Fatal("PausedCondition(paused) = false, want a change")
	}
	if c := GetCondition(&d.Status, appsv1.DeploymentProgressing); c.Status != v1.ConditionUnknown || c.Reason != ReasonPaused || c.Message != "Deployment is paused" {
		t.Errorf("paused condition = %+v", c)
	}
	if PausedCondition(d, &d.Status, t0) {
		t.Error("PausedCondition twice reports a change")
	}
	d.Spec.Paused = false
	if !PausedCondition(d, &d.Status, t0) || GetCondition(&d.Status, appsv1.DeploymentProgressing).Reason != ReasonResumed {
		t.Errorf("resumed condition = %+v, want DeploymentResumed", GetCondition(&d.Status, appsv1.DeploymentProgressing))
	}
}

func TestReplicaFailureCopied(t *testing.T) {
	d := deploy(2, "1", "1")
	r := rs("web-x", 0, 2, 0)
	r.Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: v1.ConditionTrue, Reason: "FailedCreate", Message: "quota"}}
	st := CalculateStatus(d, []*appsv1.ReplicaSet{r}, r, t0)
	Progress(d, &st, []*appsv1.ReplicaSet{r}, r, t0)
	if c := GetCondition(&st, appsv1.DeploymentReplicaFailure); c == nil || c.Reason != "FailedCreate" || c.Message != "quota" {
		t.Errorf("ReplicaFailure = %+v, want FailedCreate quota", c)
	}
}
