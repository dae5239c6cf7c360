package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-org/skiff/pkg/scheduler/placement"
)

// ErrAlreadyPlaced is returned when assuming a pod the cache already holds.
var ErrAlreadyPlaced = errors.New("scheduler: pod already placed")

// cachedPod is a pod the cache counts on a node.
type cachedPod struct {
	info *placement.PodInfo
	node string
	// assumed is true from the decision until the informer shows the pod
	// bound; bindingDone starts the expiry clock.
	assumed     bool
	bindingDone bool
	deadline    time.Time
}

// cache is the scheduler's view of nodes and of the pods placed on them,
// including pods it has decided about but the API server has not yet
// confirmed. Concurrent decisions read snapshots of it; a pod counts on its
// node from the moment it is assumed, so no two decisions overcommit a node.
type cache struct {
	mu    sync.Mutex
	ttl   time.Duration
	nodes map[string]*placement.NodeInfo // a NodeInfo with nil Node holds pods whose node is unknown yet
	pods  map[types.UID]*cachedPod
	// dirty names nodes changed since the last snapshot update.
	dirty map[string]struct{}
}

func newCache(ttl time.Duration) *cache {
	return &cache{
		ttl:   ttl,
		nodes: map[string]*placement.NodeInfo{},
		pods:  map[types.UID]*cachedPod{},
		dirty: map[string]struct{}{},
	}
}

func (c *cache) nodeLocked(name string) *placement.NodeInfo {
	ni := c.nodes[name]
	if ni == nil {
		ni = placement.NewNodeInfo(nil)
		c.nodes[name] = ni
	}
	c.dirty[name] = struct{}{}
	return ni
}

// dropIfEmptyLocked forgets a placeholder that no longer holds pods.
func (c *cache) dropIfEmptyLocked(name string) {
	if ni := c.nodes[name]; ni != nil && ni.Node == nil && len(ni.Pods) == 0 {
		delete(c.nodes, name)
	}
}

// SetNode adds or updates a node.
func (c *cache) SetNode(node *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeLocked(node.Name).SetNode(node)
}

// RemoveNode removes a node; pods still bound to it stay counted on a
// placeholder until they go.
func (c *cache) RemoveNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ni := c.nodes[name]; ni != nil {
		ni.SetNode(nil)
		c.dirty[name] = struct{}{}
		c.dropIfEmptyLocked(name)
	}
}

func (c *cache) addLocked(pi *placement.PodInfo, node string) *cachedPod {
	cp := &cachedPod{info: pi, node: node}
	c.pods[pi.Pod.UID] = cp
	c.nodeLocked(node).AddPod(pi)
	return cp
}

func (c *cache) removeLocked(cp *cachedPod) {
	delete(c.pods, cp.info.Pod.UID)
	if ni := c.nodes[cp.node]; ni != nil {
		ni.RemovePod(cp.info)
		c.dirty[cp.node] = struct{}{}
		c.dropIfEmptyLocked(cp.node)
	}
}

// Assume counts pi on node before the bind is written.
func (c *cache) Assume(pi *placement.PodInfo, node string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pods[pi.Pod.UID]; ok {
		return fmt.Errorf("%w: %s/%s", ErrAlreadyPlaced, pi.Pod.Namespace, pi.Pod.Name)
	}
	c.addLocked(pi, node).assumed = true
	return nil
}

// FinishBinding starts the expiry clock of an assumed pod whose bind was
// written; if the informer never confirms it, Expire drops it.
func (c *cache) FinishBinding(uid types.UID, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp, ok := c.pods[uid]; ok && cp.assumed {
		cp.bindingDone = true
		cp.deadline = now.Add(c.ttl)
	}
}

// Forget drops an assumed pod whose bind failed.
func (c *cache) Forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp, ok := c.pods[uid]; ok && cp.assumed {
		c.removeLocked(cp)
	}
}

// IsPlaced says whether the cache counts the pod on some node.
func (c *cache) IsPlaced(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pods[uid]
	return ok
}

// SetPod records a pod the informer shows bound to a node (confirming it if
// it was assumed). Pods that finished are removed: they hold no resources.
func (c *cache) SetPod(pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		if cp, ok := c.pods[pod.UID]; ok {
			c.removeLocked(cp)
		}
		return
	}
	if cp, ok := c.pods[pod.UID]; ok {
		if !cp.assumed && cp.node == pod.Spec.NodeName && cp.info.Pod.ResourceVersion == pod.ResourceVersion {
			return
		}
		c.removeLocked(cp)
	}
	c.addLocked(placement.NewPodInfo(pod), pod.Spec.NodeName)
}

// RemovePod removes a pod, assumed or not.
func (c *cache) RemovePod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp, ok := c.pods[uid]; ok {
		c.removeLocked(cp)
	}
}

// Expire drops assumed pods whose bind finished more than ttl before now
// without the informer confirming them; it returns how many it dropped.
func (c *cache) Expire(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, cp := range c.pods {
		if cp.assumed && cp.bindingDone && now.After(cp.deadline) {
			c.removeLocked(cp)
			n++
		}
	}
	return n
}

// snapshotter keeps a Snapshot up to date by copying only the nodes that
// changed since the previous update.
type snapshotter struct {
	snap   *placement.Snapshot
	byName map[string]int // index in snap.Nodes
}

func newSnapshotter() *snapshotter {
	return &snapshotter{snap: placement.NewSnapshot(nil), byName: map[string]int{}}
}

// Update refreshes s from the cache and returns the snapshot. The returned
// snapshot stays valid until the next Update.
func (c *cache) Update(s *snapshotter) *placement.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.dirty) == 0 {
		return s.snap
	}
	rebuild := false
	for name := range c.dirty {
		ni := c.nodes[name]
		idx, had := s.byName[name]
		switch {
		case ni != nil && ni.Node != nil && had:
			s.snap.Nodes[idx] = ni.Clone()
		case ni != nil && ni.Node != nil:
			s.snap.Nodes = append(s.snap.Nodes, ni.Clone())
			rebuild = true
		case had:
			s.snap.Nodes[idx] = nil
			rebuild = true
		}
	}
	clear(c.dirty)
	if rebuild {
		nodes := s.snap.Nodes[:0]
		for _, ni := range s.snap.Nodes {
			if ni != nil {
				nodes = append(nodes, ni)
			}
		}
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node.Name < nodes[j].Node.Name })
		s.snap.Nodes = nodes
		clear(s.byName)
		for i, ni := range nodes {
			s.byName[ni.Node.Name] = i
		}
	}
	s.snap.Recount()
	return s.snap
}
