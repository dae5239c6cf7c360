// Package nodelifecycle watches nodes' heartbeats (their Leases in
// kube-node-lease and their status) and acts when a kubelet goes quiet: the
// node turns Ready=Unknown, is tainted node.kubernetes.io/unreachable, its
// pods are marked not ready and, through taint-based eviction, deleted once
// their tolerationSeconds run out, so that their controllers recreate them
// elsewhere. A node that comes back is untainted.
//
// Assess and EvictAt are the deciding part, plain functions with now passed
// in; Controller is the shell, and reads time only from an injected clock.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// LeaseNamespace holds the kubelets' heartbeat Leases.
const LeaseNamespace = "kube-node-lease"

const nodeNameIndex = "skiff.nodelifecycle/nodeName"

// Controller monitors node health and evicts pods from tainted nodes.
type Controller struct {
	client      kubernetes.Interface
	log         *slog.Logger
	clock       clock.WithTicker
	grace       time.Duration
	nodes       corelisters.NodeLister
	leases      coordlisters.LeaseLister
	pods        cache.Indexer
	synced      []cache.InformerSynced
	nodeQueue   *queue.Queue // node names
	podQueue    *queue.Queue // pod keys due for an eviction check
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	mu    sync.Mutex
	heard map[string]heartbeat // node name -> last heartbeat observed
}

// heartbeat is the last sign of life seen from a kubelet, and when this
// controller saw it change. Using our own clock for the latter makes the
// grace period immune to skew between the node's clock and ours.
type heartbeat struct {
	mark string
	at   time.Time
}

// New builds the controller. grace is --node-monitor-grace-period (default
// 40 s when zero); clk is the clock to read, nil for the real one.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, grace time.Duration, clk clock.WithTicker) *Controller {
	if grace <= 0 {
		grace = DefaultGracePeriod
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	nodeInf := factory.Core().V1().Nodes()
	leaseInf := factory.Coordination().V1().Leases()
	podInf := factory.Core().V1().Pods()
	_ = podInf.Informer().AddIndexers(cache.Indexers{nodeNameIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*v1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}})
	b := record.NewBroadcaster()
	log = log.With("controller", "nodelifecycle")
	c := &Controller{
		client:      client,
		log:         log,
		clock:       clk,
		grace:       grace,
		nodes:       nodeInf.Lister(),
		leases:      leaseInf.Lister(),
		pods:        podInf.Informer().GetIndexer(),
		synced:      []cache.InformerSynced{nodeInf.Informer().HasSynced, leaseInf.Informer().HasSynced, podInf.Informer().HasSynced},
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "node-controller"}),
		heard:       map[string]heartbeat{},
	}
	c.nodeQueue = queue.New(c.syncNode, queue.Config{
		Name: "nodelifecycle", Log: log, KeyAttr: "node", Clock: clk, Expected: apierrors.IsConflict,
	})
	c.podQueue = queue.New(c.syncPod, queue.Config{Name: "nodelifecycle-eviction", Log: log, KeyAttr: "pod", Clock: clk})
	nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueNode,
		UpdateFunc: func(_, obj any) { c.enqueueNode(obj) },
		DeleteFunc: c.enqueueNode,
	})
	leaseInf.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			l, ok := obj.(*coordv1.Lease)
			return ok && l.Namespace == LeaseNamespace
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueueNode,
			UpdateFunc: func(_, obj any) { c.enqueueNode(obj) },
		},
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePodIfTainted,
		UpdateFunc: func(_, obj any) { c.enqueuePodIfTainted(obj) },
	})
	return c
}

// enqueueNode queues the node a Node or Lease (named after its node) names.
func (c *Controller) enqueueNode(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if m, err := metaName(obj); err == nil {
		c.nodeQueue.Add(m)
	}
}

func metaName(obj any) (string, error) {
	switch o := obj.(type) {
	case *v1.Node:
		return o.Name, nil
	case *coordv1.Lease:
		return o.Name, nil
	}
	return "", fmt.Errorf("nodelifecycle: unexpected %T", obj)
}

// enqueuePodIfTainted queues an eviction check for a pod that lands on (or
// changes its tolerations on) a node with NoExecute taints.
func (c *Controller) enqueuePodIfTainted(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		return
	}
	node, err := c.nodes.Get(pod.Spec.NodeName)
	if err != nil || !hasNoExecute(node.Spec.Taints) {
		return
	}
	if key, err := cache.MetaNamespaceKeyFunc(pod); err == nil {
		c.podQueue.Add(key)
	}
}

