package dns

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

// mapCatalog is a Catalog over plain maps.
type mapCatalog struct {
	svcs   map[string]*v1.Service
	slices map[string][]*discovery.EndpointSlice
}

func (c mapCatalog) Service(ns, name string) (*v1.Service, bool) {
	s, ok := c.svcs[ns+"/"+name]
	return s, ok
}

func (c mapCatalog) Slices(ns, svc string) []*discovery.EndpointSlice { return c.slices[ns+"/"+svc] }

func testCatalog() mapCatalog {
	svc := func(name, ip string, ports ...v1.ServicePort) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: v1.ServiceSpec{ClusterIP: ip, Type: v1.ServiceTypeClusterIP, Ports: ports}}
	}
	web := svc("web", "10.43.0.20", v1.ServicePort{Name: "http", Port: 80, Protocol: v1.ProtocolTCP})
	db := svc("db", "None", v1.ServicePort{Name: "pg", Port: 5432, Protocol: v1.ProtocolTCP})
	ext := svc("ext", "")
	ext.Spec.Type, ext.Spec.ExternalName = v1.ServiceTypeExternalName, "example.com"
	slice := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "db-1", Labels: map[string]string{discovery.LabelServiceName: "db"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(v1.ProtocolTCP)}},
		Endpoints: []discovery.Endpoint{
			{Addresses: []string{"10.42.0.12"}, Hostname: ptr("db-0")},
			{Addresses: []string{"10.42.0.11"}, Conditions: discovery.EndpointConditions{Ready: ptr(true)}},
			{Addresses: []string{"10.42.0.13"}, Hostname: ptr("db-2"), Conditions: discovery.EndpointConditions{Ready: ptr(false)}},
		},
	}
	return mapCatalog{
		svcs:   map[string]*v1.Service{"default/web": web, "default/db": db, "default/ext": ext},
		slices: map[string][]*discovery.EndpointSlice{"default/db": {slice}},
	}
}

// rrs renders a section as sorted "name type value" strings.
func rrs(section []dns.RR) []string {
	out := []string{}
	for _, rr := range section {
		f := strings.Fields(rr.String())
		out = append(out, f[0]+" "+f[3]+" "+strings.Join(f[4:], " "))
	}
	sort.Strings(out)
	return out
}

func TestAnswer(t *testing.T) {
	z := NewZone("cluster.local", testCatalog())
	for _, tc := range []struct {
		name    string
		qtype   uint16
		rcode   int
		answer  []string
		extra   []string
		soaInNs bool
	}{
		{"web.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"web.default.svc.cluster.local. A 10.43.0.20"}, nil, false},
		{"WEB.Default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"web.default.svc.cluster.local. A 10.43.0.20"}, nil, false},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{}, nil, true},
		{"db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"db.default.svc.cluster.local. A 10.42.0.11", "db.default.svc.cluster.local. A 10.42.0.12"}, nil, false},
		{"db-0.db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"db-0.db.default.svc.cluster.local. A 10.42.0.12"}, nil, false},
		{"10-42-0-11.db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10-42-0-11.db.default.svc.cluster.local. A 10.42.0.11"}, nil, false},
		{"db-2.db.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, []string{}, nil, true},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, []string{"_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."}, nil, false},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 10-42-0-11.db.default.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 db-0.db.default.svc.cluster.local."},
			[]string{"10-42-0-11.db.default.svc.cluster.local. A 10.42.0.11", "db-0.db.default.svc.cluster.local. A 10.42.0.12"}, false},
		{"_http._udp.web.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError, []string{}, nil, true},
		{"ext.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"ext.default.svc.cluster.local. CNAME example.com."}, nil, false},
		{"nope.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, []string{}, nil, true},
		{"web.other.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, []string{}, nil, true},
		{"default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{}, nil, true},
		{"10-42-0-5.default.pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10-42-0-5.default.pod.cluster.local. A 10.42.0.5"}, nil, false},
		{"x.y.z.cluster.local.", dns.TypeA, dns.RcodeNameError, []string{}, nil, true},
	} {
		req := new(dns.Msg)
		req.SetQuestion(tc.name, tc.qtype)
		m := z.Answer(req)
		hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == dns.TypeSOA
		if m.Rcode != tc.rcode || !reflect.DeepEqual(rrs(m.Answer), tc.answer) || hasSOA != tc.soaInNs || !m.Authoritative {
			t.Errorf("Answer(%s %s) = rcode %s answer %q soa %v aa %v, want %s %q soa %v aa",
				tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[m.Rcode], rrs(m.Answer), hasSOA, m.Authoritative, dns.RcodeToString[tc.rcode], tc.answer, tc.soaInNs)
		}
		if tc.extra != nil && !reflect.DeepEqual(rrs(m.Extra), tc.extra) {
			t.Errorf("Answer(%s SRV) extra = %q, want %q", tc.name, rrs(m.Extra), tc.extra)
		}
	}
}

func TestInZone(t *testing.T) {
	z := NewZone("cluster.local", testCatalog())
	for name, want := range map[string]bool{"web.default.svc.cluster.local.": true, "Cluster.Local.": true, "example.com.": false, "notcluster.local.": false} {
		if got := z.InZone(name); got != want {
			t.Errorf("InZone(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		conf, self string
		want       []string
	}{
		{"nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch x\n", "", []string{"192.0.2.1:53", "192.0.2.2:53"}},
		{"# c\nnameserver 192.0.2.1\nnameserver 10.0.0.5\n", "10.0.0.5:53", []string{"192.0.2.1:53"}},
		{"nameserver 2001:db8::1\n", "", []string{"[2001:db8::1]:53"}},
		{"options ndots:5\n", "", nil},
	} {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Upstreams(p, tc.self)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Upstreams(%q, %q) = %v, %v, want %v", tc.conf, tc.self, got, err, tc.want)
		}
	}
	if _, err := Upstreams(filepath.Join(dir, "missing"), ""); err == nil {
		t.Errorf("Upstreams(missing) = nil error, want one")
	}
}

func BenchmarkAnswer(b *testing.B) {
	z := NewZone("cluster.local", testCatalog())
	req := new(dns.Msg)
	req.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	for b.Loop() {
		if m := z.Answer(req); len(m.Answer) != 1 {
			b.Fatal(fmt.Sprint(m))
		}
	}
}
