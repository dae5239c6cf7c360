package placement

import (
	v1 "k8s.io/api/core/v1"
)

// MaxNodeScore is the score of the best node for one criterion.
const MaxNodeScore = 100

// Weights of each criterion in the total, as in Kubernetes' default profile.
const (
	WeightLeastAllocated   = 1
	WeightBalanced         = 1
	WeightSelectorSpread   = 1
	WeightInterPodAffinity = 2
	WeightNodeAffinity     = 2
	WeightTopologySpread   = 2
	WeightTaintToleration  = 3
)

// LeastAllocatedScore favours nodes with more cpu and memory left after the
// pod lands (0-100, cpu and memory weighted equally). Requests are counted
// with defaults for containers that request nothing.
func LeastAllocatedScore(podNonZero Resource, ni *NodeInfo) int64 {
	cpu := leastAllocated(ni.NonZero.MilliCPU+podNonZero.MilliCPU, ni.Allocatable.MilliCPU)
	mem := leastAllocated(ni.NonZero.Memory+podNonZero.Memory, ni.Allocatable.Memory)
	return (cpu + mem) / 2
}

func leastAllocated(requested, capacity int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * MaxNodeScore / capacity
}

// BalancedAllocationScore favours nodes whose cpu and memory would be used in
// the same proportion after the pod lands (0-100).
func BalancedAllocationScore(podReq Resource, ni *NodeInfo) int64 {
	if ni.Allocatable.MilliCPU <= 0 || ni.Allocatable.Memory <= 0 {
		return 0
	}
	cpu := fraction(ni.Requested.MilliCPU+podReq.MilliCPU, ni.Allocatable.MilliCPU)
	mem := fraction(ni.Requested.Memory+podReq.Memory, ni.Allocatable.Memory)
	d := cpu - mem
	if d < 0 {
		d = -d
	}
	// With two resources the standard deviation is half their difference.
	return int64((1 - d/2) * MaxNodeScore)
}

func fraction(requested, capacity int64) float64 {
	f := float64(requested) / float64(capacity)
	if f > 1 {
		return 1
	}
	return f
}

// PreferNoScheduleCount counts the node's PreferNoSchedule taints the pod
// does not tolerate; fewer is better.
func PreferNoScheduleCount(tolerations []v1.Toleration, node *v1.Node) int64 {
	var n int64
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != v1.TaintEffectPreferNoSchedule {
			continue
		}
		if !tolerates(tolerations, t) {
			n++
		}
	}
	return n
}

// PreferredNodeAffinityScore sums the weights of the preferred node affinity
// terms the node matches.
func PreferredNodeAffinityScore(pod *v1.Pod, node *v1.Node) int64 {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil {
		return 0
	}
	var sum int64
	for i := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		p := &a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[i]
		if p.Weight != 0 && matchNodeSelectorTerm(&p.Preference, node) {
			sum += int64(p.Weight)
		}
	}
	return sum
}

// normalizeMax scales raw scores to 0-100 by the largest; reverse makes
// the smallest raw score the best.
func normalizeMax(raw []int64, reverse bool) {
	var hi int64
	for _, v := range raw {
		hi = max(hi, v)
	}
	for i, v := range raw {
		switch {
		case hi == 0 && reverse:
			raw[i] = MaxNodeScore
		case hi == 0:
			raw[i] = 0
		case reverse:
			raw[i] = MaxNodeScore - v*MaxNodeScore/hi
		default:
			raw[i] = v * MaxNodeScore / hi
		}
	}
}

// normalizeMinMax scales raw scores (which may be negative) so that the
// lowest is 0 and the highest 100; all equal gives 0.
func normalizeMinMax(raw []int64) {
	if len(raw) == 0 {
		return
	}
	lo, hi := raw[0], raw[0]
	for _, v := range raw {
		lo, hi = min(lo, v), max(hi, v)
	}
	for i, v := range raw {
		if hi == lo {
			raw[i] = 0
		} else {
			raw[i] = (v - lo) * MaxNodeScore / (hi - lo)
		}
	}
}
