package replicaset

import (
	"math"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Limits on one sync, as in Kubernetes: a sync creates or deletes at most
// BurstReplicas pods, and creations start with a batch of SlowStartInitial
// that doubles while they succeed, so a failing template (quota, admission)
// costs one rejected request, not hundreds.
//
// Unlike Kubernetes, an owner that already runs pods starts its batches at
// that number, up to MaxFirstBatch: its running pods show the template is
// admitted, and nine sequential round trips per 500 pods (1, 2, … 256) were
// what held a 10,000-replica scale-up to ~250 pods/s.
const (
	BurstReplicas    = 500
	SlowStartInitial = 1
	MaxFirstBatch    = 128
)

// DeletionCostAnnotation lets users say which pods to delete first when
// scaling down: lower cost goes first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// Plan is what one sync of a replica owner must do.
type Plan struct {
	Create int       // pods to create from the template
	Delete []*v1.Pod // pods to delete, least valuable first
}

// Active reports whether a pod counts towards replicas: not finished and not
// being deleted.
func Active(p *v1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed
}

// Ready reports the pod's Ready condition.
func Ready(p *v1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == v1.ConditionTrue
}

func readyCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Available reports whether the pod has been ready for at least
// minReadySeconds at now, and if not yet but ready, how long until it is.
func Available(p *v1.Pod, minReadySeconds int32, now time.Time) (bool, time.Duration) {
	c := readyCondition(p)
	if c == nil || c.Status != v1.ConditionTrue {
		return false, 0
	}
	if minReadySeconds <= 0 {
		return true, 0
	}
	at := c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second)
	if c.LastTransitionTime.IsZero() || !at.After(now) {
		return true, 0
	}
	return false, at.Sub(now)
}

// ComputePlan decides, from the owner's active pods, how many pods to create
// or which to delete to reach want replicas. At most BurstReplicas either way.
func ComputePlan(want int, active []*v1.Pod, now time.Time) Plan {
	diff := len(active) - want
	switch {
	case diff < 0:
		return Plan{Create: min(-diff, BurstReplicas)}
	case diff > 0:
		return Plan{Delete: PodsToDelete(active, min(diff, BurstReplicas), now)}
	}
	return Plan{}
}

// PodsToDelete returns the n least valuable of pods, ranked as Kubernetes
// ranks them.
func PodsToDelete(pods []*v1.Pod, n int, now time.Time) []*v1.Pod {
	if n >= len(pods) {
		n = len(pods)
	}
	ranked := RankForDeletion(pods, now)
	return ranked[:n]
}

// RankForDeletion returns pods least valuable first: unscheduled before
// scheduled; Pending before Unknown before Running; not ready before ready;
// lower deletion cost first; pods sharing a node with more of their siblings
// first; ready for less time (in powers of two) first; more restarts first;
// newer (in powers of two) first; and finally by name, so the order is total.
// Ages are taken at now.
func RankForDeletion(pods []*v1.Pod, now time.Time) []*v1.Pod {
	perNode := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			perNode[p.Spec.NodeName]++
		}
	}
	out := append([]*v1.Pod(nil), pods...)
	sort.SliceStable(out, func(i, j int) bool {
		return lessValuable(out[i], out[j], perNode, now)
	})
	return out
}

var phaseRank = map[v1.PodPhase]int{v1.PodPending: 0, v1.PodUnknown: 1, v1.PodRunning: 2}

