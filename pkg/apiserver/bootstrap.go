package apiserver

import (
	"context"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BootstrapConfig is what the API server writes about itself.
type BootstrapConfig struct {
	AdvertiseIP string // the API server's address for the kubernetes Endpoints
	Port        int
}

// bootstrap creates what every cluster has from the start: the four system
// namespaces, the built-in PriorityClasses and the kubernetes Service.
func (s *Server) bootstrap(ctx context.Context) error {
	opts := writeOptions{manager: "skiff-apiserver"}
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if err := s.ensure(ctx, namespacesGVR, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, opts); err != nil {
			return err
		}
	}
	for name, v := range map[string]int32{"system-cluster-critical": 2000000000, "system-node-critical": 2000001000} {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: v,
			Description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."}
		if name == "system-node-critical" {
			pc.Description = "Used for system critical pods that must not be moved from their current node."
		}
		if err := s.ensure(ctx, priorityClassesGVR, pc, opts); err != nil {
			return err
		}
	}
	if s.alloc == nil || s.cfg.Bootstrap.Port == 0 {
		return nil
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: s.alloc.FirstIP(),
			Ports:     []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(int32(s.cfg.Bootstrap.Port))}},
			Type:      corev1.ServiceTypeClusterIP, SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
	if err := s.ensure(ctx, servicesGVR, svc, opts); err != nil {
		return err
	}
	ip := s.cfg.Bootstrap.AdvertiseIP
	if net.ParseIP(ip) == nil {
		return nil
	}
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{"endpointslice.kubernetes.io/skip-mirror": "true"}},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: ip}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: int32(s.cfg.Bootstrap.Port), Protocol: corev1.ProtocolTCP}},
		}},
	}
	if err := s.ensureCurrent(ctx, endpointsGVR, ep, opts); err != nil {
		return err
	}
	// Proxies read EndpointSlices, so the API server keeps one for itself too.
	port, proto, name := int32(s.cfg.Bootstrap.Port), corev1.ProtocolTCP, "https"
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: "skiff-apiserver"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	return s.ensureCurrent(ctx, endpointSlicesGVR, slice, opts)
}

// ensureCurrent creates obj, or replaces what is stored when it differs
// (the API server's own address may change between starts).
func (s *Server) ensureCurrent(ctx context.Context, gvr schemaGVR, obj runtime.Object, opts writeOptions) error {
	res := s.lookup(gvr)
	if res == nil {
		return nil
	}
	m := mustMeta(obj)
	e, ok := res.cache.Get(res.key(m.GetNamespace(), m.GetName()))
	if !ok {
		return s.ensure(ctx, gvr, obj, opts)
	}
	want := obj.DeepCopyObject()
	if res.Default != nil {
		res.Default(want)
	}
	if specEqual(e.Object, want) && equalLabels(mustMeta(e.Object).GetLabels(), m.GetLabels()) {
		return nil
	}
	_, _, err := s.updateObject(ctx, res, m.GetNamespace(), m.GetName(), func(runtime.Object) (runtime.Object, error) { return obj, nil }, opts, true)
	return err
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var endpointSlicesGVR = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}

// ensure creates obj unless it exists.
func (s *Server) ensure(ctx context.Context, gvr schemaGVR, obj runtime.Object, opts writeOptions) error {
	res := s.lookup(gvr)
	if res == nil {
		return nil
	}
	m := mustMeta(obj)
	if _, ok := res.cache.Get(res.key(m.GetNamespace(), m.GetName())); ok {
		return nil
	}
	obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
	if _, err := s.createObject(ctx, res, obj, opts); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiserver: create %s %s: %w", gvr.Resource, m.GetName(), err)
	}
	return nil
}

type schemaGVR = schema.GroupVersionResource
