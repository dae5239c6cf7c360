package deployment

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/dump"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
)

// Names Kubernetes uses on Deployments, ReplicaSets and pods.
const (
	HashLabel                 = "pod-template-hash"
	RevisionAnnotation        = "deployment.kubernetes.io/revision"
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	ChangeCauseAnnotation     = "kubernetes.io/change-cause"
	lastAppliedAnnotation     = "kubectl.kubernetes.io/last-applied-configuration"
	rollbackToAnnotation      = "deprecated.deployment.rollback.to"
)

// ComputeHash names a pod template as Kubernetes does: FNV-32a of the
// template printed with sorted keys, then of the collision count (if any) as
// 8 little-endian bytes, with the decimal sum rendered in an alphabet without
// vowels so that no word can appear.
func ComputeHash(t *v1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%v", dump.ForHash(*t))
	if collisionCount != nil {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint32(b, uint32(*collisionCount))
		h.Write(b)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// EqualIgnoreHash reports whether two pod templates are the same apart from
// the pod-template-hash label.
func EqualIgnoreHash(a, b *v1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, HashLabel)
	delete(b.Labels, HashLabel)
	if len(a.Labels) == 0 {
		a.Labels = nil
	}
	if len(b.Labels) == 0 {
		b.Labels = nil
	}
	return apiequality.Semantic.DeepEqual(a, b)
}

func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil || rs.Spec.Replicas == nil {
		return 0
	}
	return *rs.Spec.Replicas
}

func want(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// Fenceposts resolves maxSurge and maxUnavailable against replicas: surge
// rounds up, unavailable down, and if both come to zero unavailable becomes
// one, so a rollout can always make progress.
func Fenceposts(surge, unavailable *intstr.IntOrString, replicas int32) (int32, int32, error) {
	zero := intstr.FromInt32(0)
	if surge == nil {
		surge = &zero
	}
	if unavailable == nil {
		unavailable = &zero
	}
	s, err := intstr.GetScaledValueFromIntOrPercent(surge, int(replicas), true)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: maxSurge: %w", ErrInvalid, err)
	}
	u, err := intstr.GetScaledValueFromIntOrPercent(unavailable, int(replicas), false)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: maxUnavailable: %w", ErrInvalid, err)
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u), nil
}

func rolling(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.Type == ""
}

func fenceposts(d *appsv1.Deployment) (int32, int32) {
	var surge, unavailable *intstr.IntOrString
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		surge, unavailable = ru.MaxSurge, ru.MaxUnavailable
	} else {
		// What the API server defaults to.
		p := intstr.FromString("25%")
		surge, unavailable = &p, &p
	}
	s, u, err := Fenceposts(surge, unavailable, want(d))
	if err != nil {
		return 0, 1
	}
	return s, u
}

// MaxSurge is how many pods above spec.replicas a rollout may run.
func MaxSurge(d *appsv1.Deployment) int32 {
	if !rolling(d) {
		return 0
	}
	s, _ := fenceposts(d)
	return s
}

// MaxUnavailable is how many of spec.replicas may be unavailable during a
// rollout; never more than spec.replicas.
func MaxUnavailable(d *appsv1.Deployment) int32 {
	if !rolling(d) || want(d) == 0 {
		return 0
	}
	_, u := fenceposts(d)
	return min(u, want(d))
}

// Revision reads a ReplicaSet's revision annotation; 0 when absent.
func Revision(rs *appsv1.ReplicaSet) int64 {
	n, err := strconv.ParseInt(rs.Annotations[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, Revision(rs))
	}
	return m
}

// byCreation orders oldest first, then by name.
func byCreation(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i], rss[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// Split finds the ReplicaSet whose template is the Deployment's (the oldest,
// if several are) and returns it with all the others.
func Split(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) (newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) {
	sorted := append([]*appsv1.ReplicaSet(nil), rss...)
	byCreation(sorted)
	for _, rs := range sorted {
		if newRS == nil && EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	return newRS, old
}

func active(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && replicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

func sum(rss []*appsv1.ReplicaSet, f func(*appsv1.ReplicaSet) int32) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += f(rs)
		}
	}
	return n
}

// availableOf counts a ReplicaSet's available pods that it will keep: its
// status can lag a scale-down, and the pods above spec.replicas are about to
// go (the least valuable, so unavailable ones first). Counting them would let
// a rollout dip below its floor.
func availableOf(rs *appsv1.ReplicaSet) int32 {
	return min(rs.Status.AvailableReplicas, replicas(rs))
}

func specReplicas(rs *appsv1.ReplicaSet) int32   { return replicas(rs) }
func statusReplicas(rs *appsv1.ReplicaSet) int32 { return rs.Status.Replicas }
func readyReplicas(rs *appsv1.ReplicaSet) int32  { return rs.Status.ReadyReplicas }
func availReplicas(rs *appsv1.ReplicaSet) int32  { return rs.Status.AvailableReplicas }