func hasNoExecute(taints []v1.Taint) bool {
	for _, t := range taints {
		if t.Effect == v1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

// Run monitors nodes and evicts pods with the given number of workers per
// queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	workers = max(workers, 1)
	var podErr error
	var wg sync.WaitGroup
	wg.Go(func() { podErr = c.podQueue.Run(ctx, workers, c.synced...) })
	nodeErr := c.nodeQueue.Run(ctx, workers, c.synced...)
	wg.Wait()
	return errors.Join(nodeErr, podErr)
}

// lastHeard records the node's current heartbeat mark (its Lease renewTime
// and its Ready heartbeat) and returns when we first saw that mark.
func (c *Controller) lastHeard(node *v1.Node, now time.Time) time.Time {
	mark := ""
	if l, err := c.leases.Leases(LeaseNamespace).Get(node.Name); err == nil && l.Spec.RenewTime != nil {
		mark = l.Spec.RenewTime.UTC().String()
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == v1.NodeReady {
			mark += "|" + cond.LastHeartbeatTime.UTC().String() + "|" + string(cond.Status)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.heard[node.Name]
	if !ok || h.mark != mark {
		h = heartbeat{mark: mark, at: now}
		c.heard[node.Name] = h
	}
	return h.at
}

func (c *Controller) syncNode(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.heard, name)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	now := c.clock.Now()
	d := Assess(node, c.lastHeard(node, now), now, c.grace)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	if d.Conditions != nil {
		n := node.DeepCopy()
		n.Status.Conditions = d.Conditions
		updated, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("nodelifecycle: mark %s unknown: %w", name, err)
		}
		node = updated
		c.log.Info("node stopped posting status", "node", name)
		c.recorder.Eventf(node, v1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", name)
	}
	if d.Taints != nil {
		n := node.DeepCopy()
		n.Spec.Taints = d.Taints
		if _, err := c.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("nodelifecycle: taint %s: %w", name, err)
		}
		c.log.Info("node taints changed", "node", name, "ready", d.Ready)
	}
	objs, err := c.pods.ByIndex(nodeNameIndex, name)
	if err != nil {
		return err
	}
	for _, o := range objs {
		pod := o.(*v1.Pod)
		if d.Ready != v1.ConditionTrue {
			if err := c.markNotReady(ctx, pod, now); err != nil {
				return err
			}
		}
		if hasNoExecute(d.Taints) || (d.Taints == nil && hasNoExecute(node.Spec.Taints)) {
			if key, err := cache.MetaNamespaceKeyFunc(pod); err == nil {
				c.podQueue.Add(key)
			}
		}
	}
	if !d.Recheck.IsZero() {
		c.nodeQueue.AddAfter(name, d.Recheck.Sub(now)+10*time.Millisecond)
	}
	return nil
}

func (c *Controller) markNotReady(ctx context.Context, pod *v1.Pod, now time.Time) error {
	p := NotReady(pod, now)
	if p == nil {
		return nil
	}
	_, err := c.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("nodelifecycle: mark pod %s/%s not ready: %w", pod.Namespace, pod.Name, err)
	}
	c.recorder.Eventf(pod, v1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	return nil
}

// syncPod deletes the pod when its tolerations of its node's NoExecute taints
// have run out, or checks again when they will.
func (c *Controller) syncPod(ctx context.Context, key string) error {
	obj, exists, err := c.pods.GetByKey(key)
	if err != nil || !exists {
		return err
	}
	pod := obj.(*v1.Pod)
	if pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" {
		return nil
	}
	node, err := c.nodes.Get(pod.Spec.NodeName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	now := c.clock.Now()
	at, evict := EvictAt(pod, node.Spec.Taints, now)
	if !evict {
		return nil
	}
	if at.After(now) {
		c.podQueue.AddAfter(key, at.Sub(now))
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	uid := pod.UID
	err = c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nodelifecycle: evict %s: %w", key, err)
	}
	c.log.Info("evicted pod from tainted node", "pod", key, "node", node.Name)
	c.recorder.Eventf(pod, v1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s", key)
	return nil
}
