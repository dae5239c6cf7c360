package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
)

// ErrInvalidPod is returned for a pod whose affinity or spread selectors do
// not parse; it fits nowhere until it is fixed.
var ErrInvalidPod = errors.New("placement: invalid pod")

// FitError says why no node fits a pod, in Kubernetes' words.
type FitError struct {
	NumNodes int
	// Reasons counts nodes per failure reason; a node short of several
	// resources counts once under each.
	Reasons map[string]int
	// Unresolvable counts nodes that failed for a reason that evicting pods
	// could not change; the rest could in principle be freed by preemption.
	Unresolvable int
}

// Error renders the message the way Kubernetes' scheduler does, for example
// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
// taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are
// available: 3 Preemption is not helpful for scheduling." Reasons are sorted
// as strings, count first, as Kubernetes sorts them. skiff does not preempt,
// so nodes that preemption might have freed are reported as having no
// victims.
func (e *FitError) Error() string {
	if e.NumNodes == 0 {
		return "no nodes available to schedule pods"
	}
	parts := make([]string, 0, len(e.Reasons))
	for r, n := range e.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	var pre []string
	if e.Unresolvable > 0 {
		pre = append(pre, fmt.Sprintf("%d Preemption is not helpful for scheduling", e.Unresolvable))
	}
	if rest := e.NumNodes - e.Unresolvable; rest > 0 {
		pre = append(pre, fmt.Sprintf("%d No preemption victims found for incoming pod", rest))
	}
	sort.Strings(pre)
	return fmt.Sprintf("0/%d nodes are available: %s. preemption: 0/%d nodes are available: %s.",
		e.NumNodes, strings.Join(parts, ", "), e.NumNodes, strings.Join(pre, ", "))
}

// Decider picks nodes for pods. It keeps scratch buffers between decisions,
// so one Decider serves one goroutine at a time.
type Decider struct {
	workers int
	rng     *rand.Rand

	codes   []Code
	reasons [][]string
	scratch []nodeScore
}

// NewDecider returns a Decider that fans filtering and scoring out over
// workers goroutines for large clusters; seed makes tie-breaks repeatable.
func NewDecider(workers int, seed uint64) *Decider {
	return &Decider{workers: max(workers, 1), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// cycle is everything computed once per pod before looking at nodes.
type cycle struct {
	pi      *PodInfo
	matcher nodeMatcher
	inter   *interPodState
	hard    *spreadState
}

// nodeScore holds a feasible node's raw scores before normalization.
type nodeScore struct {
	idx      int
	least    int64
	balanced int64
	taints   int64
	nodeAff  int64
	interPod int64
	soft     float64
	softOK   bool
	selector int64
	total    int64
}

// Decide returns the name of the node the pod should run on, a *FitError
// when none fits, or an error wrapping ErrInvalidPod.
func (d *Decider) Decide(pi *PodInfo, s *Snapshot) (string, error) {
	if pi.ParseErr != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidPod, pi.ParseErr)
	}
	n := len(s.Nodes)
	if n == 0 {
		return "", &FitError{}
	}
	c := &cycle{pi: pi, matcher: newNodeMatcher(pi.Pod)}
	hard, err := parseConstraints(pi.Pod, v1.DoNotSchedule)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidPod, err)
	}
	c.hard = newSpreadState(hard, pi.Pod, s, &c.matcher)
	c.inter = newInterPodState(pi, s)

	if cap(d.codes) < n {
		d.codes = make([]Code, n)
		d.reasons = make([][]string, n)
	}
	codes, reasons := d.codes[:n], d.reasons[:n]
	d.parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			codes[i], reasons[i] = c.filter(s.Nodes[i])
		}
	})
	feasible := d.scratch[:0]
	for i, code := range codes {
		if code == Fit {
			feasible = append(feasible, nodeScore{idx: i})
		}
	}
	d.scratch = feasible
	if len(feasible) == 0 {
		fe := &FitError{NumNodes: n, Reasons: map[string]int{}}
		for i, code := range codes {
			if code == Unresolvable {
				fe.Unresolvable++
			}
			for _, r := range reasons[i] {
				fe.Reasons[r]++
			}
			reasons[i] = nil
		}
		return "", fe
	}
	for i := range reasons {
		reasons[i] = nil
	}
	if len(feasible) == 1 {
		return s.Nodes[feasible[0].idx].Name(), nil
	}
	best := d.score(c, s, feasible)
	return s.Nodes[best].Name(), nil
}

// filter runs the filters in Kubernetes' order and stops at the first that
// fails.
func (c *cycle) filter(ni *NodeInfo) (Code, []string) {
	node := ni.Node
	if node == nil {
		return Unresolvable, []string{ReasonNotReady}
	}
	pod := c.pi.Pod
	if code, r := FilterUnschedulable(pod, node); code != Fit {
		return code, []string{r}
	}
	if code, r := FilterReady(node); code != Fit {
		return code, []string{r}
	}
	if code, r := FilterTaints(pod.Spec.Tolerations, node); code != Fit {
		return code, []string{r}
	}
	if !c.matcher.match(node) {
		return Unresolvable, []string{ReasonNodeAffinity}
	}
	if code, r := FilterHostPorts(c.pi.Ports, ni); code != Fit {
		return code, []string{r}
	}
	if code, rs := FilterResources(c.pi.Requests, ni); code != Fit {
		return code, rs
	}
	if c.hard != nil {
		if code, r := c.hard.filter(node); code != Fit {
			return code, []string{r}
		}
	}
	if c.inter != nil {
		if code, r := c.inter.filter(c.pi, node); code != Fit {
			return code, []string{r}
		}
	}
	return Fit, nil
}