// NewRSReplicas is how large the new ReplicaSet may be now: all of
// spec.replicas for Recreate; for RollingUpdate as many more as the surge
// allows on top of every ReplicaSet's current size.
func NewRSReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if !rolling(d) {
		return want(d)
	}
	cur := replicas(newRS)
	if cur >= want(d) {
		return cur
	}
	total := sum(all, specReplicas)
	maxTotal := want(d) + MaxSurge(d)
	if total >= maxTotal {
		return cur
	}
	return cur + min(maxTotal-total, want(d)-cur)
}

// Step is a new size for one ReplicaSet.
type Step struct {
	RS *appsv1.ReplicaSet
	To int32
}

// RollingScaleDown decides which old ReplicaSets to shrink in one step of a
// rolling update: first pods that are not available anyway (oldest
// ReplicaSets first), then available ones, never taking the available count
// of the whole Deployment below spec.replicas - maxUnavailable.
func RollingScaleDown(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) []Step {
	old = active(old)
	if len(old) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(sorted)
	size := map[*appsv1.ReplicaSet]int32{}
	for _, rs := range sorted {
		size[rs] = replicas(rs)
	}
	allPods := sum(old, specReplicas) + replicas(newRS)
	minAvailable := want(d) - MaxUnavailable(d)
	newUnavailable := replicas(newRS)
	if newRS != nil {
		newUnavailable -= newRS.Status.AvailableReplicas
	}
	maxScaledDown := allPods - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return nil
	}
	// Unhealthy pods first: they cost no availability.
	var cleaned int32
	for _, rs := range sorted {
		if cleaned >= maxScaledDown {
			break
		}
		unhealthy := size[rs] - availableOf(rs)
		if size[rs] == 0 || unhealthy <= 0 {
			continue
		}
		n := min(maxScaledDown-cleaned, unhealthy)
		size[rs] -= n
		cleaned += n
	}
	// Then available pods, down to the floor.
	available := sum(old, availableOf)
	if newRS != nil {
		available += availableOf(newRS)
	}
	if available > minAvailable {
		budget := available - minAvailable
		var done int32
		for _, rs := range sorted {
			if done >= budget {
				break
			}
			if size[rs] == 0 {
				continue
			}
			n := min(size[rs], budget-done)
			size[rs] -= n
			done += n
		}
	}
	var steps []Step
	for _, rs := range sorted {
		if size[rs] != replicas(rs) {
			steps = append(steps, Step{RS: rs, To: size[rs]})
		}
	}
	return steps
}

// ScalingEvent reports whether spec.replicas changed since the active
// ReplicaSets were last sized (their desired-replicas annotation).
func ScalingEvent(d *appsv1.Deployment, all []*appsv1.ReplicaSet) bool {
	for _, rs := range active(all) {
		v, ok := rs.Annotations[DesiredReplicasAnnotation]
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && int32(n) != want(d) {
			return true
		}
	}
	return false
}

// saturated: the new ReplicaSet alone runs the Deployment.
func saturated(d *appsv1.Deployment, newRS *appsv1.ReplicaSet) bool {
	if newRS == nil {
		return false
	}
	v, err := strconv.ParseInt(newRS.Annotations[DesiredReplicasAnnotation], 10, 32)
	return err == nil && replicas(newRS) == want(d) && int32(v) == want(d) && newRS.Status.AvailableReplicas == want(d)
}

// Scale resizes the ReplicaSets for a change of spec.replicas. With a single
// active ReplicaSet (or none) that one takes it all; in the middle of a
// rolling update the change is spread over the active ReplicaSets in
// proportion to their sizes, larger ones first, so a rollout keeps its shape.
func Scale(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) []Step {
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	act := active(all)
	if len(act) <= 1 {
		target := newRS
		if len(act) == 1 {
			target = act[0]
		} else if target == nil && len(old) > 0 {
			sorted := append([]*appsv1.ReplicaSet(nil), old...)
			byCreation(sorted)
			target = sorted[len(sorted)-1]
		}
		if target == nil || replicas(target) == want(d) {
			return nil
		}
		return []Step{{RS: target, To: want(d)}}
	}
	if saturated(d, newRS) {
		var steps []Step
		for _, rs := range active(old) {
			steps = append(steps, Step{RS: rs, To: 0})
		}
		return steps
	}
	if !rolling(d) {
		return nil
	}
	allowed := want(d)
	if allowed > 0 {
		allowed += MaxSurge(d)
	}
	toAdd := allowed - sum(act, specReplicas)
	if toAdd == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), act...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if replicas(a) != replicas(b) {
			return replicas(a) > replicas(b)
		}
		if toAdd > 0 { // newer first when growing, older first when shrinking
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
	size := make([]int32, len(sorted))
	var added int32
	for i, rs := range sorted {
		p := proportion(d, rs, toAdd, added)
		size[i] = replicas(rs) + p
		added += p
	}
	size[0] = max(0, size[0]+toAdd-added)
	var steps []Step
	for i, rs := range sorted {
		if size[i] != replicas(rs) {
			steps = append(steps, Step{RS: rs, To: size[i]})
		}
	}
	return steps
}

