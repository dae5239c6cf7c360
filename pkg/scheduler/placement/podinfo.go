// Package placement is the scheduler's deterministic core: given a pod and a
// Snapshot of nodes with the pods already placed on them, it filters the nodes
// with Kubernetes' placement rules, scores the feasible ones and picks one, or
// explains in Kubernetes' words why none fits. It has no goroutines of its own
// beyond an optional fan-out over nodes, no clock and no API client.
package placement

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Defaults used for scoring pods that request nothing, so that many
// zero-request pods do not all pile onto one node (Kubernetes does the same).
const (
	DefaultMilliCPURequest = 100               // 0.1 core
	DefaultMemoryRequest   = 200 * 1024 * 1024 // 200 MiB
)

// Resource is an amount of the resources the scheduler accounts for.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	Pods             int64
}

// Add adds r2 to r.
func (r *Resource) Add(r2 Resource) {
	r.MilliCPU += r2.MilliCPU
	r.Memory += r2.Memory
	r.EphemeralStorage += r2.EphemeralStorage
	r.Pods += r2.Pods
}

// Sub subtracts r2 from r.
func (r *Resource) Sub(r2 Resource) {
	r.MilliCPU -= r2.MilliCPU
	r.Memory -= r2.Memory
	r.EphemeralStorage -= r2.EphemeralStorage
	r.Pods -= r2.Pods
}

// ResourceFromList reads cpu, memory, ephemeral-storage and pods from l.
func ResourceFromList(l v1.ResourceList) Resource {
	var r Resource
	for name, q := range l {
		switch name {
		case v1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case v1.ResourceMemory:
			r.Memory = q.Value()
		case v1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case v1.ResourcePods:
			r.Pods = q.Value()
		}
	}
	return r
}

func quantity(l v1.ResourceList, name v1.ResourceName) (resource.Quantity, bool) {
	q, ok := l[name]
	return q, ok
}

// PodRequests is what a pod needs on a node, as Kubernetes counts it: the
// larger of the sum of its app containers (sidecar init containers, those with
// restartPolicy Always, count with them) and the largest plain init container,
// plus the pod overhead. Pods is always 1.
func PodRequests(pod *v1.Pod) Resource {
	var apps Resource
	for i := range pod.Spec.Containers {
		apps.Add(ResourceFromList(pod.Spec.Containers[i].Resources.Requests))
	}
	// Init containers run one after another; restartable (sidecar) ones keep
	// running, so each later init container runs beside the sidecars so far.
	var sidecars, initMax Resource
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		req := ResourceFromList(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sidecars.Add(req)
			req = sidecars
		} else {
			req.Add(sidecars)
		}
		initMax = maxResource(initMax, req)
	}
	apps.Add(sidecars)
	r := maxResource(apps, initMax)
	if pod.Spec.Overhead != nil {
		r.Add(ResourceFromList(pod.Spec.Overhead))
	}
	r.Pods = 1
	return r
}

func maxResource(a, b Resource) Resource {
	return Resource{
		MilliCPU:         max(a.MilliCPU, b.MilliCPU),
		Memory:           max(a.Memory, b.Memory),
		EphemeralStorage: max(a.EphemeralStorage, b.EphemeralStorage),
		Pods:             max(a.Pods, b.Pods),
	}
}

// nonZeroRequests is PodRequests for scoring: a container that requests no cpu
// or memory counts as the defaults.
func nonZeroRequests(pod *v1.Pod) Resource {
	var r Resource
	for i := range pod.Spec.Containers {
		r.Add(nonZeroContainer(pod.Spec.Containers[i].Resources.Requests))
	}
	var initMax Resource
	for i := range pod.Spec.InitContainers {
		initMax = maxResource(initMax, nonZeroContainer(pod.Spec.InitContainers[i].Resources.Requests))
	}
	r = maxResource(r, initMax)
	if pod.Spec.Overhead != nil {
		r.Add(ResourceFromList(pod.Spec.Overhead))
	}
	return r
}

func nonZeroContainer(l v1.ResourceList) Resource {
	var r Resource
	if q, ok := quantity(l, v1.ResourceCPU); ok {
		r.MilliCPU = q.MilliValue()
	} else {
		r.MilliCPU = DefaultMilliCPURequest
	}
	if q, ok := quantity(l, v1.ResourceMemory); ok {
		r.Memory = q.Value()
	} else {
		r.Memory = DefaultMemoryRequest
	}
	return r
}

// HostPort is one host port a pod claims.
type HostPort struct {
	IP       string // "" and "0.0.0.0" mean every address
	Protocol v1.Protocol
	Port     int32
}

// conflicts says whether two host port claims cannot coexist on one node.
func (p HostPort) conflicts(q HostPort) bool {
	if p.Port != q.Port || p.Protocol != q.Protocol {
		return false
	}
	return isWildcard(p.IP) || isWildcard(q.IP) || p.IP == q.IP
}

func isWildcard(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }

// AffinityTerm is a pod (anti-)affinity term with its selectors parsed.
type AffinityTerm struct {
	Selector          labels.Selector
	Namespaces        sets.Set[string]
	NamespaceSelector labels.Selector // nil when the term names no selector
	TopologyKey       string
	Weight            int32 // for preferred terms
}

