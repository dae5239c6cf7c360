package dns

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

const (
	kubeDNS        = "kube-dns"
	kubeSystem     = "kube-system"
	managedBy      = "skiff-dns"
	maintainPeriod = 30 * time.Second
)

// maintain keeps the kube-dns Service and this server's endpoints in place
// until ctx ends, checking again every maintainPeriod (sooner after a
// failure) in case someone deleted them.
func (s *Server) maintain(ctx context.Context) {
	wait := maintainPeriod
	for {
		if err := s.ensureKubeDNS(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Log.Warn("kube-dns service not in place", "err", err)
			wait = time.Second
		} else {
			wait = maintainPeriod
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// KubeDNSService is the selector-less kube-dns Service: the endpoints
// controllers leave it alone and each node's DNS server publishes itself.
func KubeDNSService(clusterIP string) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: kubeDNS, Namespace: kubeSystem, Labels: map[string]string{
			"k8s-app": kubeDNS, "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true",
		}},
		Spec: v1.ServiceSpec{
			Type:      v1.ServiceTypeClusterIP,
			ClusterIP: clusterIP,
			Ports: []v1.ServicePort{
				{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
}

// KubeDNSSlice is this node's EndpointSlice for kube-dns.
func KubeDNSSlice(node, ip string, port int32) *discovery.EndpointSlice {
	udp, tcp := v1.ProtocolUDP, v1.ProtocolTCP
	dnsName, dnsTCP := "dns", "dns-tcp"
	ready := true
	ep := discovery.Endpoint{Addresses: []string{ip}, Conditions: discovery.EndpointConditions{Ready: &ready}}
	if node != "" {
		ep.NodeName = &node
	}
	name := kubeDNS
	if node != "" {
		name += "-" + node
	}
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kubeSystem, Labels: map[string]string{
			discovery.LabelServiceName: kubeDNS, discovery.LabelManagedBy: managedBy,
		}},
		AddressType: discovery.AddressTypeIPv4,
		Endpoints:   []discovery.Endpoint{ep},
		Ports: []discovery.EndpointPort{
			{Name: &dnsName, Protocol: &udp, Port: &port},
			{Name: &dnsTCP, Protocol: &tcp, Port: &port},
		},
	}
}

func (s *Server) ensureKubeDNS(ctx context.Context) error {
	_, portStr, _ := net.SplitHostPort(s.cfg.ListenAddr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("%w: ListenAddr port %q", ErrConfig, portStr)
	}
	core := s.client.CoreV1()
	if _, err := core.Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kubeSystem}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("dns: namespace %s: %w", kubeSystem, err)
	}
	if _, err := core.Services(kubeSystem).Create(ctx, KubeDNSService(s.cfg.ServiceIP), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("dns: service %s: %w", kubeDNS, err)
	}
	want := KubeDNSSlice(s.cfg.NodeName, s.cfg.AdvertiseIP, int32(port))
	slices := s.client.DiscoveryV1().EndpointSlices(kubeSystem)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := slices.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = slices.Create(ctx, want, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if reflect.DeepEqual(cur.Labels, want.Labels) && reflect.DeepEqual(cur.Endpoints, want.Endpoints) && reflect.DeepEqual(cur.Ports, want.Ports) {
			return nil
		}
		cur.Labels, cur.Endpoints, cur.Ports, cur.AddressType = want.Labels, want.Endpoints, want.Ports, want.AddressType
		_, err = slices.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("dns: endpointslice %s: %w", want.Name, err)
	}
	return s.ensureEndpoints(ctx, int32(port))
}

// ensureEndpoints adds this server's address to the kube-dns Endpoints
// (older clients read those), keeping other nodes' addresses. The mirroring
// label keeps it from being copied into a second set of slices.
func (s *Server) ensureEndpoints(ctx context.Context, port int32) error {
	eps := s.client.CoreV1().Endpoints(kubeSystem)
	addr := v1.EndpointAddress{IP: s.cfg.AdvertiseIP}
	if s.cfg.NodeName != "" {
		addr.NodeName = &s.cfg.NodeName
	}
	ports := []v1.EndpointPort{{Name: "dns", Port: port, Protocol: v1.ProtocolUDP}, {Name: "dns-tcp", Port: port, Protocol: v1.ProtocolTCP}}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := eps.Get(ctx, kubeDNS, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = eps.Create(ctx, &v1.Endpoints{
				ObjectMeta: metav1.ObjectMeta{Name: kubeDNS, Namespace: kubeSystem, Labels: map[string]string{"endpointslice.kubernetes.io/skip-mirror": "true"}},
				Subsets:    []v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr}, Ports: ports}},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		var others []v1.EndpointAddress
		for _, ss := range cur.Subsets {
			for _, a := range ss.Addresses {
				if a.IP == addr.IP {
					continue
				}
				if s.cfg.NodeName != "" && a.NodeName != nil && *a.NodeName == s.cfg.NodeName {
					continue // this node's old address
				}
				others = append(others, a)
			}
		}
		subset := v1.EndpointSubset{Addresses: append(others, addr), Ports: ports}
		if len(cur.Subsets) == 1 && equalSubset(cur.Subsets[0], subset) {
			return nil
		}
		if cur.Labels == nil {
			cur.Labels = map[string]string{}
		}
		cur.Labels["endpointslice.kubernetes.io/skip-mirror"] = "true"
		cur.Subsets = []v1.EndpointSubset{subset}
		_, err = eps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

func equalSubset(a, b v1.EndpointSubset) bool {
	if len(a.Addresses) != len(b.Addresses) || len(a.Ports) != len(b.Ports) || len(a.NotReadyAddresses) != 0 {
		return false
	}
	ips := map[string]bool{}
	for _, x := range a.Addresses {
		ips[x.IP] = true
	}
	for _, x := range b.Addresses {
		if !ips[x.IP] {
			return false
		}
	}
	for i := range a.Ports {
		if a.Ports[i] != b.Ports[i] {
			return false
		}
	}
	return true
}
