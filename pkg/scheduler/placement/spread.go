package placement

import (
	"math"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Well-known topology labels.
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelZone     = "topology.kubernetes.io/zone"
)

// constraint is a topology spread constraint with its selector parsed and
// its policies defaulted.
type constraint struct {
	maxSkew       int64
	minDomains    int64
	key           string
	selector      labels.Selector
	honorAffinity bool // nodeAffinityPolicy, default Honor
	honorTaints   bool // nodeTaintsPolicy, default Ignore
}

func parseConstraints(pod *v1.Pod, when v1.UnsatisfiableConstraintAction) ([]constraint, error) {
	var out []constraint
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable != when {
			continue
		}
		ls := c.LabelSelector
		if len(c.MatchLabelKeys) > 0 {
			ls = ls.DeepCopy()
			if ls == nil {
				ls = &metav1.LabelSelector{}
			}
			for _, k := range c.MatchLabelKeys {
				if v, ok := pod.Labels[k]; ok {
					ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
				}
			}
		}
		sel := labels.Nothing()
		if ls != nil {
			s, err := metav1.LabelSelectorAsSelector(ls)
			if err != nil {
				return nil, err
			}
			sel = s
		}
		k := constraint{
			maxSkew:       int64(c.MaxSkew),
			minDomains:    1,
			key:           c.TopologyKey,
			selector:      sel,
			honorAffinity: c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == v1.NodeInclusionPolicyHonor,
			honorTaints:   c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == v1.NodeInclusionPolicyHonor,
		}
		if c.MinDomains != nil && *c.MinDomains > 0 {
			k.minDomains = int64(*c.MinDomains)
		}
		out = append(out, k)
	}
	return out, nil
}

// spreadState holds, for each constraint, the matching pod count of every
// eligible domain.
type spreadState struct {
	constraints []constraint
	counts      []map[string]int64
	globalMin   []int64
	selfMatch   []int64
}

// eligible says whether a node counts toward the constraints' domains: it has
// every key and passes the affinity and taint policies.
func eligible(cs []constraint, ni *NodeInfo, pod *v1.Pod, m *nodeMatcher) bool {
	node := ni.Node
	for _, c := range cs {
		if _, ok := node.Labels[c.key]; !ok {
			return false
		}
	}
	// The policies are per constraint in the API but nearly always equal;
	// a node must pass the strictest one asked for.
	for _, c := range cs {
		if c.honorAffinity && !m.match(node) {
			return false
		}
		if c.honorTaints {
			if code, _ := FilterTaints(pod.Spec.Tolerations, node); code != Fit {
				return false
			}
		}
	}
	return true
}

func countMatching(ni *NodeInfo, ns string, sel labels.Selector) int64 {
	var n int64
	for _, p := range ni.Pods {
		if p.Pod.Namespace != ns || p.Pod.DeletionTimestamp != nil {
			continue
		}
		if sel.Matches(labels.Set(p.Pod.Labels)) {
			n++
		}
	}
	return n
}

func newSpreadState(cs []constraint, pod *v1.Pod, s *Snapshot, m *nodeMatcher) *spreadState {
	if len(cs) == 0 {
		return nil
	}
	st := &spreadState{
		constraints: cs,
		counts:      make([]map[string]int64, len(cs)),
		globalMin:   make([]int64, len(cs)),
		selfMatch:   make([]int64, len(cs)),
	}
	for i, c := range cs {
		st.counts[i] = map[string]int64{}
		if c.selector.Matches(labels.Set(pod.Labels)) {
			st.selfMatch[i] = 1
		}
	}
	for _, ni := range s.Nodes {
		if ni.Node == nil || !eligible(cs, ni, pod, m) {
			continue
		}
		for i, c := range cs {
			st.counts[i][ni.Node.Labels[c.key]] += countMatching(ni, pod.Namespace, c.selector)
		}
	}
	for i, c := range cs {
		if int64(len(st.counts[i])) < c.minDomains {
			st.globalMin[i] = 0
			continue
		}
		first := true
		for _, n := range st.counts[i] {
			if first || n < st.globalMin[i] {
				st.globalMin[i] = n
				first = false
			}
		}
	}
	return st
}

// filter applies the DoNotSchedule constraints to one node.
func (st *spreadState) filter(node *v1.Node) (Code, string) {
	for i, c := range st.constraints {
		v, ok := node.Labels[c.key]
		if !ok {
			return Unresolvable, ReasonSpreadMissingLabel
		}
		if st.counts[i][v]+st.selfMatch[i]-st.globalMin[i] > c.maxSkew {
			return Unschedulable, ReasonSpread
		}
	}
	return Fit, ""
}

// softSpread scores ScheduleAnyway constraints: fewer matching pods in the
// node's domains is better; big topologies weigh more (log of their size).
type softSpread struct {
	constraints []constraint
	counts      []map[string]int64
	weights     []float64
}

func newSoftSpread(cs []constraint, pod *v1.Pod, s *Snapshot, m *nodeMatcher) *softSpread {
	st := newSpreadState(cs, pod, s, m)
	if st == nil {
		return nil
	}
	ss := &softSpread{constraints: cs, counts: st.counts, weights: make([]float64, len(cs))}
	for i := range cs {
		ss.weights[i] = math.Log(float64(len(st.counts[i]) + 2))
	}
	return ss
}

// score returns the raw score (lower is better) and false when the node lacks
// a key and so takes no part.
func (ss *softSpread) score(node *v1.Node) (float64, bool) {
	var sum float64
	for i, c := range ss.constraints {
		v, ok := node.Labels[c.key]
		if !ok {
			return 0, false
		}
		sum += float64(ss.counts[i][v])*ss.weights[i] + float64(c.maxSkew-1)
	}
	return sum, true
}

// selectorSpread spreads pods that share a controller or a service across
// nodes and zones.
type selectorSpread struct {
	ns        string
	owner     string
	selectors []labels.Selector // services selecting the pod
}

func newSelectorSpread(pi *PodInfo, s *Snapshot) *selectorSpread {
	pod := pi.Pod
	if len(pod.Spec.TopologySpreadConstraints) > 0 {
		return nil
	}
	ss := &selectorSpread{ns: pod.Namespace, owner: string(pi.OwnerUID)}
	for _, sel := range s.Services[pod.Namespace] {
		if sel.Matches(labels.Set(pod.Labels)) {
			ss.selectors = append(ss.selectors, sel)
		}
	}
	if ss.owner == "" && len(ss.selectors) == 0 {
		return nil
	}
	return ss
}

func (ss *selectorSpread) count(ni *NodeInfo) int64 {
	var n int64
	if ss.owner != "" {
		n = ni.OwnedPods(types.UID(ss.owner))
	}
	if len(ss.selectors) == 0 {
		return n
	}
	for _, p := range ni.Pods {
		if p.Pod.Namespace != ss.ns || p.Pod.DeletionTimestamp != nil {
			continue
		}
		if ss.owner != "" && string(p.OwnerUID) == ss.owner {
			continue // counted above
		}
		for _, sel := range ss.selectors {
			if sel.Matches(labels.Set(p.Pod.Labels)) {
				n++
				break
			}
		}
	}
	return n
}
