package proxy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func ptr[T any](v T) *T { return &v }

type svcOpt func(*v1.Service)

func service(ns, name, ip string, opts ...svcOpt) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServiceSpec{
			Type:      v1.ServiceTypeClusterIP,
			ClusterIP: ip,
			Ports:     []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

type ep struct {
	ip                          string
	ready, serving, terminating *bool
	hostname                    string
}

func slice(ns, svc, name string, port int32, eps ...ep) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Port: ptr(port), Protocol: ptr(v1.ProtocolTCP)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discovery.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating},
		})
	}
	return s
}

func TestPortEndpoints(t *testing.T) {
	port := v1.ServicePort{Name: "http", Protocol: v1.ProtocolTCP, Port: 80}
	tr, fa := ptr(true), ptr(false)
	for _, tc := range []struct {
		name   string
		slices []*discovery.EndpointSlice
		want   string
	}{
		{"ready only, sorted numerically, nil ready counts", []*discovery.EndpointSlice{
			slice("d", "web", "a", 8080, ep{ip: "10.42.0.10"}, ep{ip: "10.42.0.9", ready: tr}, ep{ip: "10.42.0.11", ready: fa}),
		}, "[10.42.0.9:8080 10.42.0.10:8080]"},
		{"duplicates across slices once", []*discovery.EndpointSlice{
			slice("d", "web", "a", 8080, ep{ip: "10.42.0.9"}), slice("d", "web", "b", 8080, ep{ip: "10.42.0.9"}),
		}, "[10.42.0.9:8080]"},
		{"terminating ignored while any is ready", []*discovery.EndpointSlice{
			slice("d", "web", "a", 8080, ep{ip: "10.42.0.9"}, ep{ip: "10.42.0.8", ready: fa, serving: tr, terminating: tr}),
		}, "[10.42.0.9:8080]"},
		{"serving terminating when none ready", []*discovery.EndpointSlice{
			slice("d", "web", "a", 8080, ep{ip: "10.42.0.8", ready: fa, serving: tr, terminating: tr}, ep{ip: "10.42.0.7", ready: fa, serving: fa, terminating: tr}),
		}, "[10.42.0.8:8080]"},
		{"not serving, not ready: none", []*discovery.EndpointSlice{
			slice("d", "web", "a", 8080, ep{ip: "10.42.0.7", ready: fa}),
		}, "[]"},
		{"other port name ignored", func() []*discovery.EndpointSlice {
			s := slice("d", "web", "a", 8080, ep{ip: "10.42.0.9"})
			s.Ports[0].Name = ptr("metrics")
			return []*discovery.EndpointSlice{s}
		}(), "[]"},
		{"IPv6 slice ignored", func() []*discovery.EndpointSlice {
			s := slice("d", "web", "a", 8080, ep{ip: "fd00::1"})
			s.AddressType = discovery.AddressTypeIPv6
			return []*discovery.EndpointSlice{s}
		}(), "[]"},
	} {
		got := fmt.Sprint(PortEndpoints(tc.slices, port))
		if got != tc.want {
			t.Errorf("%s: PortEndpoints() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func goldenCases() map[string]Snapshot {
	tr, fa := ptr(true), ptr(false)
	base := func(svcs []*v1.Service, slices ...*discovery.EndpointSlice) Snapshot {
		return Snapshot{Services: svcs, Slices: slices, ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", LocalhostNodePorts: true}
	}
	return map[string]Snapshot{
		"clusterip": base([]*v1.Service{service("default", "web", "10.43.0.20")},
			slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12"}, ep{ip: "10.42.0.13"}, ep{ip: "10.42.0.14", ready: fa})),
		"no-endpoints": base([]*v1.Service{service("default", "web", "10.43.0.20", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		})}),
		"nodeport-affinity": base([]*v1.Service{service("default", "web", "10.43.0.20", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
			s.Spec.ExternalIPs = []string{"192.0.2.5"}
		})}, slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12"})),
		"terminating-fallback": base([]*v1.Service{service("default", "web", "10.43.0.20")},
			slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11", ready: fa, serving: tr, terminating: tr})),
		"skipped": base([]*v1.Service{
			service("default", "headless", "None"),
			service("default", "ext", "", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName; s.Spec.ExternalName = "example.com" }),
		}, slice("default", "headless", "h-1", 8080, ep{ip: "10.42.0.11"})),
		"udp-dns": base([]*v1.Service{service("kube-system", "kube-dns", "10.43.0.10", func(s *v1.Service) {
			s.Spec.Ports = []v1.ServicePort{{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP}, {Name: "dns-tcp", Port: 53, Protocol: v1.ProtocolTCP}}
		})}, &discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns-n1", Labels: map[string]string{discovery.LabelServiceName: "kube-dns"}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: ptr("dns"), Port: ptr(int32(53)), Protocol: ptr(v1.ProtocolUDP)}},
			Endpoints:   []discovery.Endpoint{{Addresses: []string{"192.168.1.5"}}},
		}),
	}
}

// TestBuildGolden pins the full rules text of representative snapshots;
// run with -update to rewrite, then read the diff.
func TestBuildGolden(t *testing.T) {
	for name, snap := range goldenCases() {
		text, _ := Render(nil, Build(snap))
		path := filepath.Join("testdata", name+".golden")
		if *update {
			if err := os.WriteFile(path, text, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test -update)", name, err)
		}
		if string(text) != string(want) {
			t.Errorf("Render(Build(%s)) =\n%s\nwant\n%s", name, text, want)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	snap := goldenCases()["clusterip"]
	a := Build(snap)
	snap.Services = append([]*v1.Service{service("a", "z", "10.43.0.99")}, snap.Services...)
	snap.Slices = append(snap.Slices, slice("a", "z", "z-1", 80, ep{ip: "10.42.1.1"}))
	rev := snap
	rev.Services = []*v1.Service{snap.Services[1], snap.Services[0]}
	rev.Slices = []*discovery.EndpointSlice{snap.Slices[1], snap.Slices[0]}
	if b, c := Build(snap), Build(rev); !reflect.DeepEqual(b, c) {
		t.Errorf("Build depends on input order:\n%v\n%v", b, c)
	}
	if reflect.DeepEqual(a, Build(snap)) {
		t.Errorf("Build ignored an added service")
	}
}

func TestRenderIncremental(t *testing.T) {
	tr := ptr(true)
	snap := goldenCases()["clusterip"]
	_, st := Render(nil, Build(snap))
	if text, _ := Render(st, Build(snap)); len(text) != 0 {
		t.Errorf("Render(same) = %q, want nothing", text)
	}
	// Endpoint 10.42.0.13 goes away: only the service chain changes and the
	// endpoint's chain is deleted.
	snap.Slices = []*discovery.EndpointSlice{slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12", ready: tr})}
	text, st2 := Render(st, Build(snap))
	key := "default/web:http/tcp"
	gone := sepChain(key, Endpoint{"10.42.0.13", 8080})
	want := "*nat\n:" + svcChain(key) + " - [0:0]\n:" + gone + " - [0:0]\n" +
		"-A " + svcChain(key) + " ! -s 10.42.0.0/16 -d 10.43.0.20/32 -p tcp -m tcp --dport 80 -j SKIFF-MARK-MASQ\n" +
		"-A " + svcChain(key) + " -m statistic --mode random --probability 0.5000000000 -j " + sepChain(key, Endpoint{"10.42.0.11", 8080}) + "\n" +
		"-A " + svcChain(key) + " -j " + sepChain(key, Endpoint{"10.42.0.12", 8080}) + "\n" +
		"-X " + gone + "\nCOMMIT\n"
	if string(text) != want {
		t.Errorf("Render(one endpoint removed) =\n%s\nwant\n%s", text, want)
	}
	if _, ok := st2["nat"][gone]; ok {
		t.Errorf("state after removal still has %s", gone)
	}
}

func TestParseSaveRewritesUnknown(t *testing.T) {
	save := "*filter\n:INPUT ACCEPT [0:0]\n:SKIFF-FORWARD - [0:0]\n-A SKIFF-FORWARD -j ACCEPT\nCOMMIT\n*nat\n:SKIFF-SVC-OLD - [0:0]\n:SKIFF-SERVICES - [0:0]\nCOMMIT\n"
	st := ParseSave([]byte(save))
	want := State{"filter": {"SKIFF-FORWARD": unknown}, "nat": {"SKIFF-SVC-OLD": unknown, "SKIFF-SERVICES": unknown}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("ParseSave() = %v, want %v", st, want)
	}
	text, _ := Render(st, Build(Snapshot{}))
	for _, line := range []string{":SKIFF-FORWARD - [0:0]", ":SKIFF-SVC-OLD - [0:0]", "-X SKIFF-SVC-OLD", "-A SKIFF-SERVICES -m addrtype --dst-type LOCAL -j SKIFF-NODEPORTS"} {
		if !strings.Contains(string(text), line+"\n") {
			t.Errorf("Render(after ParseSave) lacks %q:\n%s", line, text)
		}
	}
}
