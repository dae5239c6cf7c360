package placement

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// node builds a Ready node with the given cpu, memory and pod capacity.
func node(name, cpu, mem string, pods int, lbls map[string]string) *v1.Node {
	l := map[string]string{LabelHostname: name}
	for k, v := range lbls {
		l[k] = v
	}
	alloc := v1.ResourceList{
		v1.ResourceCPU:              resource.MustParse(cpu),
		v1.ResourceMemory:           resource.MustParse(mem),
		v1.ResourcePods:             *resource.NewQuantity(int64(pods), resource.DecimalSI),
		v1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l},
		Status: v1.NodeStatus{
			Capacity:    alloc,
			Allocatable: alloc,
			Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
}

var podSeq int

// pod builds a pod in namespace default with one container requesting cpu
// and memory ("" for none).
func pod(name, cpu, mem string, lbls map[string]string) *v1.Pod {
	podSeq++
	req := v1.ResourceList{}
	if cpu != "" {
		req[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		req[v1.ResourceMemory] = resource.MustParse(mem)
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: lbls, UID: types.UID(fmt.Sprintf("uid-%s-%d", name, podSeq))},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: req}}},
		},
	}
}

// snapshot places each pod on the node named in its spec.nodeName.
func snapshot(nodes []*v1.Node, pods ...*v1.Pod) *Snapshot {
	var infos []*NodeInfo
	byName := map[string]*NodeInfo{}
	for _, n := range nodes {
		ni := NewNodeInfo(n)
		infos = append(infos, ni)
		byName[n.Name] = ni
	}
	for _, p := range pods {
		byName[p.Spec.NodeName].AddPod(NewPodInfo(p))
	}
	return NewSnapshot(infos)
}

func on(p *v1.Pod, nodeName string) *v1.Pod {
	p.Spec.NodeName = nodeName
	return p
}

func ptrTo[T any](v T) *T { return &v }
