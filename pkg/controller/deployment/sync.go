package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// syncer holds one Deployment through one reconcile; d is a private copy
// that follows every write so later steps see their predecessors' results.
type syncer struct {
	c   *Controller
	ctx context.Context
	d   *appsv1.Deployment
	rss []*appsv1.ReplicaSet
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.deployments.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s := &syncer{c: c, ctx: ctx, d: cached.DeepCopy()}
	d := s.d

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		c.recorder.Event(d, v1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			_, err := c.client.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
			return err
		}
		return nil
	}
	if s.rss, err = s.claim(sel); err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		newRS, old := Split(d, s.rss)
		return s.syncStatus(append(old, newRS), newRS)
	}
	if err := s.pausedCondition(); err != nil {
		return err
	}
	if d.Spec.Paused || ScalingEvent(d, s.rss) {
		return s.scaleOnly()
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return s.recreate(sel)
	}
	return s.rolling()
}

// claim returns (copies of) the ReplicaSets the Deployment controls, adopting orphans its
// selector matches and releasing ReplicaSets it no longer matches.
// ReplicaSets of other Deployments are never touched.
func (s *syncer) claim(sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	d := s.d
	all, err := s.c.rss.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []*appsv1.ReplicaSet
	checked := false
	for _, rs := range all {
		ref := metav1.GetControllerOf(rs)
		match := sel.Matches(labels.Set(rs.Labels))
		switch {
		case ref != nil && ref.UID == d.UID && match:
			// A private copy: a sync updates its ReplicaSets in place.
			out = append(out, rs.DeepCopy())
		case ref != nil && ref.UID == d.UID:
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"$patch":"delete","uid":%q}],"uid":%q}}`, d.UID, rs.UID)
			_, err := s.c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(s.ctx, rs.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
				return nil, fmt.Errorf("deployment: release %s: %w", rs.Name, err)
			}
		case ref == nil && match && d.DeletionTimestamp == nil && rs.DeletionTimestamp == nil:
			if !checked {
				// Adopt only for the Deployment that really exists now.
				fresh, err := s.c.client.AppsV1().Deployments(d.Namespace).Get(s.ctx, d.Name, metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				if fresh.UID != d.UID || fresh.DeletionTimestamp != nil {
					continue
				}
				checked = true
			}
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":%q,"uid":%q,"controller":true,"blockOwnerDeletion":true}],"uid":%q}}`,
				d.Name, d.UID, rs.UID)
			got, err := s.c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(s.ctx, rs.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("deployment: adopt %s: %w", rs.Name, err)
			}
			out = append(out, got)
		}
	}
	return out, nil
}

