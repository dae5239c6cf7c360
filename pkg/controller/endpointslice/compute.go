package endpointslice

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-org/skiff/pkg/controller/endpoints"
)

const (
	// ManagedBy is the value of discovery.LabelManagedBy on slices this
	// controller owns; slices with another value are left alone.
	ManagedBy = "endpointslice-controller.k8s.io"
	// MaxEndpoints is how many endpoints one slice holds, as in Kubernetes.
	MaxEndpoints = 100
)

// Changes is what Reconcile wants written.
type Changes struct {
	Create []*discovery.EndpointSlice
	Update []*discovery.EndpointSlice
	Delete []*discovery.EndpointSlice
}

// Empty reports whether there is nothing to write.
func (c Changes) Empty() bool { return len(c.Create)+len(c.Update)+len(c.Delete) == 0 }

// group is the endpoints that share an address type and a port list, and so
// may share slices.
type group struct {
	addrType discovery.AddressType
	ports    []discovery.EndpointPort
	want     map[string]discovery.Endpoint // by endpointID
}

// Endpoint is the slice endpoint pod gives svc. Terminating pods are kept and
// marked; ready means serving and not terminating, unless the service
// publishes not-ready addresses.
func Endpoint(svc *v1.Service, pod *v1.Pod) discovery.Endpoint {
	serving := svc.Spec.PublishNotReadyAddresses || endpoints.PodReady(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	nodeName := pod.Spec.NodeName
	ep := discovery.Endpoint{
		Addresses:  []string{pod.Status.PodIP},
		Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		NodeName:   &nodeName,
		TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if h := endpoints.Hostname(svc, pod); h != "" {
		ep.Hostname = &h
	}
	return ep
}

func endpointID(ep *discovery.Endpoint) string {
	id := strings.Join(ep.Addresses, ",")
	if ep.TargetRef != nil {
		id += "/" + string(ep.TargetRef.UID)
	}
	return id
}

func addressType(ip string) discovery.AddressType {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		return discovery.AddressTypeIPv6
	}
	return discovery.AddressTypeIPv4
}

func groupKey(t discovery.AddressType, ports []discovery.EndpointPort) string {
	var b strings.Builder
	b.WriteString(string(t))
	for _, p := range ports {
		name, proto, port := "", v1.ProtocolTCP, int32(0)
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if p.Port != nil {
			port = *p.Port
		}
		fmt.Fprintf(&b, "|%s/%s/%d", name, proto, port)
	}
	return b.String()
}

func slicePorts(ports []v1.EndpointPort) []discovery.EndpointPort {
	out := make([]discovery.EndpointPort, 0, len(ports))
	for _, p := range ports {
		out = append(out, discovery.EndpointPort{Name: &p.Name, Port: &p.Port, Protocol: &p.Protocol, AppProtocol: p.AppProtocol})
	}
	return out
}

// Desired groups the endpoints svc should have by address type and ports.
// trigger is the latest change among the pods used and the service.
func desired(svc *v1.Service, pods []*v1.Pod) (groups map[string]*group, trigger time.Time) {
	groups = map[string]*group{}
	for _, pod := range pods {
		if !endpoints.Selects(svc, pod) || !endpoints.Eligible(pod, true) {
			continue
		}
		ports := endpoints.PodPorts(svc, pod)
		if len(ports) == 0 && len(svc.Spec.Ports) > 0 {
			continue
		}
		if t := endpoints.ChangeTime(pod); t.After(trigger) {
			trigger = t
		}
		sp := slicePorts(ports)
		at := addressType(pod.Status.PodIP)
		key := groupKey(at, sp)
		g, ok := groups[key]
		if !ok {
			g = &group{addrType: at, ports: sp, want: map[string]discovery.Endpoint{}}
			groups[key] = g
		}
		ep := Endpoint(svc, pod)
		g.want[endpointID(&ep)] = ep
	}
	if t := svc.CreationTimestamp.Time; t.After(trigger) {
		trigger = t
	}
	return groups, trigger
}

// Labels are the labels every slice of svc carries: the service's own, the
// service name, the manager and, for headless services, the headless marker.
func Labels(svc *v1.Service) map[string]string {
	l := endpoints.Labels(svc)
	l[discovery.LabelServiceName] = svc.Name
	l[discovery.LabelManagedBy] = ManagedBy
	return l
}

func newSlice(svc *v1.Service, g *group) *discovery.EndpointSlice {
	t := true
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: svc.Name + "-",
			Namespace:    svc.Namespace,
			Labels:       Labels(svc),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: &t, BlockOwnerDeletion: &t,
			}},
		},
		AddressType: g.addrType,
		Ports:       g.ports,
	}
}

