// Package job runs batch/v1 Jobs: it creates pods from a Job's template, up
// to spec.parallelism at a time and no more than the completions left,
// counts the pods that succeeded and failed, and marks the Job Complete once
// enough succeeded or Failed once too many failed (backoffLimit) or it ran
// too long (activeDeadlineSeconds). A suspended Job's pods are deleted; a
// finished Job with ttlSecondsAfterFinished is deleted that long after it
// finished, its pods following through the garbage collector.
//
// Compute is the deciding part, a plain function of the Job, its pods and
// now; Controller is the informer → workqueue → reconcile shell around it,
// with the replica controllers' expectations guarding against creating
// pods twice from a stale cache.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-org/skiff/pkg/controller/queue"
	"github.com/skiff-org/skiff/pkg/controller/replicaset"
)

// conflictRetry is how soon a key whose write hit a conflict is retried.
const conflictRetry = 50 * time.Millisecond

// Errors.
var (
	ErrCreate = errors.New("job: creating pods failed")
	ErrDelete = errors.New("job: deleting pods failed")
)

var jobKind = batchv1.SchemeGroupVersion.WithKind("Job")

// Controller reconciles Jobs, one namespace/name key at a time.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	jobs        batchlisters.JobLister
	podIndex    cache.Indexer
	synced      []cache.InformerSynced
	queue       *queue.Queue
	exp         *replicaset.Expectations
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	now         func() time.Time
}

// New builds the Job controller on the shared factory.
func New(client kubernetes.Interface, f informers.SharedInformerFactory, log *slog.Logger) *Controller {
	jobInf := f.Batch().V1().Jobs()
	podInf := f.Core().V1().Pods()
	b := record.NewBroadcaster()
	log = log.With("controller", "job")
	c := &Controller{
		client:      client,
		log:         log,
		jobs:        jobInf.Lister(),
		podIndex:    podInf.Informer().GetIndexer(),
		synced:      []cache.InformerSynced{jobInf.Informer().HasSynced, podInf.Informer().HasSynced},
		exp:         replicaset.NewExpectations(),
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "job-controller"}),
		now:         time.Now,
	}
	c.queue = queue.New(c.sync, queue.Config{Name: "job", Log: log, KeyAttr: "job", ConflictRetry: conflictRetry})
	replicaset.IndexPodsByController(podInf.Informer())
	jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
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
		AddFunc: func(obj any) {
			pod := obj.(*v1.Pod)
			if key, ok := jobKey(pod); ok {
				if pod.DeletionTimestamp != nil {
					c.exp.DeletionObserved(key, podKey(pod))
				} else {
					c.exp.CreationObserved(key)
				}
				c.queue.Add(key)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, pod := oldObj.(*v1.Pod), obj.(*v1.Pod)
			if old.ResourceVersion == pod.ResourceVersion {
				return
			}
			if key, ok := jobKey(pod); ok {
				if pod.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
					c.exp.DeletionObserved(key, podKey(pod))
				}
				c.queue.Add(key)
			}
		},
		DeleteFunc: func(obj any) {
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
			if key, ok := jobKey(pod); ok {
				c.exp.DeletionObserved(key, podKey(pod))
				c.queue.Add(key)
			}
		},
	})
	return c
}

// jobKey is the key of the Job that controls pod, if a Job does.
func jobKey(pod *v1.Pod) (string, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != jobKind.Kind || ref.APIVersion != jobKind.GroupVersion().String() {
		return "", false
	}
	return pod.Namespace + "/" + ref.Name, true
}

func podKey(p *v1.Pod) string { return p.Namespace + "/" + p.Name }

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
	job, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	now := c.now()
	if !c.exp.Satisfied(key, now) {
		// Pods it created or deleted have not all shown up yet: the cache
		// is stale, and the events that bring them will wake it again.
		return nil
	}
	objs, err := c.podIndex.ByIndex(replicaset.ControllerIndex, string(job.UID))
	if err != nil {
		return err
	}
	pods := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok {
			pods = append(pods, p)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	plan := Compute(job, pods, now)
	if plan.DeleteJob {
		return c.deleteJob(ctx, job)
	}
	var errs []error
	if len(plan.Delete) > 0 {
		if err := c.deletePods(ctx, key, job, plan.Delete); err != nil {
			errs = append(errs, err)
		}
	}
	if plan.Create > 0 {
		failed, err := c.createPods(ctx, key, job, plan.Create)
		plan.Status.Active -= int32(failed)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !apiequality.Semantic.DeepEqual(plan.Status, job.Status) {
		j := job.DeepCopy()
		j.Status = plan.Status
		if _, err := c.client.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			// The events are recorded by the sync whose write lands.
			return errors.Join(append(errs, fmt.Errorf("job: status of %s: %w", key, err))...)
		}
		for _, e := range plan.Events {
			c.recorder.Event(job, e.Type, e.Reason, e.Message)
		}
	}
	if plan.Requeue > 0 {
		c.queue.AddAfter(key, plan.Requeue)
	}
	return errors.Join(errs...)
}

// createPods creates n pods from the Job's template and returns how many
// could not be created.
func (c *Controller) createPods(ctx context.Context, key string, job *batchv1.Job, n int) (int, error) {
	c.exp.ExpectCreations(key, n, c.now())
	left, failed := n, 0
	for _, batch := range replicaset.Batches(n, 0) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() {
				pod, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, podFor(job), metav1.CreateOptions{})
				if err != nil {
					c.exp.CreationObserved(key) // it will never show up
					if !apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
						c.recorder.Eventf(job, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
					}
					errs <- err
					return
				}
				c.recorder.Eventf(job, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", pod.Name)
			})
		}
		wg.Wait()
		close(errs)
		left -= batch
		failed += len(errs)
		if err, bad := <-errs; bad {
			// Skip the rest: they would likely fail the same way.
			c.exp.LowerCreations(key, left)
			return failed + left, fmt.Errorf("%w: %w", ErrCreate, err)
		}
	}
	return 0, nil
}

// podFor is a pod of the Job: its template, controlled by the Job.
func podFor(job *batchv1.Job) *v1.Pod {
	t := &job.Spec.Template
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    job.Name + "-",
			Namespace:       job.Namespace,
			Labels:          copyMap(t.Labels),
			Annotations:     copyMap(t.Annotations),
			Finalizers:      append([]string(nil), t.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, jobKind)},
		},
		Spec: *t.Spec.DeepCopy(),
	}
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

func (c *Controller) deletePods(ctx context.Context, key string, job *batchv1.Job, pods []*v1.Pod) error {
	keys := make([]string, len(pods))
	for i, p := range pods {
		keys[i] = podKey(p)
	}
	c.exp.ExpectDeletions(key, keys, c.now())
	errs := make(chan error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err == nil {
				c.recorder.Eventf(job, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
				return
			}
			c.exp.DeletionObserved(key, keys[i])
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				return // already gone (or replaced by another pod of that name)
			}
			c.recorder.Eventf(job, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
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

// deleteJob deletes a finished Job whose ttlSecondsAfterFinished has passed,
// in the background: the garbage collector removes its pods.
func (c *Controller) deleteJob(ctx context.Context, job *batchv1.Job) error {
	if job.DeletionTimestamp != nil {
		return nil
	}
	policy := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("job: delete %s/%s after its ttl: %w", job.Namespace, job.Name, err)
	}
	return nil
}
