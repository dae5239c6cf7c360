package registry

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
)

// preparePod starts a new pod Pending, with its QoS class computed.
func preparePod(pod *corev1.Pod) {
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: PodQOSClass(pod)}
}

// prepareNamespace gives a new namespace the kubernetes finalizer, so that
// its contents are removed before it goes, and phase Active.
func prepareNamespace(ns *corev1.Namespace) {
	ns.Spec.Finalizers = []corev1.FinalizerName{FinalizerKubernetes}
	ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
}

// prepareNamespaceUpdate keeps spec.finalizers: only the finalize
// subresource changes them.
func prepareNamespaceUpdate(obj, old runtime.Object) {
	ns, ok1 := obj.(*corev1.Namespace)
	o, ok2 := old.(*corev1.Namespace)
	if ok1 && ok2 {
		ns.Spec.Finalizers = o.Spec.Finalizers
	}
}

// prepareService clears a new service's status (load balancer ingress is
// reported later, never given on create).
func prepareService(svc *corev1.Service) {
	svc.Status = corev1.ServiceStatus{}
}

// prepareServiceUpdate carries over the allocated cluster IPs, IP families
// and node ports that an update (e.g. a PUT built from a manifest) leaves
// out, as Kubernetes does, so a re-applied manifest does not try to change
// them.
func prepareServiceUpdate(obj, old runtime.Object) {
	svc, ok1 := obj.(*corev1.Service)
	o, ok2 := old.(*corev1.Service)
	if !ok1 || !ok2 {
		return
	}
	s, os := &svc.Spec, &o.Spec
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	bothHaveIPs := s.Type != corev1.ServiceTypeExternalName && os.Type != corev1.ServiceTypeExternalName
	if bothHaveIPs && s.ClusterIP == "" && len(s.ClusterIPs) == 0 {
		s.ClusterIP = os.ClusterIP
		s.ClusterIPs = append([]string(nil), os.ClusterIPs...)
		if len(s.IPFamilies) == 0 {
			s.IPFamilies = append([]corev1.IPFamily(nil), os.IPFamilies...)
		}
		if s.IPFamilyPolicy == nil && os.IPFamilyPolicy != nil {
			s.IPFamilyPolicy = ptrTo(*os.IPFamilyPolicy)
		}
	}
	if hasNodePorts(s.Type) && hasNodePorts(os.Type) {
		for i := range s.Ports {
			p := &s.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			for _, op := range os.Ports {
				if op.Port == p.Port && protocolOrTCP(op.Protocol) == protocolOrTCP(p.Protocol) {
					p.NodePort = op.NodePort
					break
				}
			}
		}
	}
	if s.Type == corev1.ServiceTypeLoadBalancer && os.Type == corev1.ServiceTypeLoadBalancer && s.HealthCheckNodePort == 0 {
		s.HealthCheckNodePort = os.HealthCheckNodePort
	}
	// Fields that belong to a type the service no longer has are dropped.
	if !hasNodePorts(s.Type) {
		s.ExternalTrafficPolicy = ""
		for i := range s.Ports {
			s.Ports[i].NodePort = 0
		}
	}
}

func hasNodePorts(t corev1.ServiceType) bool {
	return t == corev1.ServiceTypeNodePort || t == corev1.ServiceTypeLoadBalancer
}

func protocolOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// PodQOSClass is the pod's quality-of-service class: Guaranteed when every
// container has cpu and memory limits equal to its requests, BestEffort when
// no container asks for cpu or memory at all, Burstable otherwise. A
// resource with only a limit counts as requested at its limit.
func PodQOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests := corev1.ResourceList{}
	limits := corev1.ResourceList{}
	guaranteed := true
	all := append(append([]corev1.Container(nil), pod.Spec.Containers...), pod.Spec.InitContainers...)
	for _, c := range all {
		// Requests default to limits, so start from the limits.
		reqs := corev1.ResourceList{}
		for name, q := range c.Resources.Limits {
			reqs[name] = q
		}
		for name, q := range c.Resources.Requests {
			reqs[name] = q
		}
		for name, q := range reqs {
			if qosResource(name) && q.Sign() > 0 {
				addTo(requests, name, q)
			}
		}
		cpu, mem := false, false
		for name, q := range c.Resources.Limits {
			if qosResource(name) && q.Sign() > 0 {
				addTo(limits, name, q)
				cpu = cpu || name == corev1.ResourceCPU
				mem = mem || name == corev1.ResourceMemory
			}
		}
		if !cpu || !mem {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func qosResource(name corev1.ResourceName) bool {
	return name == corev1.ResourceCPU || name == corev1.ResourceMemory
}

func addTo(list corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
	sum := q.DeepCopy()
	if cur, ok := list[name]; ok {
		sum.Add(cur)
	}
	list[name] = sum
}

// Taint keys of the default tolerations.
const (
	TaintNodeNotReady    = "node.kubernetes.io/not-ready"
	TaintNodeUnreachable = "node.kubernetes.io/unreachable"
)

// AddDefaultTolerations lets a new pod stay seconds on a node that turns
// not-ready or unreachable before it is evicted, unless the pod already
// tolerates those NoExecute taints itself. The handler calls it on create.
func AddDefaultTolerations(pod *corev1.Pod, seconds int64) {
	notReady, unreachable := false, false
	for _, t := range pod.Spec.Tolerations {
		noExecute := t.Effect == "" || t.Effect == corev1.TaintEffectNoExecute
		if !noExecute {
			continue
		}
		if t.Key == "" || t.Key == TaintNodeNotReady {
			notReady = true
		}
		if t.Key == "" || t.Key == TaintNodeUnreachable {
			unreachable = true
		}
	}
	add := func(key string) {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
			Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute,
			TolerationSeconds: ptrTo(seconds),
		})
	}
	if !notReady {
		add(TaintNodeNotReady)
	}
	if !unreachable {
		add(TaintNodeUnreachable)
	}
}
