// Package endpoints keeps the Endpoints object of every Service with a
// selector equal to the addresses of the pods it selects, so that the proxy
// and DNS can find them. Services without a selector are left to the user.
//
// The deciding part is Subsets, a plain function over a service and its pods;
// Controller is the informer/workqueue shell around it.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// Controller reconciles Endpoints objects, one service key at a time.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	services    corelisters.ServiceLister
	pods        corelisters.PodLister
	endpoints   corelisters.EndpointsLister
	synced      []cache.InformerSynced
	queue       *queue.Queue
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// New builds the controller on the shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	epInf := factory.Core().V1().Endpoints()
	b := record.NewBroadcaster()
	log = log.With("controller", "endpoints")
	c := &Controller{
		client:      client,
		log:         log,
		services:    svcInf.Lister(),
		pods:        podInf.Lister(),
		endpoints:   epInf.Lister(),
		synced:      []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, epInf.Informer().HasSynced},
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "endpoint-controller"}),
	}
	c.queue = queue.New(c.sync, queue.Config{Name: "endpoints", Log: log, KeyAttr: "service", Expected: apierrors.IsConflict})
	svcInf.Informer().AddEventHandler(c.queue.Handler())
	podInf.Informer().AddEventHandler(PodHandler(c.services, c.queue.Add))
	epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { c.queue.AddObject(obj) },
		DeleteFunc: c.queue.AddObject,
	})
	return c
}

// PodHandler is the pod informer handler of a controller that keeps an
// object per Service (Endpoints here, EndpointSlices in endpointslice): it
// calls add with the key of every service that selects the pod now or
// selected it before an update, so a relabelled pod leaves its old service
// too.
func PodHandler(services corelisters.ServiceLister, add func(key string)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { addPodServices(services, add, obj, nil) },
		UpdateFunc: func(old, obj any) { addPodServices(services, add, obj, old) },
		DeleteFunc: func(obj any) { addPodServices(services, add, obj, nil) },
	}
}

func addPodServices(services corelisters.ServiceLister, add func(string), obj, old any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	oldPod, _ := old.(*v1.Pod)
	if oldPod != nil && oldPod.ResourceVersion == pod.ResourceVersion {
		return // periodic resync
	}
	svcs, err := services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, svc := range svcs {
		if Selects(svc, pod) || (oldPod != nil && Selects(svc, oldPod)) {
			add(svc.Namespace + "/" + svc.Name)
		}
	}
}

// Run processes services with the given number of workers until ctx ends.
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
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The service is gone; so are its endpoints.
		err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("endpoints: delete %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil {
		return nil // the user manages these endpoints
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	subsets, trigger := Subsets(svc, pods)
	want := Labels(svc)

	cur, err := c.endpoints.Endpoints(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if cur != nil && apiequality.Semantic.DeepEqual(cur.Subsets, subsets) && apiequality.Semantic.DeepEqual(cur.Labels, want) {
		return nil
	}
	var ep *v1.Endpoints
	if cur == nil {
		ep = &v1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	} else {
		ep = cur.DeepCopy()
	}
	ep.Labels = want
	ep.Subsets = subsets
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	ep.Annotations[LastChangeTriggerTime] = trigger.UTC().Format(time.RFC3339Nano)
	if cur == nil {
		_, err = c.client.CoreV1().Endpoints(ns).Create(ctx, ep, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return err // the cache is behind; retry against the stored object
		}
		if err != nil {
			c.recorder.Eventf(svc, v1.EventTypeWarning, "FailedToCreateEndpoint", "Failed to create endpoint for service %s: %v", key, err)
			return fmt.Errorf("endpoints: create %s: %w", key, err)
		}
		return nil
	}
	_, err = c.client.CoreV1().Endpoints(ns).Update(ctx, ep, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsConflict(err) {
		c.recorder.Eventf(svc, v1.EventTypeWarning, "FailedToUpdateEndpoint", "Failed to update endpoint %s: %v", key, err)
		return fmt.Errorf("endpoints: update %s: %w", key, err)
	}
	return err
}
