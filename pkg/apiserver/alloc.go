package apiserver

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-org/skiff/pkg/storage"
)

// Service ClusterIPs and NodePorts are allocated by writing one key per
// address or port in the same etcd transaction as the Service, so an
// allocation is never lost or doubled across a crash.
const (
	ipKeyPrefix   = "/registry/ranges/serviceips/"
	portKeyPrefix = "/registry/ranges/servicenodeports/"
)

type allocator struct {
	mu     sync.Mutex
	loaded bool
	ips    map[string]bool // in use or being committed
	ports  map[int]bool

	store            *storage.Store
	cidr             *net.IPNet
	base             uint32
	size             uint32
	portMin, portMax int
}

func newAllocator(store *storage.Store, cidr *net.IPNet, portMin, portMax int) *allocator {
	ones, bits := cidr.Mask.Size()
	return &allocator{
		store: store, cidr: cidr,
		base: binary.BigEndian.Uint32(cidr.IP.To4()), size: uint32(1) << uint(bits-ones),
		portMin: portMin, portMax: portMax,
	}
}

func (a *allocator) loadLocked(ctx context.Context) error {
	if a.loaded {
		return nil
	}
	a.ips, a.ports = map[string]bool{}, map[int]bool{}
	keys, err := a.store.Keys(ctx, ipKeyPrefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		a.ips[strings.TrimPrefix(k, ipKeyPrefix)] = true
	}
	if keys, err = a.store.Keys(ctx, portKeyPrefix); err != nil {
		return err
	}
	for _, k := range keys {
		p, _ := strconv.Atoi(strings.TrimPrefix(k, portKeyPrefix))
		a.ports[p] = true
	}
	a.loaded = true
	return nil
}

// FirstIP is the kubernetes Service's address: the first of the range.
func (a *allocator) FirstIP() string { return a.ipAt(1) }

func (a *allocator) ipAt(i uint32) string {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, a.base+i)
	return b.String()
}

func (a *allocator) inRange(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && p.To4() != nil && a.cidr.Contains(p) && !p.Equal(a.cidr.IP) && p.String() != a.ipAt(a.size-1)
}

// allocate fills in a Service's ClusterIP and NodePorts as needed and returns
// the keys to write with it. commit(true) keeps the reservation, commit(false)
// forgets it.
func (s *Server) allocate(ctx context.Context, res *resource, obj, old runtime.Object) ([]storage.Side, func(bool), error) {
	svc, ok := obj.(*corev1.Service)
	if !ok || s.alloc == nil {
		return nil, func(bool) {}, nil
	}
	var oldSvc *corev1.Service
	if old != nil {
		oldSvc = old.(*corev1.Service)
	}
	return s.alloc.forService(ctx, res.key(svc.Namespace, svc.Name), svc, oldSvc)
}

// release returns the keys that free a deleted Service's allocations.
func (s *Server) release(ctx context.Context, res *resource, obj runtime.Object) ([]storage.Side, func(bool)) {
	svc, ok := obj.(*corev1.Service)
	if !ok || s.alloc == nil {
		return nil, func(bool) {}
	}
	a := s.alloc
	var sides []storage.Side
	var ips []string
	var ports []int
	for _, ip := range svc.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			sides = append(sides, storage.Side{Key: ipKeyPrefix + ip})
			ips = append(ips, ip)
		}
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			sides = append(sides, storage.Side{Key: portKeyPrefix + strconv.Itoa(int(p.NodePort))})
			ports = append(ports, int(p.NodePort))
		}
	}
	return sides, func(ok bool) {
		if !ok {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, ip := range ips {
			delete(a.ips, ip)
		}
		for _, p := range ports {
			delete(a.ports, p)
		}
	}
}

