package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-org/skiff/pkg/scheduler/placement"
)

func testNode(name string, cpu int64) *v1.Node {
	alloc := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(cpu, resource.DecimalSI),
		v1.ResourceMemory: resource.MustParse("8Gi"),
		v1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{placement.LabelHostname: name}},
		Status: v1.NodeStatus{Allocatable: alloc, Capacity: alloc,
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}}}
}

func testPod(name string, cpu int64, node string) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: *resource.NewMilliQuantity(cpu, resource.DecimalSI)}}}}},
	}
	return p
}

// nodeView is what a snapshot says about one node, for comparison.
type nodeView struct {
	Name      string
	Requested placement.Resource
	NonZero   placement.Resource
	Pods      []string
	Ports     int
}

func view(s *placement.Snapshot) []nodeView {
	var out []nodeView
	for _, ni := range s.Nodes {
		v := nodeView{Name: ni.Node.Name, Requested: ni.Requested, NonZero: ni.NonZero, Ports: len(ni.UsedPorts)}
		for _, p := range ni.Pods {
			v.Pods = append(v.Pods, p.Pod.Name)
		}
		sort.Strings(v.Pods)
		out = append(out, v)
	}
	return out
}

// model is the naive truth: the nodes, and every counted pod with its node.
type model struct {
	nodes map[string]*v1.Node
	pods  map[string]*v1.Pod // by name; spec.nodeName is where it counts
}

// naive builds a snapshot from scratch out of the model.
func (m *model) naive() *placement.Snapshot {
	var names []string
	for n := range m.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	byName := map[string]*placement.NodeInfo{}
	var infos []*placement.NodeInfo
	for _, n := range names {
		ni := placement.NewNodeInfo(m.nodes[n])
		byName[n] = ni
		infos = append(infos, ni)
	}
	for _, p := range m.pods {
		if ni := byName[p.Spec.NodeName]; ni != nil {
			ni.AddPod(placement.NewPodInfo(p))
		}
	}
	return placement.NewSnapshot(infos)
}

// TestCacheMatchesNaive drives the incremental cache and a naive model with
// the same random operations and checks that the incrementally updated
// snapshot always equals one rebuilt from scratch.
func TestCacheMatchesNaive(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		c := newCache(10 * time.Second)
		s := newSnapshotter()
		m := &model{nodes: map[string]*v1.Node{}, pods: map[string]*v1.Pod{}}
		type assumed struct {
			pod      *v1.Pod
			finished bool
			deadline time.Time
		}
		inflight := map[string]*assumed{}
		now := time.Unix(1000, 0)
		nodeName := func() string { return fmt.Sprintf("n%d", rng.IntN(8)) }
		podName := func() string { return fmt.Sprintf("p%d", rng.IntN(40)) }
		for step := 0; step < 400; step++ {
			var op string
			switch r := rng.IntN(100); {
			case r < 10:
				op = "setNode"
				n := testNode(nodeName(), int64(1000+rng.IntN(4)*1000))
				c.SetNode(n)
				m.nodes[n.Name] = n
			case r < 14:
				op = "removeNode"
				name := nodeName()
				c.RemoveNode(name)
				delete(m.nodes, name)
			case r < 34:
				op = "setPod"
				name := podName()
				if _, ok := inflight[name]; ok {
					// The informer confirms the assumed pod, maybe with a
					// different node if someone else bound it.
					p := inflight[name].pod.DeepCopy()
					if rng.IntN(4) == 0 {
						p.Spec.NodeName = nodeName()
					}
					delete(inflight, name)
					c.SetPod(p)
					m.pods[name] = p
					break
				}
				p := testPod(name, int64(rng.IntN(500)), nodeName())
				p.ResourceVersion = fmt.Sprint(step)
				c.SetPod(p)
				m.pods[name] = p
			case r < 44:
				op = "removePod"
				name := podName()
				c.RemovePod(types.UID("uid-" + name))
				delete(m.pods, name)
				delete(inflight, name)
			case r < 64:
				op = "assume"
				name := podName()
				p := testPod(name, int64(rng.IntN(500)), nodeName())
				err := c.Assume(placement.NewPodInfo(p), p.Spec.NodeName)
				_, known := m.pods[name]
				if known != errors.Is(err, ErrAlreadyPlaced) {
					t.Fatalf("seed %d step %d: Assume(%s) = %v, want already placed %v", seed, step, name, err, known)
				}
				if err == nil {
					m.pods[name] = p
					inflight[name] = &assumed{pod: p}
				}
			case r < 72:
				op = "forget"
				for name := range inflight {
					c.Forget(types.UID("uid-" + name))
					delete(inflight, name)
					delete(m.pods, name)
					break
				}
			case r < 82:
				op = "finishBinding"
				for name, a := range inflight {
					if !a.finished {
						c.FinishBinding(types.UID("uid-"+name), now)
						a.finished, a.deadline = true, now.Add(10*time.Second)
						break
					}
				}
			case r < 90:
				op = "expire"
				now = now.Add(time.Duration(rng.IntN(8)) * time.Second)
				n := c.Expire(now)
				want := 0
				for name, a := range inflight {
					if a.finished && now.After(a.deadline) {
						delete(inflight, name)
						delete(m.pods, name)
						want++
					}
				}
				if n != want {
					t.Fatalf("seed %d step %d: Expire = %d, want %d", seed, step, n, want)
				}
			default:
				op = "snapshot"
			}
			if op == "snapshot" || rng.IntN(3) == 0 {
				got, want := view(c.Update(s)), view(m.naive())
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("seed %d step %d after %s: snapshot\n%+v\nwant\n%+v", seed, step, op, got, want)
				}
			}
		}
	}
}

// TestAssumeNeverOvercommits checks that decisions taken one after another
// on snapshots that include the assumed pods never overcommit a node, even
// though no bind has been confirmed.
func TestAssumeNeverOvercommits(t *testing.T) {
	c := newCache(time.Minute)
	s := newSnapshotter()
	c.SetNode(testNode("a", 1000))
	c.SetNode(testNode("b", 1000))
	d := placement.NewDecider(1, 1)
	placed := 0
	for i := 0; i < 10; i++ {
		p := testPod(fmt.Sprintf("p%d", i), 300, "")
		node, err := d.Decide(placement.NewPodInfo(p), c.Update(s))
		if err != nil {
			continue
		}
		if err := c.Assume(placement.NewPodInfo(p), node); err != nil {
			t.Fatalf("Assume = %v", err)
		}
		placed++
	}
	if placed != 6 {
		t.Errorf("placed %d pods of 300m on two 1-cpu nodes, want 6", placed)
	}
	for _, ni := range c.Update(s).Nodes {
		if ni.Requested.MilliCPU > ni.Allocatable.MilliCPU {
			t.Errorf("node %s requested %dm > allocatable %dm", ni.Node.Name, ni.Requested.MilliCPU, ni.Allocatable.MilliCPU)
		}
	}
}