func lessValuable(a, b *v1.Pod, perNode map[string]int, now time.Time) bool {
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if phaseRank[a.Status.Phase] != phaseRank[b.Status.Phase] {
		return phaseRank[a.Status.Phase] < phaseRank[b.Status.Phase]
	}
	if Ready(a) != Ready(b) {
		return !Ready(a)
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if ra, rb := nodeRank(a, perNode), nodeRank(b, perNode); ra != rb {
		return ra > rb
	}
	if Ready(a) && Ready(b) {
		// Ready for less time goes first, compared on a log2 scale so that
		// pods ready for about as long fall through to restarts.
		ta, tb := readyCondition(a).LastTransitionTime.Time, readyCondition(b).LastTransitionTime.Time
		if ba, bb := ageBucket(ta, now), ageBucket(tb, now); ba != bb {
			return ba < bb
		}
	}
	if ra, rb := restarts(a), restarts(b); ra != rb {
		return ra > rb
	}
	if ba, bb := ageBucket(a.CreationTimestamp.Time, now), ageBucket(b.CreationTimestamp.Time, now); ba != bb {
		return ba < bb
	}
	return a.Name > b.Name
}

// ageBucket is the power of two of t's age at now: -1 for an unknown or
// future time (youngest), 0 for under two seconds, and so on.
func ageBucket(t, now time.Time) int {
	if t.IsZero() {
		return -1
	}
	d := now.Sub(t).Seconds()
	if d < 1 {
		return -1
	}
	return int(math.Log2(d))
}

func nodeRank(p *v1.Pod, perNode map[string]int) int {
	if p.Spec.NodeName == "" {
		return 0
	}
	return perNode[p.Spec.NodeName]
}

func deletionCost(p *v1.Pod) int64 {
	v, ok := p.Annotations[DeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

func restarts(p *v1.Pod) int32 {
	var m int32
	for _, c := range p.Status.ContainerStatuses {
		m = max(m, c.RestartCount)
	}
	return m
}

// Batches splits n creations into slow-start batches for an owner with
// active pods already: FirstBatch(active), then doubling, the remainder last.
func Batches(n, active int) []int {
	var out []int
	for size := FirstBatch(active); n > 0; size *= 2 {
		b := min(size, n)
		out = append(out, b)
		n -= b
	}
	return out
}

// FirstBatch is the size slow start begins with for an owner that has
// active pods already.
func FirstBatch(active int) int {
	return min(max(active, SlowStartInitial), MaxFirstBatch)
}

// Claim sorts pods in the owner's namespace into those it keeps, orphans it
// may adopt (selector matches, no controller) and pods it must release (it
// controls them but its selector no longer matches). Pods controlled by
// someone else are ignored, and so are pods being deleted for adoption.
func Claim(ownerUID string, sel labels.Selector, pods []*v1.Pod) (owned, adopt, release []*v1.Pod) {
	for _, p := range pods {
		ref := metav1.GetControllerOfNoCopy(p)
		match := sel.Matches(labels.Set(p.Labels))
		switch {
		case ref != nil && string(ref.UID) == ownerUID:
			if match {
				owned = append(owned, p)
			} else {
				release = append(release, p)
			}
		case ref == nil && match && p.DeletionTimestamp == nil:
			adopt = append(adopt, p)
		}
	}
	return owned, adopt, release
}

// Counts are the pod tallies that make up a replica owner's status.
type Counts struct {
	Replicas, FullyLabeled, Ready, Available int32
	// Recheck, when positive, is how long until a ready pod becomes
	// available, so the owner must be synced again then.
	Recheck time.Duration
}

// Count tallies active owned pods for status at now.
func Count(active []*v1.Pod, templateLabels map[string]string, minReadySeconds int32, now time.Time) Counts {
	var c Counts
	tl := labels.SelectorFromSet(templateLabels)
	for _, p := range active {
		c.Replicas++
		if tl.Matches(labels.Set(p.Labels)) {
			c.FullyLabeled++
		}
		if !Ready(p) {
			continue
		}
		c.Ready++
		if ok, wait := Available(p, minReadySeconds, now); ok {
			c.Available++
		} else if c.Recheck == 0 || wait < c.Recheck {
			c.Recheck = wait
		}
	}
	return c
}

// Status builds the next status from the counts, keeping or clearing the
// ReplicaFailure condition according to createErr.
func Status(cur appsv1.ReplicaSetStatus, generation int64, c Counts, createErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := cur
	st.Replicas, st.FullyLabeledReplicas = c.Replicas, c.FullyLabeled
	st.ReadyReplicas, st.AvailableReplicas = c.Ready, c.Available
	st.ObservedGeneration = generation
	var conds []appsv1.ReplicaSetCondition
	for _, cond := range cur.Conditions {
		if cond.Type != appsv1.ReplicaSetReplicaFailure {
			conds = append(conds, cond)
		}
	}
	if createErr != nil {
		cond := appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: v1.ConditionTrue,
			Reason: "FailedCreate", Message: createErr.Error(),
			LastTransitionTime: metav1.NewTime(now),
		}
		for _, old := range cur.Conditions {
			if old.Type == cond.Type && old.Status == cond.Status {
				cond.LastTransitionTime = old.LastTransitionTime
			}
		}
		conds = append(conds, cond)
	}
	st.Conditions = conds
	return st
}
