// Package endpointslice keeps the EndpointSlices of every Service with a
// selector in step with the pods it selects: at most 100 endpoints per slice,
// terminating pods marked rather than dropped, slices owned by their Service.
//
// Reconcile is the deciding part, a plain function over a service, its pods
// and its current slices; Controller is the informer/workqueue shell.
package endpointslice

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-org/skiff/pkg/controller/endpoints"
	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// staleRetry is how soon a service whose slice cache lags behind our own
// writes is looked at again.
const staleRetry = 20 * time.Millisecond

// Controller reconciles the EndpointSlices of services, one key at a time.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	services    corelisters.ServiceLister
	pods        corelisters.PodLister
	slices      discoverylisters.EndpointSliceLister
	synced      []cache.InformerSynced
	queue       *queue.Queue
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	written     *tracker
}

// New builds the controller on the shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	b := record.NewBroadcaster()
	log = log.With("controller", "endpointslice")
	c := &Controller{
		client:      client,
		log:         log,
		services:    svcInf.Lister(),
		pods:        podInf.Lister(),
		slices:      sliceInf.Lister(),
		synced:      []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, sliceInf.Informer().HasSynced},
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "endpoint-slice-controller"}),
		written:     newTracker(),
	}
	c.queue = queue.New(c.sync, queue.Config{
		Name: "endpointslice", Log: log, KeyAttr: "service",
		// Both mean the cache was behind a write; the retry sees it.
		Expected: func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) },
	})
	svcInf.Informer().AddEventHandler(c.queue.Handler())
	podInf.Informer().AddEventHandler(endpoints.PodHandler(c.services, c.queue.Add))
	sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueSliceService,
		UpdateFunc: func(_, obj any) { c.enqueueSliceService(obj) },
		DeleteFunc: c.enqueueSliceService,
	})
	return c
}

func (c *Controller) enqueueSliceService(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok || s.Labels[discovery.LabelManagedBy] != ManagedBy || s.Labels[discovery.LabelServiceName] == "" {
		return
	}
	c.queue.Add(s.Namespace + "/" + s.Labels[discovery.LabelServiceName])
}

// Run processes services with the given number of workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	return c.queue.Run(ctx, workers, c.synced...)
}

func (c *Controller) ownedSlices(ns, name string) ([]*discovery.EndpointSlice, error) {
	sel := labels.SelectorFromSet(labels.Set{discovery.LabelServiceName: name, discovery.LabelManagedBy: ManagedBy})
	return c.slices.EndpointSlices(ns).List(sel)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	existing, err := c.ownedSlices(ns, name)
	if err != nil {
		return err
	}
	if !c.written.caughtUp(key, existing) {
		c.queue.AddAfter(key, staleRetry)
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The garbage collector would remove them too; doing it here
		// takes the endpoints away from the proxy sooner.
		for _, s := range existing {
			err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("endpointslice: delete %s/%s: %w", ns, s.Name, err)
			}
			c.written.deleted(key, s.Name)
		}
		c.written.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil {
		return nil
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	ch := Reconcile(svc, pods, existing)
	return c.apply(ctx, key, svc, ch)
}

// apply writes ch: creates and updates first, so that endpoints moving
// between slices are never missing from all of them, then deletes.
func (c *Controller) apply(ctx context.Context, key string, svc *v1.Service, ch Changes) error {
	api := c.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	for _, s := range ch.Create {
		got, err := api.Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				return nil // namespace terminating
			}
			c.recorder.Eventf(svc, v1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s: %v", key, err)
			return fmt.Errorf("endpointslice: create for %s: %w", key, err)
		}
		c.written.wrote(key, got)
	}
	for _, s := range ch.Update {
		got, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				c.recorder.Eventf(svc, v1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s: %v", key, err)
			}
			return fmt.Errorf("endpointslice: update %s/%s: %w", svc.Namespace, s.Name, err)
		}
		c.written.wrote(key, got)
	}
	for _, s := range ch.Delete {
		err := api.Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("endpointslice: delete %s/%s: %w", svc.Namespace, s.Name, err)
		}
		c.written.deleted(key, s.Name)
	}
	return nil
}

// tracker remembers this controller's own slice writes per service, so that
// a sync never acts on a cache that has not seen them yet (which would create
// duplicate slices or resurrect deleted endpoints).
// Expectations expire after expectationTTL, so a slice someone else deleted
// cannot hold a service back for good.
type tracker struct {
	mu    sync.Mutex
	want  map[string]map[string]uint64 // service key -> slice name -> min resourceVersion; 0 means deleted
	since map[string]time.Time         // service key -> first unmet write
}

const expectationTTL = 5 * time.Second

func newTracker() *tracker {
	return &tracker{want: map[string]map[string]uint64{}, since: map[string]time.Time{}}
}

func (t *tracker) wrote(key string, s *discovery.EndpointSlice) {
	rv, err := strconv.ParseUint(s.ResourceVersion, 10, 64)
	if err != nil {
		return // resourceVersions are opaque; without a number we cannot compare
	}
	t.set(key, s.Name, rv)
}

func (t *tracker) deleted(key, name string) { t.set(key, name, 0) }

func (t *tracker) set(key, name string, rv uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.want[key]
	if m == nil {
		m = map[string]uint64{}
		t.want[key] = m
		t.since[key] = time.Now()
	}
	m[name] = rv
}

func (t *tracker) forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.want, key)
	delete(t.since, key)
}

// caughtUp reports whether cached reflects every write made for key, and
// drops the expectations it finds met.
func (t *tracker) caughtUp(key string, cached []*discovery.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.want[key]
	if len(m) == 0 || time.Since(t.since[key]) > expectationTTL {
		delete(t.want, key)
		delete(t.since, key)
		return true
	}
	seen := make(map[string]uint64, len(cached))
	for _, s := range cached {
		rv, _ := strconv.ParseUint(s.ResourceVersion, 10, 64)
		seen[s.Name] = rv
	}
	for name, want := range m {
		rv, present := seen[name]
		switch {
		case want == 0 && !present, want != 0 && present && rv >= want:
			delete(m, name)
		}
	}
	if len(m) == 0 {
		delete(t.want, key)
		delete(t.since, key)
		return true
	}
	return false
}
