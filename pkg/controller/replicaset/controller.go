// Package replicaset keeps the number of pods of every ReplicaSet (apps/v1)
// and ReplicationController (core/v1) equal to its spec.replicas: it creates
// pods from the template, adopts matching orphans, releases pods whose labels
// stop matching, deletes the least valuable pods when scaling down, and
// reports status.
//
// The deciding parts (ComputePlan, RankForDeletion, Claim, Count, Status)
// are plain functions over a snapshot with now passed in; Controller is the
// informer → workqueue → reconcile shell around them, with Expectations
// guarding against acting twice on a stale cache.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// conflictRetry is how soon a key whose write hit a conflict is retried.
const conflictRetry = 50 * time.Millisecond

// Errors.
var (
	ErrCreate = errors.New("replicaset: creating pods failed")
	ErrDelete = errors.New("replicaset: deleting pods failed")
)

// Controller reconciles one kind of replica owner (ReplicaSet or
// ReplicationController), one namespace/name key at a time.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	kind        *kind
	podIndex    cache.Indexer
	synced      []cache.InformerSynced
	queue       *queue.Queue
	exp         *Expectations
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	now         func() time.Time
}

// NewReplicaSet builds the ReplicaSet controller on the shared factory.
func NewReplicaSet(client kubernetes.Interface, f informers.SharedInformerFactory, log *slog.Logger) *Controller {
	return newController(client, f, log, replicaSetKind(client, f))
}

// NewReplicationController builds the ReplicationController controller.
func NewReplicationController(client kubernetes.Interface, f informers.SharedInformerFactory, log *slog.Logger) *Controller {
	return newController(client, f, log, replicationControllerKind(client, f))
}

func newController(client kubernetes.Interface, f informers.SharedInformerFactory, log *slog.Logger, k *kind) *Controller {
	podInf := f.Core().V1().Pods()
	b := record.NewBroadcaster()
	log = log.With("controller", k.name)
	c := &Controller{
		client:      client,
		log:         log,
		kind:        k,
		podIndex:    podInf.Informer().GetIndexer(),
		synced:      []cache.InformerSynced{k.informer.HasSynced, podInf.Informer().HasSynced},
		exp:         NewExpectations(),
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: k.component}),
		now:         time.Now,
	}
	c.queue = queue.New(c.sync, queue.Config{Name: k.name, Log: log, ConflictRetry: conflictRetry})
	IndexPodsByController(podInf.Informer())
	k.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.queue.AddObject,
		UpdateFunc: func(_, obj any) { c.queue.AddObject(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.exp.Forget(key)
				c.queue.Add(key)
			}
		},
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	})
	return c
}

// ControllerIndex indexes pods by their controller's UID, and orphans by
// "orphan/<namespace>", so a sync looks only at the pods it may own rather
// than at every pod in the namespace.
const ControllerIndex = "skiff-controller-uid"

// IndexPodsByController adds ControllerIndex to the shared pod informer
// unless another controller (the other replica kind, jobs) already has.
func IndexPodsByController(pods cache.SharedIndexInformer) {
	if _, ok := pods.GetIndexer().GetIndexers()[ControllerIndex]; !ok {
		_ = pods.AddIndexers(cache.Indexers{ControllerIndex: indexByController})
	}
}

func indexByController(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return []string{"orphan/" + pod.Namespace}, nil
}

