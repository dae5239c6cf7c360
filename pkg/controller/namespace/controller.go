// Package namespace empties namespaces that are being deleted: once the API
// server has marked one (deletionTimestamp set, phase Terminating), every
// namespaced object in it is deleted, progress is reported in the
// namespace's conditions, and when nothing is left the "kubernetes" entry is
// taken out of spec.finalizers through the finalize subresource, after which
// the API server removes the namespace.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// recheck is how soon a namespace with content left is looked at again.
const recheck = time.Second

// Controller deletes the content of terminating namespaces.
type Controller struct {
	client     kubernetes.Interface
	dyn        dynamic.Interface
	disc       discovery.DiscoveryInterface
	log        *slog.Logger
	clock      clock.PassiveClock
	namespaces corelisters.NamespaceLister
	synced     cache.InformerSynced
	queue      *queue.Queue
}

// New builds the controller.
func New(client kubernetes.Interface, dyn dynamic.Interface, disc discovery.DiscoveryInterface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	inf := factory.Core().V1().Namespaces()
	log = log.With("controller", "namespace")
	c := &Controller{
		client:     client,
		dyn:        dyn,
		disc:       disc,
		log:        log,
		clock:      clock.RealClock{},
		namespaces: inf.Lister(),
		synced:     inf.Informer().HasSynced,
	}
	c.queue = queue.New(c.sync, queue.Config{
		Name: "namespace", Log: log, KeyAttr: "namespace",
		RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
	})
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if ns, ok := obj.(*v1.Namespace); ok && ns.DeletionTimestamp != nil {
		c.queue.Add(ns.Name)
	}
}

// Run processes terminating namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return c.queue.Run(ctx, max(workers, 1), c.synced)
}

// sync empties and finalizes one terminating namespace; while content is
// left it looks again after recheck.
func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil || !slices.Contains(ns.Spec.Finalizers, v1.FinalizerKubernetes) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	o := c.deleteContent(ctx, name)
	conds := Conditions(ns.Status.Conditions, o, c.clock.Now())
	if !apiequality.Semantic.DeepEqual(conds, ns.Status.Conditions) || ns.Status.Phase != v1.NamespaceTerminating {
		n := ns.DeepCopy()
		n.Status.Conditions = conds
		n.Status.Phase = v1.NamespaceTerminating
		if updated, err := c.client.CoreV1().Namespaces().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err == nil {
			ns = updated
		} else if apierrors.IsNotFound(err) {
			return nil
		} else {
			return fmt.Errorf("namespace: update %s status: %w", name, err)
		}
	}
	if !o.Done() {
		c.queue.AddAfter(name, recheck)
		return nil
	}
	n := ns.DeepCopy()
	n.Spec.Finalizers = slices.DeleteFunc(n.Spec.Finalizers, func(f v1.FinalizerName) bool { return f == v1.FinalizerKubernetes })
	_, err = c.client.CoreV1().Namespaces().Finalize(ctx, n, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace: finalize %s: %w", name, err)
	}
	c.log.Info("namespace emptied and finalized", "namespace", name)
	return nil
}

// deleteContent deletes every namespaced object in ns and reports what is
// left.
func (c *Controller) deleteContent(ctx context.Context, ns string) Outcome {
	o := Outcome{Remaining: map[string]int{}, Finalizers: map[string]int{}}
	lists, err := c.disc.ServerPreferredNamespacedResources()
	if err != nil {
		o.DiscoveryErr = err
		if len(lists) == 0 {
			return o
		}
	}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			o.ParseFailures = append(o.ParseFailures, l.GroupVersion)
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			if err := c.deleteAll(ctx, gvr, ns, slices.Contains(r.Verbs, "deletecollection"), &o); err != nil {
				o.DeleteErrs = append(o.DeleteErrs, err)
			}
		}
	}
	return o
}

// deleteAll deletes every object of gvr in ns and counts what remains.
func (c *Controller) deleteAll(ctx context.Context, gvr schema.GroupVersionResource, ns string, collection bool, o *Outcome) error {
	api := c.dyn.Resource(gvr).Namespace(ns)
	if collection {
		err := api.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
			return fmt.Errorf("%s: %w", gvr.Resource, err)
		}
	}
	list, err := api.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", gvr.Resource, err)
	}
	var errs []error
	deleted := 0
	for i := range list.Items {
		item := &list.Items[i]
		if item.GetDeletionTimestamp() != nil {
			continue
		}
		uid := item.GetUID()
		err := api.Delete(ctx, item.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
		deleted++
	}
	if deleted > 0 {
		// Most objects go at once; count only what is really left.
		if list, err = api.List(ctx, metav1.ListOptions{}); err != nil {
			return fmt.Errorf("%s: %w", gvr.Resource, err)
		}
	}
	for i := range list.Items {
		o.Remaining[gvr.GroupResource().String()]++
		for _, f := range list.Items[i].GetFinalizers() {
			o.Finalizers[f]++
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", gvr.Resource, errors.Join(errs...))
	}
	return nil
}
