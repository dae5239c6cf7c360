package rootcacert

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// Controller keeps kube-root-ca.crt in every active namespace.
type Controller struct {
	client     kubernetes.Interface
	log        *slog.Logger
	caPEM      []byte
	namespaces corelisters.NamespaceLister
	configMaps corelisters.ConfigMapLister
	synced     []cache.InformerSynced
	queue      *queue.Queue // namespace names
}

// New builds the controller on the shared informer factory; caPEM is the CA
// that signs the API server's serving certificate, PEM.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, caPEM []byte) *Controller {
	nsInf := factory.Core().V1().Namespaces()
	cmInf := factory.Core().V1().ConfigMaps()
	log = log.With("controller", "rootcacert")
	c := &Controller{
		client:     client,
		log:        log,
		caPEM:      bytes.Clone(caPEM),
		namespaces: nsInf.Lister(),
		configMaps: cmInf.Lister(),
		synced:     []cache.InformerSynced{nsInf.Informer().HasSynced, cmInf.Informer().HasSynced},
	}
	c.queue = queue.New(c.sync, queue.Config{Name: "rootcacert", Log: log, KeyAttr: "namespace", Expected: apierrors.IsConflict})
	nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.queue.AddObject(obj) },
		UpdateFunc: func(_, obj any) { c.queue.AddObject(obj) },
	})
	cmInf.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: isPublished,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.enqueueNamespaceOf(obj) },
			UpdateFunc: func(_, obj any) { c.enqueueNamespaceOf(obj) },
			DeleteFunc: func(obj any) { c.enqueueNamespaceOf(obj) },
		},
	})
	return c
}

// isPublished reports whether an informer object (or a deleted one's
// tombstone) is a kube-root-ca.crt ConfigMap.
func isPublished(obj any) bool {
	cm := configMap(obj)
	return cm != nil && cm.Name == ConfigMapName
}

func (c *Controller) enqueueNamespaceOf(obj any) {
	if cm := configMap(obj); cm != nil {
		c.queue.Add(cm.Namespace)
	}
}

func configMap(obj any) *v1.ConfigMap {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	cm, _ := obj.(*v1.ConfigMap)
	return cm
}

// Run processes namespaces with the given number of workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	return c.queue.Run(ctx, workers, c.synced...)
}

func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cur, err := c.configMaps.ConfigMaps(name).Get(ConfigMapName)
	if apierrors.IsNotFound(err) {
		cur = nil
	} else if err != nil {
		return err
	}
	want, create := Plan(ns, cur, c.caPEM)
	if want == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cms := c.client.CoreV1().ConfigMaps(name)
	if create {
		_, err = cms.Create(cctx, want, metav1.CreateOptions{})
	} else {
		_, err = cms.Update(cctx, want, metav1.UpdateOptions{})
	}
	switch {
	case err == nil:
		c.log.Debug("published root CA", "namespace", name, "created", create)
		return nil
	case create && apierrors.IsAlreadyExists(err):
		return nil // its add event brings the namespace back to us
	case !create && apierrors.IsNotFound(err):
		return nil // its delete event brings the namespace back to us
	case create && (apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) || apierrors.IsNotFound(err)):
		return nil // namespace is going away
	default:
		return fmt.Errorf("rootcacert: publish in %s: %w", name, err)
	}
}