// candidates are the pods an owner controls or could adopt.
func (c *Controller) candidates(o *owner) ([]*v1.Pod, error) {
	var out []*v1.Pod
	for _, key := range []string{string(o.meta.UID), "orphan/" + o.meta.Namespace} {
		objs, err := c.podIndex.ByIndex(ControllerIndex, key)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			if p, ok := obj.(*v1.Pod); ok {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// ownerKey returns the key of the owner of our kind that controls pod.
func (c *Controller) ownerKey(pod *v1.Pod) (string, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != c.kind.gvk.Kind || ref.APIVersion != c.kind.gvk.GroupVersion().String() {
		return "", false
	}
	o, err := c.kind.get(pod.Namespace, ref.Name)
	if err != nil || o.meta.UID != ref.UID {
		return "", false
	}
	return pod.Namespace + "/" + ref.Name, true
}

// enqueueMatching queues every owner whose selector matches an orphan pod,
// so one of them adopts it.
func (c *Controller) enqueueMatching(pod *v1.Pod) {
	owners, err := c.kind.list(pod.Namespace)
	if err != nil {
		return
	}
	for _, o := range owners {
		if o.selector != nil && o.selector.Matches(labels.Set(pod.Labels)) {
			c.queue.Add(o.meta.Namespace + "/" + o.meta.Name)
		}
	}
}

func (c *Controller) addPod(obj any) {
	pod := obj.(*v1.Pod)
	if pod.DeletionTimestamp != nil {
		c.deletePod(pod) // a restarted informer can list a pod already being deleted
		return
	}
	if key, ok := c.ownerKey(pod); ok {
		c.exp.CreationObserved(key)
		c.queue.Add(key)
		return
	}
	if metav1.GetControllerOf(pod) == nil {
		c.enqueueMatching(pod)
	}
}

func (c *Controller) updatePod(oldObj, obj any) {
	old, pod := oldObj.(*v1.Pod), obj.(*v1.Pod)
	if old.ResourceVersion == pod.ResourceVersion {
		return
	}
	if pod.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
		// Graceful deletion: the pod no longer counts, so act now rather
		// than when the kubelet finally removes it.
		c.deletePod(pod)
		if okey, ok := c.ownerKey(old); ok {
			c.queue.Add(okey)
		}
		return
	}
	oldRef, newRef := metav1.GetControllerOf(old), metav1.GetControllerOf(pod)
	if oldRef != nil && (newRef == nil || oldRef.UID != newRef.UID) {
		if okey, ok := c.ownerKey(old); ok {
			c.queue.Add(okey)
		}
	}
	key, ok := c.ownerKey(pod)
	if ok {
		c.queue.Add(key)
		// A pod that just became ready becomes available minReadySeconds
		// later; look again then.
		if o, err := c.kind.get(pod.Namespace, metav1.GetControllerOf(pod).Name); err == nil &&
			o.minReady > 0 && !Ready(old) && Ready(pod) {
			c.queue.AddAfter(key, time.Duration(o.minReady)*time.Second+time.Second)
		}
		return
	}
	if newRef == nil {
		c.enqueueMatching(pod)
	}
}

func (c *Controller) deletePod(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*v1.Pod); !ok {
			return
		}
	}
	key, ok := c.ownerKey(pod)
	if !ok {
		return
	}
	c.exp.DeletionObserved(key, pod.Namespace+"/"+pod.Name)
	c.queue.Add(key)
}

// Run reconciles with the given number of workers until ctx ends, after the
// caches have synced.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	return c.queue.Run(ctx, workers, c.synced...)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	o, err := c.kind.get(ns, name)
	if apierrors.IsNotFound(err) {
		c.exp.Forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	satisfied := c.exp.Satisfied(key, c.now())

	all, err := c.candidates(o)
	if err != nil {
		return err
	}
	sel := o.selector
	if sel == nil {
		sel = labels.Nothing()
	}
	owned, adopt, release := Claim(string(o.meta.UID), sel, all)
	if len(adopt) > 0 && o.meta.DeletionTimestamp == nil {
		adopted, err := c.adopt(ctx, o, adopt)
		owned = append(owned, adopted...)
		if err != nil {
			return err
		}
	}
	for _, p := range release {
		if err := c.release(ctx, o, p); err != nil {
			return err
		}
	}
	var active []*v1.Pod
	for _, p := range owned {
		if Active(p) {
			active = append(active, p)
		}
	}

	var manageErr error
	if satisfied && o.meta.DeletionTimestamp == nil {
		start := c.now()
		manageErr = c.manage(ctx, key, o, active)
		c.log.Debug("managed", "key", key, "active", len(active), "want", o.replicas, "took", c.now().Sub(start), "err", manageErr)
	} else if !satisfied {
		c.log.Debug("waiting for expectations", "key", key, "active", len(active))
	}

	now := c.now()
	counts := Count(active, o.template.Labels, o.minReady, now)
	st := Status(o.status, o.meta.Generation, counts, createFailure(manageErr), now)
	if !statusEqual(st, o.status) {
		if err := c.kind.updateStatus(ctx, o, st); err != nil && !apierrors.IsNotFound(err) {
			return errors.Join(manageErr, fmt.Errorf("%s: status of %s: %w", c.kind.name, key, err))
		}
	}
	if counts.Recheck > 0 {
		c.queue.AddAfter(key, counts.Recheck)
	}
	return manageErr
}

// createFailure extracts the creation error a ReplicaFailure condition
// reports.
func createFailure(err error) error {
	var ce *createError
	if errors.As(err, &ce) {
		return ce.err
	}
	return nil
}