// Matches says whether pod (with its namespace's labels nsLabels) is selected
// by the term.
func (t *AffinityTerm) Matches(pod *v1.Pod, nsLabels labels.Set) bool {
	if !t.Namespaces.Has(pod.Namespace) {
		if t.NamespaceSelector == nil || !t.NamespaceSelector.Matches(nsLabels) {
			return false
		}
	}
	return t.Selector.Matches(labels.Set(pod.Labels))
}

// PodInfo is a pod with everything the scheduler derives from its spec
// computed once.
type PodInfo struct {
	Pod      *v1.Pod
	Requests Resource // what the pod occupies on its node
	NonZero  Resource // requests with defaults for scoring
	Ports    []HostPort
	OwnerUID types.UID // controller owner, for spreading

	RequiredAffinity      []AffinityTerm
	RequiredAntiAffinity  []AffinityTerm
	PreferredAffinity     []AffinityTerm
	PreferredAntiAffinity []AffinityTerm
	// ParseErr is set when a label selector in the pod's affinity is invalid;
	// such a pod fits nowhere.
	ParseErr error
}

// NewPodInfo computes the PodInfo of pod.
func NewPodInfo(pod *v1.Pod) *PodInfo {
	pi := &PodInfo{
		Pod:      pod,
		Requests: PodRequests(pod),
		NonZero:  nonZeroRequests(pod),
	}
	for _, c := range pod.Spec.InitContainers {
		pi.Ports = appendPorts(pi.Ports, c.Ports)
	}
	for _, c := range pod.Spec.Containers {
		pi.Ports = appendPorts(pi.Ports, c.Ports)
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		pi.OwnerUID = ref.UID
	}
	if a := pod.Spec.Affinity; a != nil {
		if pa := a.PodAffinity; pa != nil {
			pi.RequiredAffinity = pi.terms(pa.RequiredDuringSchedulingIgnoredDuringExecution, 0)
			pi.PreferredAffinity = pi.weightedTerms(pa.PreferredDuringSchedulingIgnoredDuringExecution)
		}
		if pa := a.PodAntiAffinity; pa != nil {
			pi.RequiredAntiAffinity = pi.terms(pa.RequiredDuringSchedulingIgnoredDuringExecution, 0)
			pi.PreferredAntiAffinity = pi.weightedTerms(pa.PreferredDuringSchedulingIgnoredDuringExecution)
		}
	}
	return pi
}

// HasAffinity says whether the pod has any pod (anti-)affinity term.
func (pi *PodInfo) HasAffinity() bool {
	return len(pi.RequiredAffinity)+len(pi.RequiredAntiAffinity)+len(pi.PreferredAffinity)+len(pi.PreferredAntiAffinity) > 0
}

func appendPorts(out []HostPort, ports []v1.ContainerPort) []HostPort {
	for _, p := range ports {
		if p.HostPort <= 0 {
			continue
		}
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		out = append(out, HostPort{IP: p.HostIP, Protocol: proto, Port: p.HostPort})
	}
	return out
}

func (pi *PodInfo) terms(in []v1.PodAffinityTerm, weight int32) []AffinityTerm {
	var out []AffinityTerm
	for i := range in {
		t, err := pi.newTerm(&in[i], weight)
		if err != nil {
			pi.ParseErr = err
			continue
		}
		out = append(out, t)
	}
	return out
}

func (pi *PodInfo) weightedTerms(in []v1.WeightedPodAffinityTerm) []AffinityTerm {
	var out []AffinityTerm
	for i := range in {
		t, err := pi.newTerm(&in[i].PodAffinityTerm, in[i].Weight)
		if err != nil {
			pi.ParseErr = err
			continue
		}
		out = append(out, t)
	}
	return out
}

func (pi *PodInfo) newTerm(term *v1.PodAffinityTerm, weight int32) (AffinityTerm, error) {
	t := AffinityTerm{TopologyKey: term.TopologyKey, Weight: weight, Namespaces: sets.New(term.Namespaces...)}
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		t.Namespaces.Insert(pi.Pod.Namespace)
	}
	if term.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return t, err
		}
		t.NamespaceSelector = s
	}
	ls := term.LabelSelector
	// matchLabelKeys and mismatchLabelKeys add the incoming pod's own values.
	if len(term.MatchLabelKeys)+len(term.MismatchLabelKeys) > 0 {
		ls = ls.DeepCopy()
		if ls == nil {
			ls = &metav1.LabelSelector{}
		}
		for _, k := range term.MatchLabelKeys {
			if v, ok := pi.Pod.Labels[k]; ok {
				ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
			}
		}
		for _, k := range term.MismatchLabelKeys {
			if v, ok := pi.Pod.Labels[k]; ok {
				ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpNotIn, Values: []string{v}})
			}
		}
	}
	if ls == nil {
		// A nil selector matches no pods.
		t.Selector = labels.Nothing()
		return t, nil
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return t, err
	}
	t.Selector = s
	return t, nil
}
