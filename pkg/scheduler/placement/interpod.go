package placement

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// topoPair is one topology domain: a node label key and its value.
type topoPair struct{ key, value string }

// interPodState is what the inter-pod affinity filter precomputes once per
// pod: how many matching pods each topology domain holds.
type interPodState struct {
	// affinity[i] counts, per value of RequiredAffinity[i].TopologyKey, the
	// placed pods that match all of the incoming pod's affinity terms.
	affinity []map[string]int64
	// anyAffinityMatch is false when no placed pod matches the affinity
	// terms; selfMatch says the incoming pod matches them itself, which lets
	// the first pod of a group land anywhere.
	anyAffinityMatch bool
	selfMatch        bool
	// anti[i] counts placed pods matching RequiredAntiAffinity[i] per value.
	anti []map[string]int64
	// existingAnti holds domains where a placed pod's required anti-affinity
	// selects the incoming pod.
	existingAnti map[topoPair]int64
}

func nsLabels(s *Snapshot, ns string) labels.Set {
	if s.NamespaceLabels == nil {
		return nil
	}
	return s.NamespaceLabels[ns]
}

// newInterPodState returns nil when nothing about pod affinity applies.
func newInterPodState(pi *PodInfo, s *Snapshot) *interPodState {
	hasOwn := len(pi.RequiredAffinity)+len(pi.RequiredAntiAffinity) > 0
	if !hasOwn && s.PodsWithRequiredAntiAffinity == 0 {
		return nil
	}
	st := &interPodState{}
	pod := pi.Pod
	if s.PodsWithRequiredAntiAffinity > 0 {
		podNS := nsLabels(s, pod.Namespace)
		for _, ni := range s.Nodes {
			if ni.Node == nil {
				continue
			}
			for _, ep := range ni.PodsWithRequiredAntiAffinity {
				for i := range ep.RequiredAntiAffinity {
					t := &ep.RequiredAntiAffinity[i]
					v, ok := ni.Node.Labels[t.TopologyKey]
					if ok && t.Matches(pod, podNS) {
						if st.existingAnti == nil {
							st.existingAnti = map[topoPair]int64{}
						}
						st.existingAnti[topoPair{t.TopologyKey, v}]++
					}
				}
			}
		}
	}
	if !hasOwn {
		return st
	}
	st.affinity = make([]map[string]int64, len(pi.RequiredAffinity))
	for i := range st.affinity {
		st.affinity[i] = map[string]int64{}
	}
	st.anti = make([]map[string]int64, len(pi.RequiredAntiAffinity))
	for i := range st.anti {
		st.anti[i] = map[string]int64{}
	}
	st.selfMatch = matchesAll(pi.RequiredAffinity, pod, nsLabels(s, pod.Namespace))
	for _, ni := range s.Nodes {
		if ni.Node == nil {
			continue
		}
		nl := ni.Node.Labels
		for _, ep := range ni.Pods {
			epNS := nsLabels(s, ep.Pod.Namespace)
			if len(pi.RequiredAffinity) > 0 && matchesAll(pi.RequiredAffinity, ep.Pod, epNS) {
				st.anyAffinityMatch = true
				for i := range pi.RequiredAffinity {
					if v, ok := nl[pi.RequiredAffinity[i].TopologyKey]; ok {
						st.affinity[i][v]++
					}
				}
			}
			for i := range pi.RequiredAntiAffinity {
				t := &pi.RequiredAntiAffinity[i]
				if v, ok := nl[t.TopologyKey]; ok && t.Matches(ep.Pod, epNS) {
					st.anti[i][v]++
				}
			}
		}
	}
	return st
}

func matchesAll(terms []AffinityTerm, pod *v1.Pod, ns labels.Set) bool {
	for i := range terms {
		if !terms[i].Matches(pod, ns) {
			return false
		}
	}
	return true
}

// filter checks the node against the precomputed state.
func (st *interPodState) filter(pi *PodInfo, node *v1.Node) (Code, string) {
	for p := range st.existingAnti {
		if v, ok := node.Labels[p.key]; ok && v == p.value {
			return Unschedulable, ReasonExistingAntiAffinity
		}
	}
	for i := range pi.RequiredAntiAffinity {
		if v, ok := node.Labels[pi.RequiredAntiAffinity[i].TopologyKey]; ok && st.anti[i][v] > 0 {
			return Unschedulable, ReasonPodAntiAffinity
		}
	}
	if len(pi.RequiredAffinity) > 0 {
		if !st.anyAffinityMatch && st.selfMatch {
			return Fit, ""
		}
		for i := range pi.RequiredAffinity {
			v, ok := node.Labels[pi.RequiredAffinity[i].TopologyKey]
			if !ok || st.affinity[i][v] == 0 {
				return Unresolvable, ReasonPodAffinity
			}
		}
	}
	return Fit, ""
}

// hardAffinityWeight is the weight an existing pod's required affinity term
// that selects the incoming pod adds to the score (Kubernetes' default 1).
const hardAffinityWeight = 1

// interPodScores sums, per topology domain, the weights of preferred terms
// between the incoming pod and placed pods, in both directions. nil when
// nothing applies.
func interPodScores(pi *PodInfo, s *Snapshot) map[string]map[string]int64 {
	hasOwn := len(pi.PreferredAffinity)+len(pi.PreferredAntiAffinity) > 0
	if !hasOwn && s.PodsWithAffinity == 0 {
		return nil
	}
	scores := map[string]map[string]int64{}
	add := func(key, value string, w int64) {
		m := scores[key]
		if m == nil {
			m = map[string]int64{}
			scores[key] = m
		}
		m[value] += w
	}
	podNS := nsLabels(s, pi.Pod.Namespace)
	for _, ni := range s.Nodes {
		if ni.Node == nil {
			continue
		}
		nl := ni.Node.Labels
		pods := ni.PodsWithAffinity
		if hasOwn {
			pods = ni.Pods
		}
		for _, ep := range pods {
			epNS := nsLabels(s, ep.Pod.Namespace)
			for _, t := range pi.PreferredAffinity {
				if v, ok := nl[t.TopologyKey]; ok && t.Matches(ep.Pod, epNS) {
					add(t.TopologyKey, v, int64(t.Weight))
				}
			}
			for _, t := range pi.PreferredAntiAffinity {
				if v, ok := nl[t.TopologyKey]; ok && t.Matches(ep.Pod, epNS) {
					add(t.TopologyKey, v, -int64(t.Weight))
				}
			}
			for _, t := range ep.PreferredAffinity {
				if v, ok := nl[t.TopologyKey]; ok && t.Matches(pi.Pod, podNS) {
					add(t.TopologyKey, v, int64(t.Weight))
				}
			}
			for _, t := range ep.PreferredAntiAffinity {
				if v, ok := nl[t.TopologyKey]; ok && t.Matches(pi.Pod, podNS) {
					add(t.TopologyKey, v, -int64(t.Weight))
				}
			}
			for _, t := range ep.RequiredAffinity {
				if v, ok := nl[t.TopologyKey]; ok && t.Matches(pi.Pod, podNS) {
					add(t.TopologyKey, v, hardAffinityWeight)
				}
			}
		}
	}
	if len(scores) == 0 {
		return nil
	}
	return scores
}

func interPodNodeScore(scores map[string]map[string]int64, node *v1.Node) int64 {
	var sum int64
	for key, m := range scores {
		if v, ok := node.Labels[key]; ok {
			sum += m[v]
		}
	}
	return sum
}
