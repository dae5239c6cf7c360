// Package deployment rolls Deployments out through ReplicaSets: one
// ReplicaSet per pod template, named <deployment>-<pod-template-hash>, grown
// and shrunk step by step within maxSurge and maxUnavailable (RollingUpdate)
// or all at once (Recreate), with revisions, history cleanup, pause, and the
// Progressing and Available conditions that kubectl rollout reads.
//
// The decisions (Split, NewRSReplicas, RollingScaleDown, Scale, Cleanup,
// CalculateStatus, Progress) are plain functions over the Deployment and its
// ReplicaSets with now passed in; Controller is the informer → workqueue →
// reconcile shell that applies them. Pods are left to the ReplicaSet
// controller.
package deployment

import (
	"context"
	"errors"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// conflictRetry is how soon a key whose write hit a conflict is retried.
const conflictRetry = 50 * time.Millisecond

// Errors.
var (
	ErrInvalid   = errors.New("deployment: invalid spec")
	ErrCollision = errors.New("deployment: replica set name collision")
)

var deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Controller reconciles Deployments, one namespace/name key at a time.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	deployments appslisters.DeploymentLister
	rss         appslisters.ReplicaSetLister
	pods        corelisters.PodLister
	synced      []cache.InformerSynced
	queue       *queue.Queue
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	now         func() time.Time
}

// New builds the controller on the shared informer factory.
func New(client kubernetes.Interface, f informers.SharedInformerFactory, log *slog.Logger) *Controller {
	dInf := f.Apps().V1().Deployments()
	rsInf := f.Apps().V1().ReplicaSets()
	podInf := f.Core().V1().Pods()
	b := record.NewBroadcaster()
	log = log.With("controller", "deployment")
	c := &Controller{
		client:      client,
		log:         log,
		deployments: dInf.Lister(),
		rss:         rsInf.Lister(),
		pods:        podInf.Lister(),
		synced:      []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "deployment-controller"}),
		now:         time.Now,
	}
	c.queue = queue.New(c.sync, queue.Config{
		Name: "deployment", Log: log, KeyAttr: "deployment", ConflictRetry: conflictRetry,
		// A collision bumps status.collisionCount, so the retry picks
		// another name: nothing went wrong.
		Expected: func(err error) bool { return errors.Is(err, ErrCollision) },
	})
	dInf.Informer().AddEventHandler(c.queue.Handler())
	rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueueForRS(obj) },
		UpdateFunc: func(old, obj any) {
			c.enqueueForRS(old)
			c.enqueueForRS(obj)
		},
		DeleteFunc: func(obj any) { c.enqueueForRS(obj) },
	})
	// Recreate waits for the old pods to be gone.
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: c.podDeleted,
	})
	return c
}

func unwrap[T any](obj any) (T, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	t, ok := obj.(T)
	return t, ok
}

// enqueueForRS queues the Deployment controlling rs or, for an orphan, every
// Deployment whose selector matches it.
func (c *Controller) enqueueForRS(obj any) {
	rs, ok := unwrap[*appsv1.ReplicaSet](obj)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(rs); ref != nil {
		if ref.Kind == deploymentKind.Kind && ref.APIVersion == deploymentKind.GroupVersion().String() {
			c.queue.Add(rs.Namespace + "/" + ref.Name)
		}
		return
	}
	ds, err := c.deployments.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range ds {
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
	}
}

func (c *Controller) podDeleted(obj any) {
	pod, ok := unwrap[*v1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rss.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	dref := metav1.GetControllerOf(rs)
	if dref == nil || dref.Kind != deploymentKind.Kind {
		return
	}
	d, err := c.deployments.Deployments(pod.Namespace).Get(dref.Name)
	if err == nil && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.queue.Add(d.Namespace + "/" + d.Name)
	}
}

// Run reconciles with the given number of workers until ctx ends, after the
// caches have synced.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	return c.queue.Run(ctx, workers, c.synced...)
}