// proportion is rs's share of toAdd, from the size it was given for the
// Deployment size recorded in its max-replicas annotation.
func proportion(d *appsv1.Deployment, rs *appsv1.ReplicaSet, toAdd, added int32) int32 {
	if replicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	var frac int32
	if want(d) == 0 {
		frac = -replicas(rs)
	} else {
		total := want(d) + MaxSurge(d)
		annotated, err := strconv.ParseInt(rs.Annotations[MaxReplicasAnnotation], 10, 32)
		if err != nil || annotated == 0 {
			annotated = int64(d.Status.Replicas)
		}
		if annotated == 0 {
			return 0
		}
		frac = int32(math.Round(float64(replicas(rs))*float64(total)/float64(annotated))) - replicas(rs)
	}
	left := toAdd - added
	if toAdd > 0 {
		return min(frac, left)
	}
	return max(frac, left)
}

// SetReplicasAnnotations records the Deployment size a ReplicaSet was sized
// for; it reports whether anything changed.
func SetReplicasAnnotations(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	d, m := strconv.Itoa(int(desired)), strconv.Itoa(int(maxReplicas))
	changed := rs.Annotations[DesiredReplicasAnnotation] != d || rs.Annotations[MaxReplicasAnnotation] != m
	rs.Annotations[DesiredReplicasAnnotation], rs.Annotations[MaxReplicasAnnotation] = d, m
	return changed
}

var notCopied = map[string]bool{
	lastAppliedAnnotation: true, RevisionAnnotation: true, RevisionHistoryAnnotation: true,
	DesiredReplicasAnnotation: true, MaxReplicasAnnotation: true, rollbackToAnnotation: true,
}

// SetNewRSAnnotations carries the Deployment's annotations (such as
// kubernetes.io/change-cause) to its new ReplicaSet and raises the
// ReplicaSet's revision to revision. A ReplicaSet that comes back (rollout
// undo) remembers its earlier revisions in revision-history. It reports
// whether anything changed.
func SetNewRSAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, revision int64, exists bool) bool {
	changed := false
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	for k, v := range d.Annotations {
		if notCopied[k] || rs.Annotations[k] == v {
			continue
		}
		rs.Annotations[k] = v
		changed = true
	}
	oldRev := rs.Annotations[RevisionAnnotation]
	if Revision(rs) < revision {
		rs.Annotations[RevisionAnnotation] = strconv.FormatInt(revision, 10)
		changed = true
		if oldRev != "" && exists {
			hist := rs.Annotations[RevisionHistoryAnnotation]
			if hist == "" {
				hist = oldRev
			} else {
				hist = strings.Join([]string{hist, oldRev}, ",")
			}
			rs.Annotations[RevisionHistoryAnnotation] = hist
		}
	}
	if !exists {
		SetReplicasAnnotations(rs, want(d), want(d)+MaxSurge(d))
		changed = true
	}
	return changed
}

// NewReplicaSet builds the ReplicaSet for the Deployment's current template:
// named <deployment>-<hash>, with the hash as label and in the selector.
func NewReplicaSet(d *appsv1.Deployment) *appsv1.ReplicaSet {
	t := d.Spec.Template.DeepCopy()
	hash := ComputeHash(&d.Spec.Template, d.Status.CollisionCount)
	t.Labels = withLabel(t.Labels, hash)
	sel := d.Spec.Selector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchLabels = withLabel(sel.MatchLabels, hash)
	zero := int32(0)
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			Labels:          t.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *t},
	}
}

func withLabel(m map[string]string, hash string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[HashLabel] = hash
	return out
}

// Cleanup picks the old ReplicaSets to delete so that at most limit scaled-
// down ones remain, lowest revision first. ReplicaSets still running pods or
// whose status has not caught up are kept.
func Cleanup(old []*appsv1.ReplicaSet, limit int32) []*appsv1.ReplicaSet {
	var alive []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs.DeletionTimestamp == nil {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(limit)
	if diff <= 0 {
		return nil
	}
	sort.SliceStable(alive, func(i, j int) bool {
		if ri, rj := Revision(alive[i]), Revision(alive[j]); ri != rj {
			return ri < rj
		}
		return alive[i].CreationTimestamp.Before(&alive[j].CreationTimestamp)
	})
	var out []*appsv1.ReplicaSet
	for _, rs := range alive[:diff] {
		if rs.Status.Replicas != 0 || replicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		out = append(out, rs)
	}
	return out
}
