package proxy

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// TestBuildNFTGolden pins the whole nftables table of the same snapshots
// the iptables rules are pinned for; run with -update to rewrite, then read
// the diff.
func TestBuildNFTGolden(t *testing.T) {
	for name, snap := range goldenCases() {
		text := buildNFT(snap).String()
		path := filepath.Join("testdata", "nft-"+name+".golden")
		if *update {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test -update)", name, err)
		}
		if text != string(want) {
			t.Errorf("buildNFT(%s) =\n%s\nwant\n%s", name, text, want)
		}
	}
}

// TestBuildNFT checks the parts of the table that carry the semantics, one
// snapshot at a time.
func TestBuildNFT(t *testing.T) {
	tr, fa := ptr(true), ptr(false)
	const web = "default/web/tcp/80"
	nodePort := func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort; s.Spec.Ports[0].NodePort = 30080 }
	for _, tc := range []struct {
		name string
		snap Snapshot
		// want are lines of the table's text that must be there; absent
		// are substrings that must not.
		want, absent []string
	}{
		{
			name: "ClusterIP spreads over the ready endpoints",
			snap: snapOf([]*v1.Service{service("default", "web", "10.43.0.20")},
				slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.12"}, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.13", ready: fa})),
			want: []string{
				`10.43.0.20 . tcp . 80 comment "default/web:http" : goto svc-` + web,
				"ip saddr != 10.42.0.0/16 ip daddr 10.43.0.20 meta l4proto tcp th dport 80 jump mark-for-masquerade",
				"numgen random mod 2 vmap @endpoints-" + web + "\n",
				"map endpoints-" + web + " {\n\t\ttype integer : verdict\n\t\t0 : goto sep-" + web + "__10.42.0.11/8080\n\t\t1 : goto sep-" + web + "__10.42.0.12/8080\n",
				"chain sep-" + web + "__10.42.0.11/8080 {",
				"ip saddr 10.42.0.11 jump mark-for-masquerade",
				"meta l4proto tcp dnat to 10.42.0.11:8080",
			},
			absent: []string{"10.42.0.13", "ext-", "aff-"},
		},
		{
			name:   "one endpoint: goto, no numgen",
			snap:   snapOf([]*v1.Service{service("default", "web", "10.43.0.20")}, slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"})),
			want:   []string{"goto sep-" + web + "__10.42.0.11/8080"},
			absent: []string{"numgen", "map endpoints-"},
		},
		{
			name: "node port and external IP go through the ext chain, which masquerades",
			snap: snapOf([]*v1.Service{service("default", "web", "10.43.0.20", nodePort, func(s *v1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.5", "fd00::1"} })},
				slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"})),
			want: []string{
				`10.43.0.20 . tcp . 80 comment "default/web:http" : goto svc-` + web,
				`192.0.2.5 . tcp . 80 comment "default/web:http" : goto ext-` + web,
				`tcp . 30080 comment "default/web:http" : goto ext-` + web,
				"chain ext-" + web + " {\n\t\tjump mark-for-masquerade\n\t\tgoto svc-" + web + "\n",
			},
			absent: []string{"fd00"},
		},
		{
			name: "session affinity: checks before the pick, update before the dnat",
			snap: snapOf([]*v1.Service{service("default", "web", "10.43.0.20", func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
			})}, slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12"})),
			want: []string{
				"set aff-" + web + "__10.42.0.11/8080 {\n\t\ttype ipv4_addr; flags dynamic,timeout\n",
				"chain svc-" + web + " {\n\t\tip saddr != 10.42.0.0/16 ip daddr 10.43.0.20 meta l4proto tcp th dport 80 jump mark-for-masquerade\n" +
					"\t\tip saddr @aff-" + web + "__10.42.0.11/8080 goto sep-" + web + "__10.42.0.11/8080\n" +
					"\t\tip saddr @aff-" + web + "__10.42.0.12/8080 goto sep-" + web + "__10.42.0.12/8080\n" +
					"\t\tnumgen random mod 2 vmap",
				"ip saddr 10.42.0.11 jump mark-for-masquerade\n\t\tupdate @aff-" + web + "__10.42.0.11/8080 { ip saddr timeout 60s }\n\t\tmeta l4proto tcp dnat to 10.42.0.11:8080",
			},
		},
		{
			name: "affinity timeout defaults to three hours",
			snap: snapOf([]*v1.Service{service("default", "web", "10.43.0.20", func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP })},
				slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"})),
			want: []string{"timeout 10800s"},
		},
		{
			name: "no endpoints: rejected, node port too",
			snap: snapOf([]*v1.Service{service("default", "web", "10.43.0.20", nodePort)}, slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11", ready: fa})),
			want: []string{
				`10.43.0.20 . tcp . 80 comment "default/web:http has no endpoints" : goto reject-service`,
				`tcp . 30080 comment "default/web:http has no endpoints" : goto reject-service`,
			},
			absent: []string{"svc-", "sep-", "ext-"},
		},
		{
			name: "terminating endpoints serve when none is ready",
			snap: snapOf([]*v1.Service{service("default", "web", "10.43.0.20")},
				slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11", ready: fa, serving: tr, terminating: tr})),
			want: []string{"meta l4proto tcp dnat to 10.42.0.11:8080"},
		},
		{
			name: "UDP and TCP ports of one service",
			snap: goldenCases()["udp-dns"],
			want: []string{
				`10.43.0.10 . udp . 53 comment "kube-system/kube-dns:dns" : goto svc-kube-system/kube-dns/udp/53`,
				`10.43.0.10 . tcp . 53 comment "kube-system/kube-dns:dns-tcp has no endpoints" : goto reject-service`,
				"meta l4proto udp dnat to 192.168.1.5:53",
			},
		},
		{
			name:   "headless and ExternalName are not proxied",
			snap:   goldenCases()["skipped"],
			absent: []string{"svc-", "headless", "ext/"},
		},
		{
			name: "the first of two services with one external IP and port wins",
			snap: snapOf([]*v1.Service{
				service("b", "web", "10.43.0.21", func(s *v1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.5"} }),
				service("a", "web", "10.43.0.20", func(s *v1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.5"} }),
			}, slice("a", "web", "a-1", 8080, ep{ip: "10.42.0.11"}), slice("b", "web", "b-1", 8080, ep{ip: "10.42.0.12"})),
			want: []string{`192.0.2.5 . tcp . 80 comment "a/web:http" : goto ext-a/web/tcp/80`},
		},
		{
			name:   "no service CIDR: no catch-all reject; no cluster CIDR: no masquerade of outside callers",
			snap:   Snapshot{Services: []*v1.Service{service("default", "web", "10.43.0.20")}, Slices: []*discovery.EndpointSlice{slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"})}},
			absent: []string{"ip daddr 10.43.0.0/16", "ip saddr != ", "127.0.0.0/8"},
		},
		{
			name: "localhost node ports: martian loopback traffic dropped",
			snap: snapOf(nil),
			want: []string{"ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state ! established,related ct status ! dnat drop"},
		},
	} {
		text := buildNFT(tc.snap).String()
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: buildNFT() lacks %q:\n%s", tc.name, w, text)
			}
		}
		for _, a := range tc.absent {
			if strings.Contains(text, a) {
				t.Errorf("%s: buildNFT() has %q:\n%s", tc.name, a, text)
			}
		}
	}
}

func snapOf(svcs []*v1.Service, slices ...*discovery.EndpointSlice) Snapshot {
	return Snapshot{Services: svcs, Slices: slices, ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", LocalhostNodePorts: true}
}

// TestPlanIncremental pins the transaction for each kind of change: only
// the changed service's objects are touched.
func TestPlanIncremental(t *testing.T) {
	const web = "default/web/tcp/80"
	sep := func(ip string) string { return "sep-" + web + "__" + ip + "/8080" }
	websvc := func(opts ...svcOpt) *v1.Service { return service("default", "web", "10.43.0.20", opts...) }
	other := service("default", "other", "10.43.0.30")
	otherSlice := slice("default", "other", "other-1", 9090, ep{ip: "10.42.0.31"})
	three := slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12"}, ep{ip: "10.42.0.13"})
	two := slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12"})
	svcA, svcB := websvc(), other
	before := snapOf([]*v1.Service{svcA, svcB}, three, otherSlice)
	for _, tc := range []struct {
		name  string
		after Snapshot
		want  string
	}{
		{"nothing changed", before, ""},
		{"the same objects in another order", snapOf([]*v1.Service{svcB, svcA}, otherSlice, three), ""},
		{"an endpoint leaves", snapOf([]*v1.Service{svcA, svcB}, two, otherSlice), "" +
			"flush chain svc-" + web + "\n" +
			"add rule svc-" + web + " ip saddr != 10.42.0.0/16 ip daddr 10.43.0.20 meta l4proto tcp th dport 80 jump mark-for-masquerade\n" +
			"add rule svc-" + web + " numgen random mod 2 vmap @endpoints-" + web + "\n" +
			"delete element endpoints-" + web + " { 2 }\n" +
			"flush chain " + sep("10.42.0.13") + "\n" +
			"delete chain " + sep("10.42.0.13") + "\n"},
		{"an endpoint joins", snapOf([]*v1.Service{svcA, svcB}, slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}, ep{ip: "10.42.0.12"}, ep{ip: "10.42.0.13"}, ep{ip: "10.42.0.14"}), otherSlice), "" +
			"add chain " + sep("10.42.0.14") + "\n" +
			"flush chain svc-" + web + "\n" +
			"add rule " + sep("10.42.0.14") + " ip saddr 10.42.0.14 jump mark-for-masquerade\n" +
			"add rule " + sep("10.42.0.14") + " meta l4proto tcp dnat to 10.42.0.14:8080\n" +
			"add rule svc-" + web + " ip saddr != 10.42.0.0/16 ip daddr 10.43.0.20 meta l4proto tcp th dport 80 jump mark-for-masquerade\n" +
			"add rule svc-" + web + " numgen random mod 4 vmap @endpoints-" + web + "\n" +
			"add element endpoints-" + web + " { 3 : goto " + sep("10.42.0.14") + " }\n"},
		{"the last endpoint leaves", snapOf([]*v1.Service{svcA, svcB}, slice("default", "web", "web-1", 8080), otherSlice), "" +
			"add element no-endpoint-services { 10.43.0.20 . tcp . 80 : goto reject-service }\n" +
			"delete element service-ips { 10.43.0.20 . tcp . 80 }\n" +
			"flush chain " + sep("10.42.0.11") + "\n" +
			"flush chain " + sep("10.42.0.12") + "\n" +
			"flush chain " + sep("10.42.0.13") + "\n" +
			"flush chain svc-" + web + "\n" +
			"delete set endpoints-" + web + "\n" +
			"delete chain " + sep("10.42.0.11") + "\n" +
			"delete chain " + sep("10.42.0.12") + "\n" +
			"delete chain " + sep("10.42.0.13") + "\n" +
			"delete chain svc-" + web + "\n"},
		{"a service goes", snapOf([]*v1.Service{svcA}, three), "" +
			"delete element service-ips { 10.43.0.30 . tcp . 80 }\n" +
			"flush chain sep-default/other/tcp/80__10.42.0.31/9090\n" +
			"flush chain svc-default/other/tcp/80\n" +
			"delete chain sep-default/other/tcp/80__10.42.0.31/9090\n" +
			"delete chain svc-default/other/tcp/80\n"},
		{"its ClusterIP goes to a new service", snapOf([]*v1.Service{svcA, service("default", "new", "10.43.0.30")}, three, slice("default", "new", "new-1", 9090, ep{ip: "10.42.0.31"})), "" +
			"add chain sep-default/new/tcp/80__10.42.0.31/9090\n" +
			"add chain svc-default/new/tcp/80\n" +
			"add rule sep-default/new/tcp/80__10.42.0.31/9090 ip saddr 10.42.0.31 jump mark-for-masquerade\n" +
			"add rule sep-default/new/tcp/80__10.42.0.31/9090 meta l4proto tcp dnat to 10.42.0.31:9090\n" +
			"add rule svc-default/new/tcp/80 ip saddr != 10.42.0.0/16 ip daddr 10.43.0.30 meta l4proto tcp th dport 80 jump mark-for-masquerade\n" +
			"add rule svc-default/new/tcp/80 goto sep-default/new/tcp/80__10.42.0.31/9090\n" +
			"delete element service-ips { 10.43.0.30 . tcp . 80 }\n" +
			"add element service-ips { 10.43.0.30 . tcp . 80 : goto svc-default/new/tcp/80 }\n" +
			"flush chain sep-default/other/tcp/80__10.42.0.31/9090\n" +
			"flush chain svc-default/other/tcp/80\n" +
			"delete chain sep-default/other/tcp/80__10.42.0.31/9090\n" +
			"delete chain svc-default/other/tcp/80\n"},
		{"affinity is turned on", snapOf([]*v1.Service{websvc(func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP }), svcB}, two, otherSlice), "" +
			"add set aff-" + web + "__10.42.0.11/8080 { type ipv4_addr; flags dynamic,timeout }\n" +
			"add set aff-" + web + "__10.42.0.12/8080 { type ipv4_addr; flags dynamic,timeout }\n" +
			"flush chain " + sep("10.42.0.11") + "\n" +
			"flush chain " + sep("10.42.0.12") + "\n" +
			"flush chain svc-" + web + "\n" +
			"add rule " + sep("10.42.0.11") + " ip saddr 10.42.0.11 jump mark-for-masquerade\n" +
			"add rule " + sep("10.42.0.11") + " update @aff-" + web + "__10.42.0.11/8080 { ip saddr timeout 10800s }\n" +
			"add rule " + sep("10.42.0.11") + " meta l4proto tcp dnat to 10.42.0.11:8080\n" +
			"add rule " + sep("10.42.0.12") + " ip saddr 10.42.0.12 jump mark-for-masquerade\n" +
			"add rule " + sep("10.42.0.12") + " update @aff-" + web + "__10.42.0.12/8080 { ip saddr timeout 10800s }\n" +
			"add rule " + sep("10.42.0.12") + " meta l4proto tcp dnat to 10.42.0.12:8080\n" +
			"add rule svc-" + web + " ip saddr != 10.42.0.0/16 ip daddr 10.43.0.20 meta l4proto tcp th dport 80 jump mark-for-masquerade\n" +
			"add rule svc-" + web + " ip saddr @aff-" + web + "__10.42.0.11/8080 goto " + sep("10.42.0.11") + "\n" +
			"add rule svc-" + web + " ip saddr @aff-" + web + "__10.42.0.12/8080 goto " + sep("10.42.0.12") + "\n" +
			"add rule svc-" + web + " numgen random mod 2 vmap @endpoints-" + web + "\n" +
			"delete element endpoints-" + web + " { 2 }\n" +
			"flush chain " + sep("10.42.0.13") + "\n" +
			"delete chain " + sep("10.42.0.13") + "\n"},
	} {
		var b nftBuilder
		prev := b.build(before)
		got := planText(planIncremental(prev, b.build(tc.after)))
		if got != tc.want {
			t.Errorf("%s: planIncremental() =\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

func TestPlanFull(t *testing.T) {
	snap := snapOf([]*v1.Service{service("default", "web", "10.43.0.20", func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP })},
		slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"}))
	next := buildNFT(snap)
	if got, want := planText(planFull(nil, next)), planText(planCreate(next, false)); got != want {
		t.Errorf("planFull(no table) =\n%s\nwant planCreate:\n%s", got, want)
	}
	aff := "aff-default/web/tcp/80__10.42.0.11/8080"
	have := &nftInventory{
		chains: map[string]bool{"services": true, "svc-default/web/tcp/80": true, "svc-default/gone/tcp/80": true},
		sets:   map[string]bool{"service-ips": true, aff: true, "aff-default/gone/tcp/80__10.42.0.9/80": true},
	}
	got := planText(planFull(have, next))
	for _, want := range []string{
		"add table ip skiff\n",
		"add chain nat-prerouting { type nat hook prerouting priority -100 }\n",
		"flush chain services\nflush chain svc-default/gone/tcp/80\nflush chain svc-default/web/tcp/80\n",
		"flush set service-ips\n",
		"add element service-ips { 10.43.0.20 . tcp . 80 : goto svc-default/web/tcp/80 }\n",
		"delete chain svc-default/gone/tcp/80\n",
		"delete set aff-default/gone/tcp/80__10.42.0.9/80\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("planFull() lacks %q:\n%s", want, got)
		}
	}
	for _, absent := range []string{"add chain services", "add chain svc-default/web/tcp/80", "set " + aff, "add set service-ips", "flush set no-endpoint"} {
		if strings.Contains(got, absent) {
			t.Errorf("planFull() has %q:\n%s", absent, got)
		}
	}
}

// TestNFTBuilderReuse compares the caching builder, fed a random walk of
// changes, with a fresh buildNFT of each snapshot, and checks that the
// incremental plan turns one table into the next (played on a model of the
// kernel's table that checks what the kernel checks).
func TestNFTBuilderReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	snap := snapOf(nil)
	var b nftBuilder
	prev := b.build(snap)
	sim := newSimTable(t)
	sim.run(planCreate(prev, false))
	for step := range 300 {
		snap = mutate(rng, snap)
		next := b.build(snap)
		if got, want := next.String(), buildNFT(snap).String(); got != want {
			t.Fatalf("step %d: cached build differs from buildNFT:\n%s\nwant\n%s", step, got, want)
		}
		sim.run(planIncremental(prev, next))
		if got, want := sim.String(), next.String(); got != want {
			t.Fatalf("step %d: table after planIncremental =\n%s\nwant\n%s", step, got, want)
		}
		prev = next
	}
}

// mutate makes one random change to a copy of s: a service or slice added,
// replaced or removed.
func mutate(rng *rand.Rand, s Snapshot) Snapshot {
	s.Services = append([]*v1.Service(nil), s.Services...)
	s.Slices = append([]*discovery.EndpointSlice(nil), s.Slices...)
	i := rng.IntN(6)
	name := fmt.Sprintf("s%d", i)
	ip := fmt.Sprintf("10.43.0.%d", 10+i)
	svcAt, sliceAt := -1, -1
	for j, svc := range s.Services {
		if svc.Name == name {
			svcAt = j
		}
	}
	for j, sl := range s.Slices {
		if sl.Name == name {
			sliceAt = j
		}
	}
	switch rng.IntN(5) {
	case 0, 1: // (re)place the service with random options
		if rng.IntN(5) == 0 && i > 0 {
			ip = "10.43.0.10" // take another's address
		}
		svc := service("ns", name, ip, func(sv *v1.Service) {
			if rng.IntN(2) == 0 {
				sv.Spec.Type, sv.Spec.Ports[0].NodePort = v1.ServiceTypeNodePort, int32(30000+i)
			}
			if rng.IntN(2) == 0 {
				sv.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			}
			if rng.IntN(3) == 0 {
				sv.Spec.ExternalIPs = []string{"192.0.2.1"}
			}
		})
		if svcAt < 0 {
			s.Services = append(s.Services, svc)
		} else {
			s.Services[svcAt] = svc
		}
	case 2, 3: // (re)place its slice with random endpoints
		var eps []ep
		for k := range rng.IntN(5) {
			e := ep{ip: fmt.Sprintf("10.42.%d.%d", i, 1+rng.IntN(8))}
			if k == 0 && rng.IntN(4) == 0 {
				e.ready = ptr(false)
			}
			eps = append(eps, e)
		}
		sl := slice("ns", name, name, 8080, eps...)
		if sliceAt < 0 {
			s.Slices = append(s.Slices, sl)
		} else {
			s.Slices[sliceAt] = sl
		}
	case 4: // remove the service or its slice
		if svcAt >= 0 && rng.IntN(2) == 0 {
			s.Services = append(s.Services[:svcAt], s.Services[svcAt+1:]...)
		} else if sliceAt >= 0 {
			s.Slices = append(s.Slices[:sliceAt], s.Slices[sliceAt+1:]...)
		}
	}
	return s
}

// simTable plays plans on a model of the kernel's table and fails the test
// where the kernel would refuse an operation: adding what exists, using or
// deleting what does not, deleting what is still referenced.
type simTable struct {
	t      *testing.T
	chains map[string]*nftChain
	sets   map[string]*nftSet
}

func newSimTable(t *testing.T) *simTable {
	return &simTable{t: t, chains: map[string]*nftChain{}, sets: map[string]*nftSet{}}
}

func (s *simTable) run(ops []nftOp) {
	s.t.Helper()
	for _, op := range ops {
		line := op.lines()[0]
		switch op.kind {
		case opAddTable:
		case opAddSet:
			if s.sets[op.set.name] != nil {
				s.t.Fatalf("%s: exists", line)
			}
			s.sets[op.set.name] = &nftSet{name: op.set.name, kind: op.set.kind, elems: map[string]nftElem{}}
		case opDeleteSet:
			if s.sets[op.name] == nil || s.refs(op.name) {
				s.t.Fatalf("%s: missing or in use", line)
			}
			delete(s.sets, op.name)
		case opAddChain:
			if s.chains[op.chain.name] != nil {
				s.t.Fatalf("%s: exists", line)
			}
			s.chains[op.chain.name] = &nftChain{name: op.chain.name, hook: op.chain.hook}
		case opFlushChain:
			if s.chains[op.name] == nil {
				s.t.Fatalf("%s: missing", line)
			}
			s.chains[op.name].rules = nil
		case opDeleteChain:
			if s.chains[op.name] == nil || s.refs(op.name) {
				s.t.Fatalf("%s: missing or in use:\n%s\nplan:\n%s", line, s, planText(ops))
			}
			delete(s.chains, op.name)
		case opAddRules:
			c := s.chains[op.chain.name]
			if c == nil {
				s.t.Fatalf("%s: no chain", line)
			}
			for _, r := range op.chain.rules {
				for _, target := range s.targets(r) {
					if s.chains[target] == nil && s.sets[target] == nil {
						s.t.Fatalf("add rule %s %s: %s missing", c.name, r.text, target)
					}
				}
				c.rules = append(c.rules, r)
			}
		case opAddElems, opDeleteElems:
			set := s.sets[op.name]
			if set == nil {
				s.t.Fatalf("%s: no set", line)
			}
			for i, k := range op.keys {
				_, ok := set.elems[k]
				switch {
				case op.kind == opAddElems && (ok || s.chains[op.elems[i].target] == nil):
					s.t.Fatalf("%s: %s exists or its target is missing", line, k)
				case op.kind == opAddElems:
					set.elems[k] = op.elems[i]
				case !ok:
					s.t.Fatalf("%s: %s missing", line, k)
				default:
					delete(set.elems, k)
				}
			}
		default:
			s.t.Fatalf("%s: not simulated", line)
		}
	}
}

// targets are the chains and sets a rule names.
func (s *simTable) targets(r nftRule) []string {
	var out []string
	for _, f := range strings.Fields(r.text) {
		f = strings.TrimSuffix(f, ",")
		if strings.HasPrefix(f, "@") {
			out = append(out, f[1:])
		} else if s.chains[f] != nil || strings.HasPrefix(f, "sep-") || strings.HasPrefix(f, "svc-") {
			out = append(out, f)
		}
	}
	return out
}

func (s *simTable) refs(name string) bool {
	for _, c := range s.chains {
		for _, r := range c.rules {
			for _, t := range s.targets(r) {
				if t == name {
					return true
				}
			}
		}
	}
	for _, set := range s.sets {
		for _, e := range set.elems {
			if e.target == name {
				return true
			}
		}
	}
	return false
}

func (s *simTable) String() string { return (&nftTable{chains: s.chains, sets: s.sets}).String() }

func TestRemoveInput(t *testing.T) {
	save := "*filter\n:INPUT ACCEPT [0:0]\n:SKIFF-FORWARD - [0:0]\n:SKIFF-FIREWALL - [0:0]\n" +
		"-A INPUT -j SKIFF-FIREWALL\n-A INPUT -j ACCEPT\n-A FORWARD -m conntrack --ctstate NEW -j SKIFF-SERVICES\n-A SKIFF-FORWARD -j ACCEPT\nCOMMIT\n" +
		"*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n" +
		"*nat\n:SKIFF-SVC-X - [0:0]\n-A PREROUTING -m comment --comment \"skiff service portals\" -j SKIFF-SERVICES\n-A SKIFF-SVC-X -j SKIFF-SEP-Y\nCOMMIT\n"
	want := "*filter\n:SKIFF-FORWARD - [0:0]\n:SKIFF-FIREWALL - [0:0]\n" +
		"-D INPUT -j SKIFF-FIREWALL\n-D FORWARD -m conntrack --ctstate NEW -j SKIFF-SERVICES\n" +
		"-X SKIFF-FORWARD\n-X SKIFF-FIREWALL\nCOMMIT\n" +
		"*nat\n:SKIFF-SVC-X - [0:0]\n-D PREROUTING -m comment --comment \"skiff service portals\" -j SKIFF-SERVICES\n-X SKIFF-SVC-X\nCOMMIT\n"
	if got := string(RemoveInput([]byte(save))); got != want {
		t.Errorf("RemoveInput() =\n%s\nwant\n%s", got, want)
	}
	if got := RemoveInput([]byte("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n")); len(got) != 0 {
		t.Errorf("RemoveInput(nothing of skiff's) = %q, want nothing", got)
	}
}