func (a *allocator) forService(ctx context.Context, key string, svc, old *corev1.Service) ([]storage.Side, func(bool), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.loadLocked(ctx); err != nil {
		return nil, nil, err
	}
	var sides []storage.Side
	var newIPs []string
	var newPorts, freedPorts []int
	var errs field.ErrorList
	rollback := func() {
		for _, ip := range newIPs {
			delete(a.ips, ip)
		}
		for _, p := range newPorts {
			delete(a.ports, p)
		}
	}
	// ClusterIP: allocated once, on create (it is immutable afterwards).
	if old == nil && svc.Spec.Type != corev1.ServiceTypeExternalName {
		ip := svc.Spec.ClusterIP
		path := field.NewPath("spec", "clusterIPs").Index(0)
		switch {
		case ip == corev1.ClusterIPNone:
		case ip == "":
			free := a.freeIPLocked()
			if free == "" {
				errs = append(errs, field.Invalid(path, "", fmt.Sprintf("failed to allocate IP: range is full")))
				break
			}
			ip = free
			fallthrough
		default:
			if !a.inRange(ip) {
				errs = append(errs, field.Invalid(path, ip, fmt.Sprintf("failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", ip, ip, a.cidr)))
				break
			}
			if a.ips[ip] {
				errs = append(errs, field.Invalid(path, ip, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", ip)))
				break
			}
			a.ips[ip] = true
			newIPs = append(newIPs, ip)
			sides = append(sides, storage.Side{Key: ipKeyPrefix + ip, Value: []byte(key), MustNotExist: true})
			svc.Spec.ClusterIP = ip
		}
		if svc.Spec.ClusterIP != "" {
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		}
	}
	// NodePorts: wanted for NodePort and LoadBalancer Services.
	held := map[int]bool{}
	if old != nil {
		for _, p := range old.Spec.Ports {
			if p.NodePort != 0 {
				held[int(p.NodePort)] = true
			}
		}
	}
	wantPorts := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	keep := map[int]bool{}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		if !wantPorts {
			p.NodePort = 0
			continue
		}
		n := int(p.NodePort)
		if n != 0 && held[n] {
			keep[n] = true
			continue
		}
		if n == 0 {
			if n = a.freePortLocked(); n == 0 {
				errs = append(errs, field.Invalid(path, 0, "failed to allocate a nodePort: range is full"))
				continue
			}
		} else if n < a.portMin || n > a.portMax {
			errs = append(errs, field.Invalid(path, n, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", a.portMin, a.portMax)))
			continue
		} else if a.ports[n] {
			errs = append(errs, field.Invalid(path, n, "provided port is already allocated"))
			continue
		}
		a.ports[n] = true
		keep[n] = true
		newPorts = append(newPorts, n)
		p.NodePort = int32(n)
		sides = append(sides, storage.Side{Key: portKeyPrefix + strconv.Itoa(n), Value: []byte(key), MustNotExist: true})
	}
	for n := range held {
		if !keep[n] {
			freedPorts = append(freedPorts, n)
			sides = append(sides, storage.Side{Key: portKeyPrefix + strconv.Itoa(n)})
		}
	}
	if len(errs) > 0 {
		rollback()
		return nil, nil, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), svc.Name, errs)
	}
	return sides, func(ok bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !ok {
			rollback()
			return
		}
		for _, p := range freedPorts {
			delete(a.ports, p)
		}
	}, nil
}

func (a *allocator) freeIPLocked() string {
	if a.size < 4 {
		return ""
	}
	n := a.size - 2 // neither the network nor the broadcast address
	start := uint32(rand.Int63n(int64(n)))
	for i := uint32(0); i < n; i++ {
		ip := a.ipAt(1 + (start+i)%n)
		// The first addresses are kept for the kubernetes and DNS Services.
		if off := 1 + (start+i)%n; off <= 10 {
			continue
		}
		if !a.ips[ip] {
			return ip
		}
	}
	return ""
}

func (a *allocator) freePortLocked() int {
	n := a.portMax - a.portMin + 1
	start := rand.Intn(n)
	for i := 0; i < n; i++ {
		p := a.portMin + (start+i)%n
		if !a.ports[p] {
			return p
		}
	}
	return 0
}
