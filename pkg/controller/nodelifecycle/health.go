package nodelifecycle

import (
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kubernetes' wording for a node whose kubelet went quiet.
const (
	ReasonStatusUnknown      = "NodeStatusUnknown"
	MessageStatusUnknown     = "Kubelet stopped posting node status."
	ReasonStatusNeverUpdated = "NodeStatusNeverUpdated"
	MessageNeverUpdated      = "Kubelet never posted node status."
)

// DefaultGracePeriod is how long a node may go without renewing its Lease
// before it is considered unreachable (--node-monitor-grace-period).
const DefaultGracePeriod = 40 * time.Second

// conditionsSetUnknown are the kubelet-owned conditions that turn Unknown when
// the kubelet stops reporting.
var conditionsSetUnknown = []v1.NodeConditionType{v1.NodeReady, v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure}

// managedTaints are the taints this controller owns; all others on a node are
// kept as they are.
var managedTaints = map[string]bool{
	v1.TaintNodeUnreachable:   true,
	v1.TaintNodeNotReady:      true,
	v1.TaintNodeUnschedulable: true,
}

// Decision is what Assess wants done to a node.
type Decision struct {
	// Conditions is the node's new status.conditions, nil when unchanged.
	Conditions []v1.NodeCondition
	// Taints is the node's new spec.taints, nil when unchanged (an empty,
	// non-nil slice means remove them all).
	Taints []v1.Taint
	// Ready is the node's Ready status once the decision is applied.
	Ready v1.ConditionStatus
	// Recheck is when the node must be looked at again even if nothing
	// changes (its heartbeat deadline); zero when it is already unreachable.
	Recheck time.Time
}

// ReadyStatus returns the status of the node's Ready condition, Unknown when
// it has none.
func ReadyStatus(node *v1.Node) v1.ConditionStatus {
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status
		}
	}
	return v1.ConditionUnknown
}

// Assess decides a node's health from when its kubelet was last heard from
// (lastHeard: the observed Lease renewal or status heartbeat): past the grace
// period its conditions turn Unknown; then its taints follow its Ready
// condition as Kubernetes' taint-by-condition and taint-based eviction do:
// Unknown gives node.kubernetes.io/unreachable, False gives
// node.kubernetes.io/not-ready, each as NoSchedule and NoExecute;
// spec.unschedulable gives node.kubernetes.io/unschedulable:NoSchedule.
func Assess(node *v1.Node, lastHeard, now time.Time, grace time.Duration) Decision {
	var d Decision
	deadline := lastHeard.Add(grace)
	conds := node.Status.Conditions
	if now.After(deadline) {
		if next, changed := markUnknown(conds, now); changed {
			d.Conditions = next
			conds = next
		}
	} else {
		d.Recheck = deadline
	}
	d.Ready = v1.ConditionUnknown
	for _, c := range conds {
		if c.Type == v1.NodeReady {
			d.Ready = c.Status
		}
	}
	want := wantTaints(node.Spec.Taints, d.Ready, node.Spec.Unschedulable, now)
	if !sameTaints(want, node.Spec.Taints) {
		d.Taints = want
	}
	return d
}

func markUnknown(conds []v1.NodeCondition, now time.Time) ([]v1.NodeCondition, bool) {
	out := make([]v1.NodeCondition, len(conds))
	copy(out, conds)
	changed := false
	for _, t := range conditionsSetUnknown {
		i := -1
		for j := range out {
			if out[j].Type == t {
				i = j
			}
		}
		if i < 0 {
			out = append(out, v1.NodeCondition{
				Type: t, Status: v1.ConditionUnknown, Reason: ReasonStatusNeverUpdated, Message: MessageNeverUpdated,
				LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now),
			})
			changed = true
			continue
		}
		if out[i].Status != v1.ConditionUnknown {
			out[i].Status = v1.ConditionUnknown
			out[i].Reason = ReasonStatusUnknown
			out[i].Message = MessageStatusUnknown
			out[i].LastTransitionTime = metav1.NewTime(now)
			changed = true
		}
	}
	return out, changed
}

// wantTaints returns cur with the managed taints replaced by those ready and
// unschedulable call for; a taint that stays keeps its timeAdded.
func wantTaints(cur []v1.Taint, ready v1.ConditionStatus, unschedulable bool, now time.Time) []v1.Taint {
	var want []v1.Taint
	add := func(key string, effect v1.TaintEffect) {
		want = append(want, v1.Taint{Key: key, Effect: effect})
	}
	switch ready {
	case v1.ConditionUnknown:
		add(v1.TaintNodeUnreachable, v1.TaintEffectNoSchedule)
		add(v1.TaintNodeUnreachable, v1.TaintEffectNoExecute)
	case v1.ConditionFalse:
		add(v1.TaintNodeNotReady, v1.TaintEffectNoSchedule)
		add(v1.TaintNodeNotReady, v1.TaintEffectNoExecute)
	}
	if unschedulable {
		add(v1.TaintNodeUnschedulable, v1.TaintEffectNoSchedule)
	}
	out := make([]v1.Taint, 0, len(cur)+len(want))
	for _, t := range cur {
		if !managedTaints[t.Key] {
			out = append(out, t)
		}
	}
	for _, w := range want {
		for _, t := range cur {
			if t.Key == w.Key && t.Effect == w.Effect {
				w.TimeAdded = t.TimeAdded
			}
		}
		if w.Effect == v1.TaintEffectNoExecute && w.TimeAdded == nil {
			w.TimeAdded = &metav1.Time{Time: now}
		}
		out = append(out, w)
	}
	return out
}

func sameTaints(a, b []v1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x.Key == y.Key && x.Effect == y.Effect && x.Value == y.Value {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// EvictAt says whether and when pod must leave a node with the given taints
// (taint-based eviction): at once when some NoExecute taint is not tolerated;
// when the shortest tolerationSeconds among the tolerations used runs out,
// counted from the taint's timeAdded; never when every NoExecute taint is
// tolerated without a time limit. now stands in for a missing timeAdded.
func EvictAt(pod *v1.Pod, taints []v1.Taint, now time.Time) (at time.Time, evict bool) {
	for i := range taints {
		taint := &taints[i]
		if taint.Effect != v1.TaintEffectNoExecute {
			continue
		}
		added := now
		if taint.TimeAdded != nil {
			added = taint.TimeAdded.Time
		}
		tolerated, forever := false, false
		var limit time.Duration
		for j := range pod.Spec.Tolerations {
			tol := &pod.Spec.Tolerations[j]
			if !tol.ToleratesTaint(logr.Discard(), taint, false) {
				continue
			}
			if tol.TolerationSeconds == nil {
				forever = true
				continue
			}
			s := time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second
			if !tolerated || s < limit {
				limit = s
			}
			tolerated = true
		}
		if !tolerated && !forever {
			return now, true
		}
		if !tolerated {
			continue // only unlimited tolerations
		}
		t := added.Add(limit)
		if !evict || t.Before(at) {
			at, evict = t, true
		}
	}
	return at, evict
}

// NotReady returns pod with its Ready condition set False, or nil when it is
// not Ready now (nothing to change).
func NotReady(pod *v1.Pod, now time.Time) *v1.Pod {
	for i, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady && c.Status == v1.ConditionTrue {
			out := pod.DeepCopy()
			out.Status.Conditions[i].Status = v1.ConditionFalse
			out.Status.Conditions[i].LastTransitionTime = metav1.NewTime(now)
			return out
		}
	}
	return nil
}