// newAndOld finds (and, with create, makes) the new ReplicaSet and brings
// its revision and annotations up to date.
func (s *syncer) newAndOld(create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	d := s.d
	existing, old := Split(d, s.rss)
	revision := maxRevision(old) + 1
	if existing != nil {
		rs := existing.DeepCopy()
		changed := SetNewRSAnnotations(d, rs, revision, true)
		if rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			changed = true
		}
		if changed {
			got, err := s.c.client.AppsV1().ReplicaSets(rs.Namespace).Update(s.ctx, rs, metav1.UpdateOptions{})
			if err != nil {
				return nil, nil, err
			}
			s.replaceRS(existing, got)
			existing = got
		}
		if err := s.setRevision(existing.Annotations[RevisionAnnotation]); err != nil {
			return nil, nil, err
		}
		if HasProgressDeadline(d) && GetCondition(&d.Status, appsv1.DeploymentProgressing) == nil {
			SetCondition(&d.Status, NewCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, ReasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", existing.Name), s.c.now()))
			if err := s.updateStatus(); err != nil {
				return nil, nil, err
			}
		}
		return existing, old, nil
	}
	if !create {
		return nil, old, nil
	}

	rs := NewReplicaSet(d)
	n := NewRSReplicas(d, append(old, rs), rs)
	rs.Spec.Replicas = &n
	SetNewRSAnnotations(d, rs, revision, false)
	got, err := s.c.client.AppsV1().ReplicaSets(d.Namespace).Create(s.ctx, rs, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		cur, gerr := s.c.client.AppsV1().ReplicaSets(d.Namespace).Get(s.ctx, rs.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, nil, gerr
		}
		if ref := metav1.GetControllerOf(cur); ref != nil && ref.UID == d.UID && EqualIgnoreHash(&cur.Spec.Template, &d.Spec.Template) {
			// Ours, created by an earlier sync whose cache had not seen it.
			s.rss = append(s.rss, cur)
			return cur, old, nil
		}
		// Another template hashed to the same name: bump the collision
		// count so the next sync picks a different one.
		var cc int32
		if d.Status.CollisionCount != nil {
			cc = *d.Status.CollisionCount
		}
		cc++
		d.Status.CollisionCount = &cc
		if err := s.updateStatus(); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %s", ErrCollision, rs.Name)
	case err != nil:
		if HasProgressDeadline(d) {
			SetCondition(&d.Status, NewCondition(appsv1.DeploymentProgressing, v1.ConditionFalse, ReasonFailedRSCreate,
				fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err), s.c.now()))
			_ = s.updateStatus()
		}
		return nil, nil, fmt.Errorf("deployment: create %s: %w", rs.Name, err)
	}
	s.rss = append(s.rss, got)
	if n > 0 {
		s.c.recorder.Eventf(d, v1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", got.Name, n)
	}
	if err := s.setRevision(got.Annotations[RevisionAnnotation]); err != nil {
		return nil, nil, err
	}
	if HasProgressDeadline(d) {
		SetCondition(&d.Status, NewCondition(appsv1.DeploymentProgressing, v1.ConditionTrue, ReasonNewRSCreated,
			fmt.Sprintf("Created new replica set %q", got.Name), s.c.now()))
		if err := s.updateStatus(); err != nil {
			return nil, nil, err
		}
	}
	return got, old, nil
}

func (s *syncer) replaceRS(old, cur *appsv1.ReplicaSet) {
	for i, rs := range s.rss {
		if rs.UID == old.UID {
			s.rss[i] = cur
		}
	}
}

// setRevision mirrors the new ReplicaSet's revision on the Deployment, where
// kubectl rollout history and undo read it.
func (s *syncer) setRevision(rev string) error {
	if rev == "" || s.d.Annotations[RevisionAnnotation] == rev {
		return nil
	}
	if cur, err := strconv.ParseInt(s.d.Annotations[RevisionAnnotation], 10, 64); err == nil {
		if n, _ := strconv.ParseInt(rev, 10, 64); n < cur {
			return nil
		}
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{RevisionAnnotation: rev}}})
	got, err := s.c.client.AppsV1().Deployments(s.d.Namespace).Patch(s.ctx, s.d.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("deployment: revision of %s: %w", s.d.Name, err)
	}
	// Keep the status this sync has built; take the new metadata.
	got.Status = s.d.Status
	s.d = got
	return nil
}

func (s *syncer) updateStatus() error {
	got, err := s.c.client.AppsV1().Deployments(s.d.Namespace).UpdateStatus(s.ctx, s.d, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	s.d = got
	return nil
}

// scaleRS sets one ReplicaSet's size and the Deployment size it was sized
// for, with Kubernetes' ScalingReplicaSet event.
func (s *syncer) scaleRS(rs *appsv1.ReplicaSet, to int32) error {
	d := s.d
	cp := rs.DeepCopy()
	from := replicas(rs)
	annotated := SetReplicasAnnotations(cp, want(d), want(d)+MaxSurge(d))
	if from == to && !annotated {
		return nil
	}
	cp.Spec.Replicas = &to
	got, err := s.c.client.AppsV1().ReplicaSets(cp.Namespace).Update(s.ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("deployment: scale %s: %w", rs.Name, err)
	}
	s.replaceRS(rs, got)
	*rs = *got
	if from != to {
		dir := "up"
		if to < from {
			dir = "down"
		}
		s.c.recorder.Eventf(d, v1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, from, to)
	}
	return nil
}

func (s *syncer) apply(steps []Step) (bool, error) {
	for _, st := range steps {
		if err := s.scaleRS(st.RS, st.To); err != nil {
			return false, err
		}
	}
	return len(steps) > 0, nil
}

func (s *syncer) pausedCondition() error {
	if PausedCondition(s.d, &s.d.Status, s.c.now()) {
		return s.updateStatus()
	}
	return nil
}

// scaleOnly serves a paused Deployment or a change of spec.replicas: resize,
// without rolling anything out.
func (s *syncer) scaleOnly() error {
	newRS, old, err := s.newAndOld(false)
	if err != nil {
		return err
	}
	if _, err := s.apply(Scale(s.d, newRS, old)); err != nil {
		return err
	}
	if s.d.Spec.Paused {
		if err := s.cleanup(old); err != nil {
			return err
		}
	}
	return s.syncStatus(append(old, newRS), newRS)
}

// syncStatus writes the calculated status if it changed.
func (s *syncer) syncStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := CalculateStatus(s.d, all, newRS, s.c.now())
	if apiequality.Semantic.DeepEqual(st, s.d.Status) {
		return nil
	}
	s.d.Status = st
	return s.updateStatus()
}

