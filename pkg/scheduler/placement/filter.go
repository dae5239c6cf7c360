package placement

import (
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Failure reasons, in the words Kubernetes' scheduler uses, so that users and
// tools that grep events keep working.
const (
	ReasonUnschedulable          = "node(s) were unschedulable"
	ReasonNotReady               = "node(s) were not ready"
	ReasonNodeAffinity           = "node(s) didn't match Pod's node affinity/selector"
	ReasonHostPorts              = "node(s) didn't have free ports for the requested pod ports"
	ReasonTooManyPods            = "Too many pods"
	ReasonInsufficientCPU        = "Insufficient cpu"
	ReasonInsufficientMemory     = "Insufficient memory"
	ReasonInsufficientEphemeral  = "Insufficient ephemeral-storage"
	ReasonPodAffinity            = "node(s) didn't match pod affinity rules"
	ReasonPodAntiAffinity        = "node(s) didn't match pod anti-affinity rules"
	ReasonExistingAntiAffinity   = "node(s) didn't satisfy existing pods anti-affinity rules"
	ReasonSpread                 = "node(s) didn't match pod topology spread constraints"
	ReasonSpreadMissingLabel     = "node(s) didn't match pod topology spread constraints (missing required label)"
	reasonUntoleratedTaintFormat = "node(s) had untolerated taint {%s: %s}"
)

// Code says whether and how a node failed a filter.
type Code uint8

const (
	// Fit means the node passed.
	Fit Code = iota
	// Unschedulable means the node failed, but evicting pods could help.
	Unschedulable
	// Unresolvable means the node failed for a reason no eviction changes.
	Unresolvable
)

// TaintUnschedulable is the taint a cordoned node is treated as having.
const TaintUnschedulable = "node.kubernetes.io/unschedulable"

// FilterUnschedulable fails a cordoned node unless the pod tolerates the
// unschedulable taint.
func FilterUnschedulable(pod *v1.Pod, node *v1.Node) (Code, string) {
	if !node.Spec.Unschedulable {
		return Fit, ""
	}
	t := v1.Taint{Key: TaintUnschedulable, Effect: v1.TaintEffectNoSchedule}
	if tolerates(pod.Spec.Tolerations, &t) {
		return Fit, ""
	}
	return Unresolvable, ReasonUnschedulable
}

// FilterReady fails a node whose Ready condition is present and not True.
// A node without any Ready condition is accepted, as Kubernetes' scheduler
// (which leaves readiness to taints) would.
func FilterReady(node *v1.Node) (Code, string) {
	for i := range node.Status.Conditions {
		c := &node.Status.Conditions[i]
		if c.Type == v1.NodeReady {
			if c.Status == v1.ConditionTrue {
				return Fit, ""
			}
			return Unresolvable, ReasonNotReady
		}
	}
	return Fit, ""
}

// FilterTaints fails a node with a NoSchedule or NoExecute taint that the
// pod does not tolerate, naming the first such taint.
func FilterTaints(tolerations []v1.Toleration, node *v1.Node) (Code, string) {
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(tolerations, t) {
			return Unresolvable, fmt.Sprintf(reasonUntoleratedTaintFormat, t.Key, t.Value)
		}
	}
	return Fit, ""
}

// tolerates says whether any toleration tolerates taint.
func tolerates(tolerations []v1.Toleration, taint *v1.Taint) bool {
	for i := range tolerations {
		if toleratesOne(&tolerations[i], taint) {
			return true
		}
	}
	return false
}

func toleratesOne(t *v1.Toleration, taint *v1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case v1.TolerationOpExists:
		return true
	case v1.TolerationOpEqual, "":
		// An empty key with Equal is invalid; it matches nothing.
		return t.Key != "" && t.Value == taint.Value
	}
	return false
}

// nodeMatcher is a pod's nodeSelector and required node affinity.
type nodeMatcher struct {
	selector labels.Selector // nil when the pod has no nodeSelector
	required *v1.NodeSelector
}

