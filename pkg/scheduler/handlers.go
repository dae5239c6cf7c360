package scheduler

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	toolscache "k8s.io/client-go/tools/cache"
)

// responsible says whether this scheduler should place the pod.
func responsible(pod *v1.Pod) bool {
	return pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == SchedulerName
}

func terminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}

func hasRequiredPodAffinity(pod *v1.Pod) bool {
	a := pod.Spec.Affinity
	return a != nil && a.PodAffinity != nil && len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
}

func podFrom(obj any) *v1.Pod {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, _ := obj.(*v1.Pod)
	return p
}

func nodeFrom(obj any) *v1.Node {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	n, _ := obj.(*v1.Node)
	return n
}

func (s *scheduler) onPodAdd(obj any) {
	pod := podFrom(obj)
	if pod == nil {
		return
	}
	if pod.Spec.NodeName != "" {
		s.cache.SetPod(pod)
		s.queue.Delete(pod)
		// A new pod may satisfy a waiting pod's affinity.
		s.queue.MoveUnschedulable(hasRequiredPodAffinity)
		return
	}
	if responsible(pod) && !terminal(pod) {
		s.queue.Add(pod)
	}
}

func (s *scheduler) onPodUpdate(oldObj, newObj any) {
	old, pod := podFrom(oldObj), podFrom(newObj)
	if pod == nil || old == nil {
		return
	}
	if pod.Spec.NodeName != "" {
		s.cache.SetPod(pod)
		if old.Spec.NodeName == "" {
			s.queue.Delete(pod)
		}
		if terminal(pod) && !terminal(old) {
			s.queue.MoveUnschedulable(nil)
		}
		return
	}
	if responsible(pod) && !terminal(pod) {
		s.queue.Add(pod)
	} else {
		s.queue.Delete(pod)
	}
}

func (s *scheduler) onPodDelete(obj any) {
	pod := podFrom(obj)
	if pod == nil {
		return
	}
	if pod.Spec.NodeName != "" || s.cache.IsPlaced(pod.UID) {
		s.cache.RemovePod(pod.UID)
		s.queue.MoveUnschedulable(nil)
	}
	s.queue.Delete(pod)
}

func (s *scheduler) onNodeAdd(obj any) {
	if n := nodeFrom(obj); n != nil {
		s.cache.SetNode(n)
		s.queue.MoveUnschedulable(nil)
	}
}

func (s *scheduler) onNodeUpdate(oldObj, newObj any) {
	old, n := nodeFrom(oldObj), nodeFrom(newObj)
	if n == nil || old == nil {
		return
	}
	s.cache.SetNode(n)
	if nodeChangeMatters(old, n) {
		s.queue.MoveUnschedulable(nil)
	}
}

func (s *scheduler) onNodeDelete(obj any) {
	if n := nodeFrom(obj); n != nil {
		s.cache.RemoveNode(n.Name)
	}
}

// nodeChangeMatters says whether a node update could make a waiting pod
// fit; heartbeats alone do not, and must not wake every pending pod.
func nodeChangeMatters(old, n *v1.Node) bool {
	if old.Spec.Unschedulable != n.Spec.Unschedulable ||
		!mapsEqual(old.Labels, n.Labels) ||
		!equality.Semantic.DeepEqual(old.Spec.Taints, n.Spec.Taints) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, n.Status.Allocatable) {
		return true
	}
	return readyStatus(old) != readyStatus(n)
}

func readyStatus(n *v1.Node) v1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status
		}
	}
	return ""
}
