package garbagecollector

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// node is one object the collector has seen.
type node struct {
	gvr        schema.GroupVersionResource
	namespace  string
	name       string
	uid        types.UID
	rv         string
	owners     []metav1.OwnerReference
	deleting   bool
	finalizers []string
}

func (n *node) waitsForDependents() bool {
	return n.deleting && slices.Contains(n.finalizers, FinalizerForeground)
}

// graph is the ownership graph: every object by uid, and every owner uid
// (seen or not) with the uids of the objects that name it.
type graph struct {
	mu       sync.Mutex
	nodes    map[types.UID]*node
	children map[types.UID]map[types.UID]struct{}
}

func newGraph() *graph {
	return &graph{nodes: map[types.UID]*node{}, children: map[types.UID]map[types.UID]struct{}{}}
}

// upsert records n and returns the uids that need a look: n itself when it
// has owners or is being deleted, and owners waiting for their dependents
// whose set of dependents may have changed.
func (g *graph) upsert(n *node) []types.UID {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[n.uid]
	g.nodes[n.uid] = n
	var touched []types.UID
	if old != nil {
		for _, o := range old.owners {
			if !hasOwner(n.owners, o.UID) {
				g.unlinkLocked(o.UID, n.uid)
				touched = append(touched, o.UID)
			}
		}
	}
	for _, o := range n.owners {
		set := g.children[o.UID]
		if set == nil {
			set = map[types.UID]struct{}{}
			g.children[o.UID] = set
		}
		set[n.uid] = struct{}{}
		touched = append(touched, o.UID)
	}
	out := []types.UID{}
	if len(n.owners) > 0 || n.deleting {
		out = append(out, n.uid)
	}
	for _, u := range touched {
		if o := g.nodes[u]; o != nil && o.waitsForDependents() {
			out = append(out, u)
		}
	}
	return out
}

// remove forgets the object and returns the uids that need a look: its
// dependents (their owner is gone) and its owners waiting on it.
func (g *graph) remove(uid types.UID) []types.UID {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n == nil {
		return nil
	}
	delete(g.nodes, uid)
	var out []types.UID
	for c := range g.children[uid] {
		out = append(out, c)
	}
	for _, o := range n.owners {
		g.unlinkLocked(o.UID, uid)
		if on := g.nodes[o.UID]; on != nil && on.deleting {
			out = append(out, o.UID)
		}
	}
	return out
}

func (g *graph) unlinkLocked(owner, child types.UID) {
	if set := g.children[owner]; set != nil {
		delete(set, child)
		if len(set) == 0 {
			delete(g.children, owner)
		}
	}
}

// get returns a copy of the object's node and what Decide needs of it.
func (g *graph) get(uid types.UID) (node, Item, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n == nil {
		return node{}, Item{}, false
	}
	it := Item{Owners: n.owners, Deleting: n.deleting, Finalizers: n.finalizers}
	for c := range g.children[uid] {
		d := g.nodes[c]
		if d == nil {
			continue
		}
		it.Dependents++
		for _, o := range d.owners {
			if o.UID == uid && o.BlockOwnerDeletion != nil && *o.BlockOwnerDeletion {
				it.BlockingDependents++
			}
		}
	}
	return *n, it, true
}

// owner returns the node of an owner uid, if seen.
func (g *graph) owner(uid types.UID) (node, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n == nil {
		return node{}, false
	}
	return *n, true
}

// dependents returns copies of the nodes that name uid as an owner.
func (g *graph) dependents(uid types.UID) []node {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []node
	for c := range g.children[uid] {
		if d := g.nodes[c]; d != nil {
			out = append(out, *d)
		}
	}
	return out
}

func hasOwner(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}