func newNodeMatcher(pod *v1.Pod) nodeMatcher {
	var m nodeMatcher
	if len(pod.Spec.NodeSelector) > 0 {
		m.selector = labels.SelectorFromSet(pod.Spec.NodeSelector)
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		m.required = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	return m
}

func (m *nodeMatcher) match(node *v1.Node) bool {
	if m.selector != nil && !m.selector.Matches(labels.Set(node.Labels)) {
		return false
	}
	if m.required != nil && !MatchNodeSelectorTerms(m.required.NodeSelectorTerms, node) {
		return false
	}
	return true
}

// FilterNodeAffinity fails a node that does not match the pod's nodeSelector
// or required node affinity.
func FilterNodeAffinity(pod *v1.Pod, node *v1.Node) (Code, string) {
	m := newNodeMatcher(pod)
	if m.match(node) {
		return Fit, ""
	}
	return Unresolvable, ReasonNodeAffinity
}

// MatchNodeSelectorTerms says whether node matches any of the terms (they
// are ORed; the requirements inside one term are ANDed; an empty term
// matches nothing).
func MatchNodeSelectorTerms(terms []v1.NodeSelectorTerm, node *v1.Node) bool {
	for i := range terms {
		if matchNodeSelectorTerm(&terms[i], node) {
			return true
		}
	}
	return false
}

func matchNodeSelectorTerm(t *v1.NodeSelectorTerm, node *v1.Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for i := range t.MatchExpressions {
		r := &t.MatchExpressions[i]
		v, ok := node.Labels[r.Key]
		if !matchRequirement(r, v, ok) {
			return false
		}
	}
	for i := range t.MatchFields {
		r := &t.MatchFields[i]
		if r.Key != "metadata.name" {
			return false
		}
		if !matchRequirement(r, node.Name, true) {
			return false
		}
	}
	return true
}

func matchRequirement(r *v1.NodeSelectorRequirement, v string, ok bool) bool {
	switch r.Operator {
	case v1.NodeSelectorOpIn:
		return ok && contains(r.Values, v)
	case v1.NodeSelectorOpNotIn:
		return !ok || !contains(r.Values, v)
	case v1.NodeSelectorOpExists:
		return ok
	case v1.NodeSelectorOpDoesNotExist:
		return !ok
	case v1.NodeSelectorOpGt, v1.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == v1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

func contains(values []string, v string) bool {
	for _, x := range values {
		if x == v {
			return true
		}
	}
	return false
}

// FilterHostPorts fails a node where one of the pod's host ports is taken.
func FilterHostPorts(ports []HostPort, ni *NodeInfo) (Code, string) {
	for _, p := range ports {
		for _, used := range ni.UsedPorts {
			if p.conflicts(used) {
				return Unschedulable, ReasonHostPorts
			}
		}
	}
	return Fit, ""
}

// FilterResources fails a node whose allocatable minus what is placed cannot
// hold the pod's requests. It returns every resource that is short, as
// Kubernetes does, so a node may count under several reasons.
func FilterResources(req Resource, ni *NodeInfo) (Code, []string) {
	var reasons []string
	if ni.Requested.Pods+1 > ni.Allocatable.Pods {
		reasons = append(reasons, ReasonTooManyPods)
	}
	if req.MilliCPU > 0 && req.MilliCPU > ni.Allocatable.MilliCPU-ni.Requested.MilliCPU {
		reasons = append(reasons, ReasonInsufficientCPU)
	}
	if req.Memory > 0 && req.Memory > ni.Allocatable.Memory-ni.Requested.Memory {
		reasons = append(reasons, ReasonInsufficientMemory)
	}
	if req.EphemeralStorage > 0 && req.EphemeralStorage > ni.Allocatable.EphemeralStorage-ni.Requested.EphemeralStorage {
		reasons = append(reasons, ReasonInsufficientEphemeral)
	}
	if len(reasons) > 0 {
		return Unschedulable, reasons
	}
	return Fit, nil
}
