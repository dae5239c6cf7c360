package endpoints

import (
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// LastChangeTriggerTime is the annotation recording when the change that led
// to the current endpoints happened (a pod or service change).
const LastChangeTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"

// HeadlessLabel marks endpoints of services with clusterIP None.
const HeadlessLabel = "service.kubernetes.io/headless"

// Selects reports whether svc selects pod; services without a selector
// select nothing (their endpoints belong to the user).
func Selects(svc *v1.Service, pod *v1.Pod) bool {
	if len(svc.Spec.Selector) == 0 || pod.Namespace != svc.Namespace {
		return false
	}
	return labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

// PodReady reports whether the pod's Ready condition is True.
func PodReady(pod *v1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// Eligible reports whether pod can back a service at all: it has an IP, is
// scheduled, and has not finished for good. Terminating pods are eligible
// only when includeTerminating is set.
func Eligible(pod *v1.Pod, includeTerminating bool) bool {
	if pod.Status.PodIP == "" || pod.Spec.NodeName == "" {
		return false
	}
	if pod.DeletionTimestamp != nil && !includeTerminating {
		return false
	}
	switch pod.Status.Phase {
	case v1.PodSucceeded, v1.PodFailed:
		return false
	}
	return true
}

// ResolvePort finds the container port a service port's targetPort means on
// pod: a number is used as is, a name is looked up among the pod's container
// ports. ok is false when the name is not found.
func ResolvePort(pod *v1.Pod, sp *v1.ServicePort) (port int32, ok bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && protocolOf(p.Protocol) == protocolOf(sp.Protocol) {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	default: // unset targetPort defaults to port
		return sp.Port, true
	}
}

func protocolOf(p v1.Protocol) v1.Protocol {
	if p == "" {
		return v1.ProtocolTCP
	}
	return p
}

// PodPorts returns the endpoint ports svc resolves to on pod, in service port
// order, leaving out ports whose named targetPort the pod lacks.
func PodPorts(svc *v1.Service, pod *v1.Pod) []v1.EndpointPort {
	var out []v1.EndpointPort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		port, ok := ResolvePort(pod, sp)
		if !ok {
			continue
		}
		out = append(out, v1.EndpointPort{Name: sp.Name, Port: port, Protocol: protocolOf(sp.Protocol), AppProtocol: sp.AppProtocol})
	}
	return out
}

// Hostname is the DNS hostname pod has under svc: spec.hostname when the pod's
// subdomain names the service.
func Hostname(svc *v1.Service, pod *v1.Pod) string {
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
		return pod.Spec.Hostname
	}
	return ""
}

// ChangeTime is when pod last changed in a way that matters to endpoints: the
// last transition of its Ready condition, else its creation.
func ChangeTime(pod *v1.Pod) time.Time {
	t := pod.CreationTimestamp.Time
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady && c.LastTransitionTime.After(t) {
			t = c.LastTransitionTime.Time
		}
	}
	if pod.DeletionTimestamp != nil && pod.DeletionTimestamp.After(t) {
		t = pod.DeletionTimestamp.Time
	}
	return t
}

// Subsets computes the Endpoints subsets of svc from the candidate pods:
// addresses of pods with an IP, ready ones in addresses and the others in
// notReadyAddresses (all in addresses with publishNotReadyAddresses), grouped
// by the port set they resolve to. The result is sorted so that equal inputs
// give equal outputs. trigger is the latest change time among the pods used.
func Subsets(svc *v1.Service, pods []*v1.Pod) (subsets []v1.EndpointSubset, trigger time.Time) {
	publish := svc.Spec.PublishNotReadyAddresses
	type group struct {
		ports           []v1.EndpointPort
		ready, notReady []v1.EndpointAddress
	}
	groups := map[string]*group{}
	var keys []string
	for _, pod := range pods {
		if !Selects(svc, pod) || !Eligible(pod, publish) {
			continue
		}
		ports := PodPorts(svc, pod)
		if len(ports) == 0 && len(svc.Spec.Ports) > 0 {
			continue
		}
		if t := ChangeTime(pod); t.After(trigger) {
			trigger = t
		}
		nodeName := pod.Spec.NodeName
		addr := v1.EndpointAddress{
			IP:        pod.Status.PodIP,
			Hostname:  Hostname(svc, pod),
			NodeName:  &nodeName,
			TargetRef: &v1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}
		key := portsKey(ports)
		g, ok := groups[key]
		if !ok {
			g = &group{ports: ports}
			groups[key] = g
			keys = append(keys, key)
		}
		if publish || PodReady(pod) {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		g := groups[k]
		sortAddrs(g.ready)
		sortAddrs(g.notReady)
		subsets = append(subsets, v1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	if t := svc.CreationTimestamp.Time; t.After(trigger) {
		trigger = t
	}
	return subsets, trigger
}

func portsKey(ports []v1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", p.Name, p.Protocol, p.Port)
	}
	return b.String()
}

func sortAddrs(a []v1.EndpointAddress) {
	slices.SortFunc(a, func(x, y v1.EndpointAddress) int {
		if c := strings.Compare(x.IP, y.IP); c != 0 {
			return c
		}
		return strings.Compare(x.TargetRef.Name, y.TargetRef.Name)
	})
}

// Labels are the labels the Endpoints object of svc carries: the service's
// own, plus the headless marker for clusterIP None.
func Labels(svc *v1.Service) map[string]string {
	out := make(map[string]string, len(svc.Labels)+1)
	for k, v := range svc.Labels {
		out[k] = v
	}
	if svc.Spec.ClusterIP == v1.ClusterIPNone {
		out[HeadlessLabel] = ""
	} else {
		delete(out, HeadlessLabel)
	}
	return out
}