func sortEndpoints(eps []discovery.Endpoint) {
	slices.SortFunc(eps, func(a, b discovery.Endpoint) int { return strings.Compare(endpointID(&a), endpointID(&b)) })
}

// Reconcile compares the slices svc has (existing, all managed by this
// controller) with the ones its pods call for, and returns the writes that
// turn one into the other. Endpoints stay in the slice they are in while they
// exist, so a pod change rewrites one slice, not all of them; new endpoints
// fill existing slices before new slices are made; a service with no
// endpoints keeps one empty placeholder slice, as in Kubernetes.
func Reconcile(svc *v1.Service, pods []*v1.Pod, existing []*discovery.EndpointSlice) Changes {
	groups, trigger := desired(svc, pods)
	stamp := trigger.UTC().Format(time.RFC3339Nano)
	labels := Labels(svc)
	existing = slices.Clone(existing)
	slices.SortFunc(existing, func(a, b *discovery.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })

	var ch Changes
	// Slices with room, per group, after their stale endpoints are dropped.
	open := map[string][]*discovery.EndpointSlice{}
	placed := map[string]bool{}
	for _, s := range existing {
		key := groupKey(s.AddressType, s.Ports)
		g, ok := groups[key]
		if !ok {
			ch.Delete = append(ch.Delete, s)
			continue
		}
		var keep []discovery.Endpoint
		for i := range s.Endpoints {
			id := endpointID(&s.Endpoints[i])
			if want, ok := g.want[id]; ok && !placed[id] {
				keep = append(keep, want)
				placed[id] = true
			}
		}
		if len(keep) == 0 {
			ch.Delete = append(ch.Delete, s)
			continue
		}
		sortEndpoints(keep)
		changed := !apiequality.Semantic.DeepEqual(keep, s.Endpoints) || !apiequality.Semantic.DeepEqual(labels, s.Labels)
		next := s
		if changed {
			next = s.DeepCopy()
			next.Endpoints = keep
			next.Labels = labels
		}
		if len(keep) < MaxEndpoints {
			open[key] = append(open[key], next)
		}
		if changed {
			ch.Update = append(ch.Update, next)
		}
	}

	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		g := groups[key]
		var todo []discovery.Endpoint
		for id, ep := range g.want {
			if !placed[id] {
				todo = append(todo, ep)
			}
		}
		sortEndpoints(todo)
		for _, s := range open[key] {
			if len(todo) == 0 {
				break
			}
			n := min(MaxEndpoints-len(s.Endpoints), len(todo))
			if !slices.Contains(ch.Update, s) {
				s = s.DeepCopy()
				ch.Update = append(ch.Update, s)
			}
			s.Endpoints = append(s.Endpoints, todo[:n]...)
			sortEndpoints(s.Endpoints)
			todo = todo[n:]
		}
		for len(todo) > 0 {
			n := min(MaxEndpoints, len(todo))
			s := newSlice(svc, g)
			s.Endpoints = todo[:n]
			ch.Create = append(ch.Create, s)
			todo = todo[n:]
		}
	}

	if len(groups) == 0 {
		ch = placeholder(svc, existing, labels)
	}
	for _, s := range append(slices.Clone(ch.Create), ch.Update...) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[endpoints.LastChangeTriggerTime] = stamp
	}
	return ch
}

// placeholder keeps exactly one empty slice for a service without endpoints.
func placeholder(svc *v1.Service, existing []*discovery.EndpointSlice, labels map[string]string) Changes {
	var ch Changes
	for i, s := range existing {
		if i == 0 {
			if len(s.Endpoints) != 0 || len(s.Ports) != 0 || !apiequality.Semantic.DeepEqual(labels, s.Labels) {
				s = s.DeepCopy()
				s.Endpoints, s.Ports, s.Labels = nil, nil, labels
				ch.Update = append(ch.Update, s)
			}
			continue
		}
		ch.Delete = append(ch.Delete, s)
	}
	if len(existing) == 0 {
		at := discovery.AddressTypeIPv4
		if len(svc.Spec.IPFamilies) > 0 && svc.Spec.IPFamilies[0] == v1.IPv6Protocol {
			at = discovery.AddressTypeIPv6
		}
		ch.Create = append(ch.Create, newSlice(svc, &group{addrType: at, ports: nil}))
	}
	return ch
}