// score computes every criterion for the feasible nodes, normalizes each to
// 0-100, weighs and sums them, and returns the index of the best node;
// ties are broken at random.
func (d *Decider) score(c *cycle, s *Snapshot, feasible []nodeScore) int {
	pod := c.pi.Pod
	soft, err := parseConstraints(pod, v1.ScheduleAnyway)
	var ss *softSpread
	if err == nil {
		ss = newSoftSpread(soft, pod, s, &c.matcher)
	}
	inter := interPodScores(c.pi, s)
	sel := newSelectorSpread(c.pi, s)
	hasNodePref := pod.Spec.Affinity != nil && pod.Spec.Affinity.NodeAffinity != nil &&
		len(pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0

	d.parallel(len(feasible), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			f := &feasible[i]
			ni := s.Nodes[f.idx]
			f.least = LeastAllocatedScore(c.pi.NonZero, ni)
			f.balanced = BalancedAllocationScore(c.pi.Requests, ni)
			if len(ni.Node.Spec.Taints) > 0 {
				f.taints = PreferNoScheduleCount(pod.Spec.Tolerations, ni.Node)
			}
			if hasNodePref {
				f.nodeAff = PreferredNodeAffinityScore(pod, ni.Node)
			}
			if inter != nil {
				f.interPod = interPodNodeScore(inter, ni.Node)
			}
			if ss != nil {
				f.soft, f.softOK = ss.score(ni.Node)
			}
			if sel != nil {
				f.selector = sel.count(ni)
			}
		}
	})

	m := len(feasible)
	raw := make([]int64, m)
	addNormalized := func(weight int64, get func(*nodeScore) int64, norm func([]int64)) {
		for i := range feasible {
			raw[i] = get(&feasible[i])
		}
		norm(raw)
		for i := range feasible {
			feasible[i].total += weight * raw[i]
		}
	}
	for i := range feasible {
		f := &feasible[i]
		f.total = WeightLeastAllocated*f.least + WeightBalanced*f.balanced
	}
	addNormalized(WeightTaintToleration, func(f *nodeScore) int64 { return f.taints }, func(r []int64) { normalizeMax(r, true) })
	if hasNodePref {
		addNormalized(WeightNodeAffinity, func(f *nodeScore) int64 { return f.nodeAff }, func(r []int64) { normalizeMax(r, false) })
	}
	if inter != nil {
		addNormalized(WeightInterPodAffinity, func(f *nodeScore) int64 { return f.interPod }, normalizeMinMax)
	}
	if ss != nil {
		d.addSoftSpread(feasible)
	}
	if sel != nil {
		d.addSelectorSpread(s, feasible)
	}

	best, ties := -1, 0
	var top int64
	for i := range feasible {
		f := &feasible[i]
		switch {
		case best < 0 || f.total > top:
			best, top, ties = f.idx, f.total, 1
		case f.total == top:
			ties++
			if d.rng.IntN(ties) == 0 {
				best = f.idx
			}
		}
	}
	return best
}

// addSoftSpread normalizes ScheduleAnyway spread: fewest matching pods in the
// node's domains scores 100; nodes lacking a topology key score 0.
func (d *Decider) addSoftSpread(feasible []nodeScore) {
	lo, hi, seen := 0.0, 0.0, false
	for i := range feasible {
		f := &feasible[i]
		if !f.softOK {
			continue
		}
		if !seen {
			lo, hi, seen = f.soft, f.soft, true
		}
		lo, hi = min(lo, f.soft), max(hi, f.soft)
	}
	for i := range feasible {
		f := &feasible[i]
		if !f.softOK {
			continue
		}
		score := float64(MaxNodeScore)
		if hi > 0 {
			score = MaxNodeScore * (hi + lo - f.soft) / hi
		}
		f.total += WeightTopologySpread * int64(score)
	}
}

// zoneWeight is the share of the selector spread score that comes from the
// zone rather than the node, as in Kubernetes' former SelectorSpread.
const zoneWeight = 2.0 / 3.0

// addSelectorSpread favours nodes, and zones, with fewer pods of the same
// controller or service.
func (d *Decider) addSelectorSpread(s *Snapshot, feasible []nodeScore) {
	var maxNode int64
	zones := map[string]int64{}
	for i := range feasible {
		f := &feasible[i]
		maxNode = max(maxNode, f.selector)
		if z, ok := s.Nodes[f.idx].Node.Labels[LabelZone]; ok {
			zones[z] += f.selector
		}
	}
	var maxZone int64
	for _, n := range zones {
		maxZone = max(maxZone, n)
	}
	for i := range feasible {
		f := &feasible[i]
		score := float64(MaxNodeScore)
		if maxNode > 0 {
			score = float64(MaxNodeScore) * float64(maxNode-f.selector) / float64(maxNode)
		}
		if z, ok := s.Nodes[f.idx].Node.Labels[LabelZone]; ok && len(zones) > 1 {
			zs := float64(MaxNodeScore)
			if maxZone > 0 {
				zs = float64(MaxNodeScore) * float64(maxZone-zones[z]) / float64(maxZone)
			}
			score = score*(1-zoneWeight) + zs*zoneWeight
		}
		f.total += WeightSelectorSpread * int64(score)
	}
}

// minPerWorker keeps small clusters on one goroutine, where fan-out costs
// more than it saves.
const minPerWorker = 512

func (d *Decider) parallel(n int, fn func(lo, hi int)) {
	w := min(d.workers, n/minPerWorker)
	if w <= 1 {
		fn(0, n)
		return
	}
	chunk := (n + w - 1) / w
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
