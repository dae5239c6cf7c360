// Package nodeipam gives every Node a pod CIDR (spec.podCIDR and
// spec.podCIDRs) carved out of the cluster CIDR, one fixed-size block per
// node, and takes it back when the node is deleted. The kubelet numbers its
// pods from that block and nodes route each other's blocks.
//
// Allocator is the deciding part; Controller is the informer/workqueue shell.
// The allocation map lives only in memory and is rebuilt from the nodes'
// spec.podCIDR at start, so a restart converges from the API server alone.
package nodeipam

import (
	"context"
	"encoding/json"
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
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// Defaults, as `skiff server` documents them.
const (
	DefaultClusterCIDR = "10.42.0.0/16"
	DefaultMaskSize    = 24
)

// Controller assigns pod CIDRs to nodes.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	nodes       corelisters.NodeLister
	synced      cache.InformerSynced
	queue       *queue.Queue
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	mu       sync.Mutex
	alloc    *Allocator
	assigned map[string]string // node name -> pod CIDR
}

// New builds the controller; clusterCIDR and maskSize default when empty/0.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, clusterCIDR string, maskSize int) (*Controller, error) {
	if clusterCIDR == "" {
		clusterCIDR = DefaultClusterCIDR
	}
	if maskSize == 0 {
		maskSize = DefaultMaskSize
	}
	alloc, err := NewAllocator(clusterCIDR, maskSize)
	if err != nil {
		return nil, err
	}
	inf := factory.Core().V1().Nodes()
	b := record.NewBroadcaster()
	log = log.With("controller", "nodeipam")
	c := &Controller{
		client:      client,
		log:         log,
		nodes:       inf.Lister(),
		synced:      inf.Informer().HasSynced,
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "cidrAllocator"}),
		alloc:       alloc,
		assigned:    map[string]string{},
	}
	c.queue = queue.New(c.sync, queue.Config{
		Name: "nodeipam", Log: log, KeyAttr: "node",
		RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
		Ready:       c.occupyAll,
	})
	inf.Informer().AddEventHandler(c.queue.Handler())
	return c, nil
}

// Run rebuilds the allocation from existing nodes, then assigns CIDRs until
// ctx ends. Allocation is serialised, so workers is ignored beyond one.
func (c *Controller) Run(ctx context.Context, _ int) error {
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	return c.queue.Run(ctx, 1, c.synced)
}

// occupyAll records the CIDRs the nodes in the synced cache already have,
// before any node gets a new one.
func (c *Controller) occupyAll() error {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		c.occupyLocked(n)
	}
	return nil
}

// occupyLocked records the CIDR node already has.
func (c *Controller) occupyLocked(n *v1.Node) {
	if n.Spec.PodCIDR == "" {
		return
	}
	if _, err := c.alloc.Occupy(n.Spec.PodCIDR); err != nil {
		c.log.Warn("node has a pod CIDR outside the cluster CIDR", "node", n.Name, "podCIDR", n.Spec.PodCIDR)
		return
	}
	c.assigned[n.Name] = n.Spec.PodCIDR
}

func (c *Controller) sync(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if apierrors.IsNotFound(err) {
		if cidr, ok := c.assigned[name]; ok {
			delete(c.assigned, name)
			if err := c.alloc.Release(cidr); err != nil {
				return nil
			}
			c.log.Debug("released pod CIDR", "node", name, "podCIDR", cidr)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if node.Spec.PodCIDR != "" {
		if c.assigned[name] != node.Spec.PodCIDR {
			c.occupyLocked(node)
		}
		return nil
	}
	cidr, ok := c.assigned[name] // allocated earlier, cache not caught up yet
	if !ok {
		p, err := c.alloc.Allocate()
		if errors.Is(err, ErrFull) {
			c.recorder.Eventf(node, v1.EventTypeNormal, "CIDRNotAvailable", "Node %s status is now: CIDRNotAvailable", name)
			return fmt.Errorf("nodeipam: node %s: %w", name, err)
		}
		if err != nil {
			return err
		}
		cidr = p.String()
		c.assigned[name] = cidr
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"podCIDR": cidr, "podCIDRs": []string{cidr}}})
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.client.CoreV1().Nodes().Patch(pctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		delete(c.assigned, name)
		_ = c.alloc.Release(cidr)
		return nil
	}
	if err != nil {
		c.recorder.Eventf(node, v1.EventTypeWarning, "CIDRAssignmentFailed", "Node %s status is now: CIDRAssignmentFailed", name)
		return fmt.Errorf("nodeipam: assign %s to %s: %w", cidr, name, err)
	}
	c.log.Debug("assigned pod CIDR", "node", name, "podCIDR", cidr)
	return nil
}
