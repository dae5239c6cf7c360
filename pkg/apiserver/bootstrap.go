package apiserver

import (
	"context"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
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
	if res := s.lookup(endpointsGVR); res != nil {
		if e, ok := res.cache.Get(res.key("default", "kubernetes")); ok {
			if cur := e.Object.(*corev1.Endpoints); len(cur.Subsets) == 1 && len(cur.Subsets[0].Addresses) == 1 &&
				cur.Subsets[0].Addresses[0].IP == ip && cur.Subsets[0].Ports[0].Port == int32(s.cfg.Bootstrap.Port) {
				return nil
			}
			_, _, err := s.updateObject(ctx, res, "default", "kubernetes", func(runtime.Object) (runtime.Object, error) { return ep, nil }, opts, true)
			return err
		}
	}
	return s.ensure(ctx, endpointsGVR, ep, opts)
}

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