// rolloutStatus ends every rollout step: status with the Progressing
// condition, and a recheck at the progress deadline.
func (s *syncer) rolloutStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	now := s.c.now()
	st := CalculateStatus(s.d, all, newRS, now)
	Progress(s.d, &st, all, newRS, now)
	if !apiequality.Semantic.DeepEqual(st, s.d.Status) {
		s.d.Status = st
		if err := s.updateStatus(); err != nil {
			return err
		}
	}
	if after, ok := RecheckAfter(s.d, &s.d.Status, now); ok {
		s.c.queue.AddAfter(s.d.Namespace+"/"+s.d.Name, after)
	}
	return nil
}

func (s *syncer) cleanup(old []*appsv1.ReplicaSet) error {
	if s.d.Spec.RevisionHistoryLimit == nil {
		return nil
	}
	for _, rs := range Cleanup(old, *s.d.Spec.RevisionHistoryLimit) {
		err := s.c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(s.ctx, rs.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deployment: delete old replica set %s: %w", rs.Name, err)
		}
	}
	return nil
}

func (s *syncer) rolling() error {
	newRS, old, err := s.newAndOld(true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	if n := NewRSReplicas(s.d, all, newRS); n != replicas(newRS) || replicas(newRS) > want(s.d) {
		if replicas(newRS) > want(s.d) {
			n = want(s.d)
		}
		if err := s.scaleRS(newRS, n); err != nil {
			return err
		}
		return s.rolloutStatus(all, newRS)
	}
	scaled, err := s.apply(RollingScaleDown(s.d, newRS, old))
	if err != nil {
		return err
	}
	if !scaled && Complete(s.d, &s.d.Status) {
		if err := s.cleanup(old); err != nil {
			return err
		}
	}
	return s.rolloutStatus(all, newRS)
}

func (s *syncer) recreate(sel labels.Selector) error {
	newRS, old, err := s.newAndOld(false)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	var down []Step
	for _, rs := range active(old) {
		down = append(down, Step{RS: rs, To: 0})
	}
	if scaled, err := s.apply(down); err != nil || scaled {
		if err != nil {
			return err
		}
		return s.rolloutStatus(all, newRS)
	}
	running, err := s.oldPodsRunning(sel, newRS, old)
	if err != nil {
		return err
	}
	if running {
		return s.rolloutStatus(all, newRS)
	}
	if newRS == nil {
		if newRS, old, err = s.newAndOld(true); err != nil {
			return err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	if replicas(newRS) != want(s.d) {
		if err := s.scaleRS(newRS, want(s.d)); err != nil {
			return err
		}
	}
	if Complete(s.d, &s.d.Status) {
		if err := s.cleanup(old); err != nil {
			return err
		}
	}
	return s.rolloutStatus(all, newRS)
}

// oldPodsRunning reports whether any pod of an old ReplicaSet is still
// there and not finished; Recreate starts new pods only after.
func (s *syncer) oldPodsRunning(sel labels.Selector, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) (bool, error) {
	oldUIDs := map[types.UID]bool{}
	for _, rs := range old {
		if rs.Status.Replicas > 0 {
			return true, nil
		}
		oldUIDs[rs.UID] = true
	}
	pods, err := s.c.pods.Pods(s.d.Namespace).List(sel)
	if err != nil {
		return false, err
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || !oldUIDs[ref.UID] || (newRS != nil && ref.UID == newRS.UID) {
			continue
		}
		if p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
			return true, nil
		}
	}
	return false, nil
}
