// Package garbagecollector deletes objects whose owners are gone, following
// metadata.ownerReferences, in the three ways Kubernetes offers: background
// (the owner goes at once, its dependents after), foreground (the API server
// marks the owner with the foregroundDeletion finalizer; dependents go first,
// then the finalizer is removed and the owner goes) and orphan (the orphan
// finalizer; dependents lose their reference to the owner instead).
//
// It watches every resource the API server serves that can be listed,
// watched and deleted, through dynamic informers that keep only object
// metadata, and builds an ownership graph from them. Decide is the deciding
// part; Collector is the shell that resolves owners and writes.
package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// ErrDiscovery means the API server's resources could not be listed.
var ErrDiscovery = errors.New("garbagecollector: discovery failed")

// ignored are resources never collected: events are many, short-lived and
// owned by nobody.
var ignored = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:              true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// maxAbsent bounds the memory of owner uids known to be gone.
const maxAbsent = 10000

// Collector is the garbage collector.
type Collector struct {
	md    metadata.Interface
	disc  discovery.DiscoveryInterface
	log   *slog.Logger
	graph *graph
	queue *queue.Queue // object uids
	// watched is how many resources the current Run watches, for the log
	// once the graph is built.
	watched int

	mu     sync.Mutex
	kinds  map[schema.GroupKind]mapping // from discovery
	absent map[types.UID]bool           // owner uids looked up and not found; uids are never reused
}

type mapping struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

// New builds the collector. It discovers resources when it runs.
func New(md metadata.Interface, disc discovery.DiscoveryInterface, log *slog.Logger) *Collector {
	log = log.With("controller", "garbagecollector")
	c := &Collector{
		md:     md,
		disc:   disc,
		log:    log,
		graph:  newGraph(),
		kinds:  map[schema.GroupKind]mapping{},
		absent: map[types.UID]bool{},
	}
	c.queue = queue.New(c.sync, queue.Config{
		Name: "garbagecollector", Log: log, KeyAttr: "uid", Expected: apierrors.IsConflict,
		Ready: func() error {
			c.log.Info("graph built", "resources", c.watched)
			return nil
		},
	})
	return c
}

// discover returns the resources to watch and fills the kind mapping.
func (c *Collector) discover() ([]schema.GroupVersionResource, error) {
	lists, err := c.disc.ServerPreferredResources()
	if len(lists) == 0 && err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	if err != nil {
		c.log.Warn("partial discovery", "err", err)
	}
	var out []schema.GroupVersionResource
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			c.kinds[schema.GroupKind{Group: gv.Group, Kind: r.Kind}] = mapping{gvr: gvr, namespaced: r.Namespaced}
			verbs := r.Verbs
			if ignored[gvr.GroupResource()] || !slices.Contains(verbs, "list") || !slices.Contains(verbs, "watch") || !slices.Contains(verbs, "delete") {
				continue
			}
			out = append(out, gvr)
		}
	}
	return out, nil
}

// Run discovers resources, builds the graph from their informers and
// collects garbage with the given number of workers until ctx ends.
func (c *Collector) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown() // for the returns before the queue runs
	gvrs, err := c.discover()
	if err != nil {
		return err
	}
	factory := metadatainformer.NewSharedInformerFactory(c.md, 0)
	var synced []cache.InformerSynced
	for _, gvr := range gvrs {
		inf := factory.ForResource(gvr).Informer()
		if err := inf.SetTransform(metadataOnly); err != nil {
			return fmt.Errorf("garbagecollector: %s: %w", gvr, err)
		}
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.observe(gvr, obj) },
			UpdateFunc: func(_, obj any) { c.observe(gvr, obj) },
			DeleteFunc: func(obj any) { c.forget(obj) },
		})
		synced = append(synced, inf.HasSynced)
	}
	c.watched = len(gvrs)
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	return c.queue.Run(ctx, max(workers, 1), synced...)
}

// metadataOnly keeps only the metadata fields the collector reads: the
// metadata informers already leave out spec and status, and labels,
// annotations and managedFields are most of what remains.
func metadataOnly(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			OwnerReferences: m.OwnerReferences, Finalizers: m.Finalizers, DeletionTimestamp: m.DeletionTimestamp,
		},
	}, nil
}

func (c *Collector) observe(gvr schema.GroupVersionResource, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	n := &node{
		gvr: gvr, namespace: m.GetNamespace(), name: m.GetName(), uid: m.GetUID(), rv: m.GetResourceVersion(),
		owners: m.GetOwnerReferences(), deleting: m.GetDeletionTimestamp() != nil, finalizers: m.GetFinalizers(),
	}
	for _, u := range c.graph.upsert(n) {
		c.queue.Add(string(u))
	}
}

func (c *Collector) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, u := range c.graph.remove(m.GetUID()) {
		c.queue.Add(string(u))
	}
}

