package dns_test

import (
	"context"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/internal/testcluster"
	skiffdns "github.com/skiff-org/skiff/pkg/dns"
)

func ptr[T any](v T) *T { return &v }

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

// freeAddr finds a loopback port free for both UDP and TCP.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// fakeUpstream answers every A query with 192.0.2.1 and counts queries.
func fakeUpstream(t testing.TB) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		n.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &n
}

// startServer runs a DNS server against cs and returns its address once it
// answers.
func startServer(t testing.TB, cs kubernetes.Interface, upstream string, manage bool) string {
	t.Helper()
	addr := freeAddr(t)
	s, err := skiffdns.New(cs, skiffdns.Config{ListenAddr: addr, Upstream: []string{upstream}, NodeName: "n1", ManageService: manage, AdvertiseIP: "192.168.77.1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns Run() = %v", err)
		}
	})
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("cluster.local.", dns.TypeSOA)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := c.Exchange(m, addr); err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dns server on %s not answering", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func query(t *testing.T, net, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return r
}

// eventually repeats a query until check accepts the answer (informers
// deliver API writes asynchronously).
func eventually(t *testing.T, addr, name string, qtype uint16, check func(*dns.Msg) bool) *dns.Msg {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := query(t, "udp", addr, name, qtype)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s %s: last answer %v", name, dns.TypeToString[qtype], r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerAgainstAPI(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	cs := c.Client
	up, upCount := fakeUpstream(t)
	addr := startServer(t, cs, up, true)

	web, err := cs.CoreV1().Services("default").Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec:       v1.ServiceSpec{ClusterIP: v1.ClusterIPNone, Ports: []v1.ServicePort{{Name: "pg", Port: 5432, Protocol: v1.ProtocolTCP}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Namespace: "default", Labels: map[string]string{discovery.LabelServiceName: "db"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(v1.ProtocolTCP)}},
		Endpoints: []discovery.Endpoint{
			{Addresses: []string{"10.42.0.11"}, Hostname: ptr("db-0"), Conditions: discovery.EndpointConditions{Ready: ptr(true)}},
			{Addresses: []string{"10.42.0.12"}, Hostname: ptr("db-1"), Conditions: discovery.EndpointConditions{Ready: ptr(true)}},
			{Addresses: []string{"10.42.0.13"}, Hostname: ptr("db-2"), Conditions: discovery.EndpointConditions{Ready: ptr(false)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := eventually(t, addr, "web.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	if got := r.Answer[0].(*dns.A).A.String(); got != web.Spec.ClusterIP {
		t.Errorf("A web = %s, want the ClusterIP %s", got, web.Spec.ClusterIP)
	}
	r = query(t, "tcp", addr, "web.default.svc.cluster.local.", dns.TypeA)
	if len(r.Answer) != 1 {
		t.Errorf("A web over TCP = %v, want one record", r)
	}
	r = eventually(t, addr, "db.default.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) > 0 })
	if got := rrs(r.Answer); len(got) != 2 || got[0] != "db.default.svc.cluster.local. A 10.42.0.11" || got[1] != "db.default.svc.cluster.local. A 10.42.0.12" {
		t.Errorf("A db (headless) = %q, want the two ready endpoints", got)
	}
	r = query(t, "udp", addr, "db-1.db.default.svc.cluster.local.", dns.TypeA)
	if got := rrs(r.Answer); len(got) != 1 || got[0] != "db-1.db.default.svc.cluster.local. A 10.42.0.12" {
		t.Errorf("A db-1.db = %q, want 10.42.0.12", got)
	}
	r = query(t, "udp", addr, "_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Port != 80 || r.Answer[0].(*dns.SRV).Target != "web.default.svc.cluster.local." {
		t.Errorf("SRV _http._tcp.web = %v, want port 80 at web.default.svc.cluster.local.", r.Answer)
	}
	r = query(t, "udp", addr, "missing.default.svc.cluster.local.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("A missing = %s with authority %v, want NXDOMAIN with SOA", dns.RcodeToString[r.Rcode], r.Ns)
	}
	before := upCount.Load()
	r = query(t, "udp", addr, "example.com.", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" || upCount.Load() != before+1 {
		t.Errorf("A example.com = %v (upstream asked %d times), want 192.0.2.1 from the upstream once", r.Answer, upCount.Load()-before)
	}

	// The server published itself as kube-dns.
	r = eventually(t, addr, "kube-dns.kube-system.svc.cluster.local.", dns.TypeA, func(m *dns.Msg) bool { return len(m.Answer) == 1 })
	if got := r.Answer[0].(*dns.A).A.String(); got != "10.43.0.10" {
		t.Errorf("kube-dns ClusterIP = %s, want 10.43.0.10", got)
	}
	var sl *discovery.EndpointSlice
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if sl, err = cs.DiscoveryV1().EndpointSlices("kube-system").Get(ctx, "kube-dns-n1", metav1.GetOptions{}); err == nil {
			break
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	if err != nil || len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "192.168.77.1" || strconv.Itoa(int(*sl.Ports[0].Port)) != port {
		t.Errorf("kube-dns slice = %v, %v, want 192.168.77.1 port %s", sl, err, port)
	}
	var ep *v1.Endpoints
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ep, err = cs.CoreV1().Endpoints("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{}); err == nil {
			break
		}
	}
	if err != nil || len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != "192.168.77.1" {
		t.Errorf("kube-dns endpoints = %v, %v, want 192.168.77.1", ep, err)
	}
	svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil || svc.Spec.Selector != nil || len(svc.Spec.Ports) != 3 {
		t.Errorf("kube-dns service = %v, %v, want selector-less with dns, dns-tcp and metrics", svc, err)
	}
}

// BenchmarkUDPQueries measures answers per second for a service name over
// loopback UDP, with 16 concurrent clients.
func BenchmarkUDPQueries(b *testing.B) {
	c := testcluster.Start(b, testcluster.Options{})
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	up, _ := fakeUpstream(b)
	addr := startServer(b, c.Client, up, false)
	const clients = 16
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N/clients + 1
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				failed.Add(int64(per))
				return
			}
			defer conn.Close()
			co := &dns.Conn{Conn: conn}
			m := new(dns.Msg)
			m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
			for range per {
				_ = conn.SetDeadline(time.Now().Add(time.Second))
				if err := co.WriteMsg(m); err != nil {
					failed.Add(1)
					continue
				}
				r, err := co.ReadMsg()
				if err != nil || len(r.Answer) != 1 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(per*clients)/el.Seconds(), "answers/s")
	if f := failed.Load(); f > int64(per*clients)/100 {
		b.Fatalf("%d of %d queries failed", f, per*clients)
	}
}