type createError struct{ err error }

func (e *createError) Error() string   { return fmt.Sprintf("%v: %v", ErrCreate, e.err) }
func (e *createError) Unwrap() []error { return []error{ErrCreate, e.err} }

// manage carries out the plan for one owner.
func (c *Controller) manage(ctx context.Context, key string, o *owner, active []*v1.Pod) error {
	plan := ComputePlan(int(o.replicas), active, c.now())
	switch {
	case plan.Create > 0:
		return c.create(ctx, key, o, plan.Create, len(active))
	case len(plan.Delete) > 0:
		return c.delete(ctx, key, o, plan.Delete)
	}
	return nil
}

func (c *Controller) create(ctx context.Context, key string, o *owner, n, active int) error {
	c.exp.ExpectCreations(key, n, c.now())
	left := n
	for _, batch := range Batches(n, active) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() {
				pod, err := c.client.CoreV1().Pods(o.meta.Namespace).Create(ctx, c.podFor(o), metav1.CreateOptions{})
				if err != nil {
					c.exp.CreationObserved(key) // it will never show up
					if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
						return
					}
					c.recorder.Eventf(o.obj, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
					errs <- err
					return
				}
				c.recorder.Eventf(o.obj, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", pod.Name)
			})
		}
		wg.Wait()
		close(errs)
		left -= batch
		if err, failed := <-errs; failed {
			// Skip the rest: they would likely fail the same way.
			c.exp.LowerCreations(key, left)
			return &createError{err: err}
		}
	}
	return nil
}

func (c *Controller) podFor(o *owner) *v1.Pod {
	t := o.template
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    o.meta.Name + "-",
			Namespace:       o.meta.Namespace,
			Labels:          copyMap(t.Labels),
			Annotations:     copyMap(t.Annotations),
			Finalizers:      append([]string(nil), t.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(o.meta, c.kind.gvk)},
		},
		Spec: *t.Spec.DeepCopy(),
	}
	return pod
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c *Controller) delete(ctx context.Context, key string, o *owner, pods []*v1.Pod) error {
	keys := make([]string, len(pods))
	for i, p := range pods {
		keys[i] = p.Namespace + "/" + p.Name
	}
	c.exp.ExpectDeletions(key, keys, c.now())
	errs := make(chan error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err == nil {
				c.recorder.Eventf(o.obj, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
				return
			}
			c.exp.DeletionObserved(key, keys[i])
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return // already gone (or replaced by another pod of that name)
			}
			c.recorder.Eventf(o.obj, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	if err, failed := <-errs; failed {
		return fmt.Errorf("%w: %w", ErrDelete, err)
	}
	return nil
}

// adopt makes the owner the controller of orphans, after checking with the
// API server (not the cache) that the owner still exists and is not being
// deleted, so a recreated owner of the same name does not take them.
func (c *Controller) adopt(ctx context.Context, o *owner, pods []*v1.Pod) ([]*v1.Pod, error) {
	fresh, err := c.kind.fetch(ctx, o.meta.Namespace, o.meta.Name)
	if err != nil {
		return nil, err
	}
	if fresh.meta.UID != o.meta.UID || fresh.meta.DeletionTimestamp != nil {
		return nil, nil
	}
	ref := metav1.NewControllerRef(o.meta, c.kind.gvk)
	var out []*v1.Pod
	for _, p := range pods {
		// The pod's uid in the patch makes it fail on a pod recreated under
		// the same name.
		patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":%q,"kind":%q,"name":%q,"uid":%q,"controller":true,"blockOwnerDeletion":true}],"uid":%q}}`,
			ref.APIVersion, ref.Kind, ref.Name, ref.UID, p.UID)
		got, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType,
			[]byte(patch), metav1.PatchOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
			continue // gone, or replaced by a pod of the same name (uid mismatch)
		}
		if err != nil {
			return out, fmt.Errorf("%s: adopt pod %s: %w", c.kind.name, p.Name, err)
		}
		out = append(out, got)
	}
	return out, nil
}

// release removes the owner's reference from a pod its selector no longer
// matches, so the pod becomes an orphan and the owner replaces it.
func (c *Controller) release(ctx context.Context, o *owner, p *v1.Pod) error {
	patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"$patch":"delete","uid":%q}],"uid":%q}}`, o.meta.UID, p.UID)
	_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
		return fmt.Errorf("%s: release pod %s: %w", c.kind.name, p.Name, err)
	}
	return nil
}
