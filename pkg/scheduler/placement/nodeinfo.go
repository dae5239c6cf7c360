package placement

import (
	"maps"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is a node with the pods placed on it and their summed requests.
type NodeInfo struct {
	Node        *v1.Node
	Allocatable Resource
	Requested   Resource // sum of the placed pods' Requests
	NonZero     Resource // sum of the placed pods' NonZero requests
	Pods        []*PodInfo
	// PodsWithAffinity and PodsWithRequiredAntiAffinity are the subsets of
	// Pods that have any affinity term and a required anti-affinity term, so
	// that symmetric checks skip nodes without them at no cost.
	PodsWithAffinity             []*PodInfo
	PodsWithRequiredAntiAffinity []*PodInfo
	UsedPorts                    []HostPort
	// owned counts the placed, not deleting pods of each controller, so that
	// spreading a ReplicaSet's pods reads one number per node instead of
	// walking every pod on it for every decision.
	owned map[types.UID]int32
}

// NewNodeInfo returns an empty NodeInfo for node (which may be nil while
// pods arrive before their node).
func NewNodeInfo(node *v1.Node) *NodeInfo {
	ni := &NodeInfo{}
	ni.SetNode(node)
	return ni
}

// SetNode replaces the node object, keeping the placed pods.
func (ni *NodeInfo) SetNode(node *v1.Node) {
	ni.Node = node
	if node != nil {
		ni.Allocatable = ResourceFromList(node.Status.Allocatable)
	} else {
		ni.Allocatable = Resource{}
	}
}

// Name is the node's name, "" when the node object is unknown.
func (ni *NodeInfo) Name() string {
	if ni.Node == nil {
		return ""
	}
	return ni.Node.Name
}

// AddPod places pi on the node.
func (ni *NodeInfo) AddPod(pi *PodInfo) {
	ni.Pods = append(ni.Pods, pi)
	ni.Requested.Add(pi.Requests)
	ni.NonZero.Add(pi.NonZero)
	ni.UsedPorts = append(ni.UsedPorts, pi.Ports...)
	if counted(pi) {
		if ni.owned == nil {
			ni.owned = map[types.UID]int32{}
		}
		ni.owned[pi.OwnerUID]++
	}
	if pi.HasAffinity() {
		ni.PodsWithAffinity = append(ni.PodsWithAffinity, pi)
	}
	if len(pi.RequiredAntiAffinity) > 0 {
		ni.PodsWithRequiredAntiAffinity = append(ni.PodsWithRequiredAntiAffinity, pi)
	}
}

// RemovePod removes the pod with pi's UID; it reports whether it was there.
func (ni *NodeInfo) RemovePod(pi *PodInfo) bool {
	uid := pi.Pod.UID
	idx := -1
	for i, p := range ni.Pods {
		if p.Pod.UID == uid {
			idx = i
			break
		}
	}
	if idx < 0 {
		return false
	}
	old := ni.Pods[idx]
	ni.Pods = removeAt(ni.Pods, idx)
	ni.PodsWithAffinity = removeUID(ni.PodsWithAffinity, uid)
	ni.PodsWithRequiredAntiAffinity = removeUID(ni.PodsWithRequiredAntiAffinity, uid)
	ni.Requested.Sub(old.Requests)
	ni.NonZero.Sub(old.NonZero)
	if counted(old) {
		if ni.owned[old.OwnerUID]--; ni.owned[old.OwnerUID] <= 0 {
			delete(ni.owned, old.OwnerUID)
		}
	}
	if len(old.Ports) > 0 {
		ni.UsedPorts = ni.UsedPorts[:0]
		for _, p := range ni.Pods {
			ni.UsedPorts = append(ni.UsedPorts, p.Ports...)
		}
	}
	return true
}

// counted reports whether pi counts in NodeInfo.owned.
func counted(pi *PodInfo) bool {
	return pi.OwnerUID != "" && pi.Pod.DeletionTimestamp == nil
}

// OwnedPods is the number of placed, not deleting pods whose controller has
// the given uid.
func (ni *NodeInfo) OwnedPods(owner types.UID) int64 { return int64(ni.owned[owner]) }

func removeAt(s []*PodInfo, i int) []*PodInfo {
	last := len(s) - 1
	s[i] = s[last]
	s[last] = nil
	return s[:last]
}

func removeUID(s []*PodInfo, uid types.UID) []*PodInfo {
	for i, p := range s {
		if p.Pod.UID == uid {
			return removeAt(s, i)
		}
	}
	return s
}

// Clone copies the NodeInfo so that the copy can be read while the original
// changes. PodInfos themselves are immutable and shared.
func (ni *NodeInfo) Clone() *NodeInfo {
	c := *ni
	c.Pods = append([]*PodInfo(nil), ni.Pods...)
	c.PodsWithAffinity = append([]*PodInfo(nil), ni.PodsWithAffinity...)
	c.PodsWithRequiredAntiAffinity = append([]*PodInfo(nil), ni.PodsWithRequiredAntiAffinity...)
	c.UsedPorts = append([]HostPort(nil), ni.UsedPorts...)
	c.owned = maps.Clone(ni.owned)
	return &c
}

// Snapshot is the cluster as one scheduling decision sees it.
type Snapshot struct {
	// Nodes are the nodes in a stable order (by name).
	Nodes []*NodeInfo
	// NamespaceLabels are the labels of each namespace, for affinity terms
	// with a namespaceSelector.
	NamespaceLabels map[string]labels.Set
	// Services are the selectors of the services in each namespace, for
	// spreading the pods a service selects.
	Services map[string][]labels.Selector
	// PodsWithAffinity counts placed pods that have affinity terms, so that
	// inter-pod checks are skipped entirely when there are none.
	PodsWithAffinity             int
	PodsWithRequiredAntiAffinity int
}

// NewSnapshot builds a Snapshot from nodes (in the given order) and counts
// the affinity pods on them.
func NewSnapshot(nodes []*NodeInfo) *Snapshot {
	s := &Snapshot{Nodes: nodes}
	s.Recount()
	return s
}

// Recount refreshes the affinity pod counters from the nodes.
func (s *Snapshot) Recount() {
	s.PodsWithAffinity, s.PodsWithRequiredAntiAffinity = 0, 0
	for _, n := range s.Nodes {
		s.PodsWithAffinity += len(n.PodsWithAffinity)
		s.PodsWithRequiredAntiAffinity += len(n.PodsWithRequiredAntiAffinity)
	}
}