// sync collects the object with uid key, or lets it be.
func (c *Collector) sync(ctx context.Context, key string) error {
	n, it, ok := c.graph.get(types.UID(key))
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	states := map[types.UID]OwnerState{}
	if !it.Deleting {
		for _, o := range n.owners {
			s, err := c.ownerState(ctx, n.namespace, o)
			if err != nil {
				return err
			}
			states[o.UID] = s
		}
	}
	plan := Decide(it, states)
	return c.carryOut(ctx, n, plan)
}

// ownerState says what became of owner ref of an object in namespace ns:
// the graph answers for owners it has seen; others are looked up, since the
// graph may simply not have caught up with a new owner.
func (c *Collector) ownerState(ctx context.Context, ns string, ref metav1.OwnerReference) (OwnerState, error) {
	if o, ok := c.graph.owner(ref.UID); ok {
		if o.waitsForDependents() {
			return OwnerDeletingDependents, nil
		}
		return OwnerPresent, nil
	}
	c.mu.Lock()
	gone := c.absent[ref.UID]
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	m, known := c.kinds[schema.GroupKind{Group: gv.Group, Kind: ref.Kind}]
	c.mu.Unlock()
	if gone {
		return OwnerAbsent, nil
	}
	if !known {
		c.log.Debug("owner of unknown kind kept as present", "kind", ref.Kind, "apiVersion", ref.APIVersion)
		return OwnerPresent, nil
	}
	if !m.namespaced {
		ns = ""
	}
	obj, err := c.md.Resource(m.gvr).Namespace(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || (err == nil && obj.GetUID() != ref.UID):
		c.mu.Lock()
		if len(c.absent) >= maxAbsent {
			clear(c.absent)
		}
		c.absent[ref.UID] = true
		c.mu.Unlock()
		return OwnerAbsent, nil
	case err != nil:
		return OwnerPresent, fmt.Errorf("garbagecollector: look up owner %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
	case obj.GetDeletionTimestamp() != nil && slices.Contains(obj.GetFinalizers(), FinalizerForeground):
		return OwnerDeletingDependents, nil
	}
	return OwnerPresent, nil
}

func (c *Collector) carryOut(ctx context.Context, n node, plan Plan) error {
	if plan.DeleteDependents {
		for _, d := range c.graph.dependents(n.uid) {
			c.queue.Add(string(d.uid))
		}
	}
	if plan.OrphanDependents {
		for _, d := range c.graph.dependents(n.uid) {
			if err := c.dropOwners(ctx, d, []types.UID{n.uid}); err != nil {
				return err
			}
		}
	}
	if len(plan.RemoveOwners) > 0 {
		if err := c.dropOwners(ctx, n, plan.RemoveOwners); err != nil {
			return err
		}
	}
	if plan.Delete {
		uid, policy := n.uid, plan.Policy
		err := c.md.Resource(n.gvr).Namespace(n.namespace).Delete(ctx, n.name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy,
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("garbagecollector: delete %s %s/%s: %w", n.gvr.Resource, n.namespace, n.name, err)
		}
		if err == nil {
			c.log.Debug("deleted dependent", "resource", n.gvr.Resource, "namespace", n.namespace, "name", n.name, "policy", policy)
		}
	}
	if plan.RemoveFinalizer != "" {
		rest := slices.DeleteFunc(slices.Clone(n.finalizers), func(f string) bool { return f == plan.RemoveFinalizer })
		if err := c.patchMeta(ctx, n, map[string]any{"finalizers": nonNil(rest)}); err != nil {
			return err
		}
	}
	return nil
}

// dropOwners removes the references to uids from d's ownerReferences.
func (c *Collector) dropOwners(ctx context.Context, d node, uids []types.UID) error {
	keep := make([]metav1.OwnerReference, 0, len(d.owners))
	for _, o := range d.owners {
		if !slices.Contains(uids, o.UID) {
			keep = append(keep, o)
		}
	}
	if len(keep) == len(d.owners) {
		return nil
	}
	return c.patchMeta(ctx, d, map[string]any{"ownerReferences": keep})
}

// patchMeta merge-patches metadata fields of n, guarded by its uid and
// resourceVersion so a write based on a stale graph fails with a conflict
// and is retried once the graph has caught up.
func (c *Collector) patchMeta(ctx context.Context, n node, fields map[string]any) error {
	fields["uid"] = n.uid
	fields["resourceVersion"] = n.rv
	body, err := json.Marshal(map[string]any{"metadata": fields})
	if err != nil {
		return err
	}
	_, err = c.md.Resource(n.gvr).Namespace(n.namespace).Patch(ctx, n.name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("garbagecollector: patch %s %s/%s: %w", n.gvr.Resource, n.namespace, n.name, err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
