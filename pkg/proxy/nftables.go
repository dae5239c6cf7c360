package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// The nftables backend keeps all of skiff's rules in one table of its own,
// `table ip skiff`, laid out as kube-proxy's nftables mode lays out its own:
//
//	nat-prerouting, nat-output ─▶ services:
//	    ip daddr . meta l4proto . th dport vmap @service-ips      ─▶ svc-… or ext-…
//	    fib daddr type local meta l4proto . th dport vmap @service-nodeports ─▶ ext-…
//	ext-<port>: mark for masquerade, goto svc-<port>
//	svc-<port>: mark outside callers of the ClusterIP; affinity checks;
//	            numgen random mod N vmap @endpoints-<port> ─▶ sep-<port>__<endpoint>
//	sep-<port>__<endpoint>: mark hairpin traffic; update affinity; dnat
//	nat-postrouting ─▶ masquerading: masquerade marked packets
//	filter-forward/-output ─▶ service-checks: no-endpoint services and
//	    unallocated service addresses are rejected
//	filter-forward/-input ─▶ nodeport-checks: no-endpoint node ports rejected
//
// A service port owns its chains, its endpoints map (i : goto the i-th sep
// chain), its affinity sets and its elements in the dispatch maps; an
// endpoint change rewrites its svc chain and endpoints map and adds or
// deletes sep chains, nothing else.
//
// The endpoints maps are named, not anonymous (`vmap { 0 : goto … }` in
// the rule) as kube-proxy has them: binding an anonymous set makes the
// kernel walk the whole transaction, so a full sync of 1,000 services spent
// most of its time there.

const nftTableName = "skiff"

// Fixed chains and sets.
const (
	nftNATPrerouting  = "nat-prerouting"
	nftNATOutput      = "nat-output"
	nftNATPostrouting = "nat-postrouting"
	nftFilterForward  = "filter-forward"
	nftFilterInput    = "filter-input"
	nftFilterOutput   = "filter-output"

	nftServices       = "services"
	nftMarkMasq       = "mark-for-masquerade"
	nftMasquerading   = "masquerading"
	nftServiceChecks  = "service-checks"
	nftNodePortChecks = "nodeport-checks"
	nftForward        = "forward"
	nftFirewall       = "firewall"
	nftRejectService  = "reject-service"

	nftServiceIPs          = "service-ips"
	nftServiceNodePorts    = "service-nodeports"
	nftNoEndpointServices  = "no-endpoint-services"
	nftNoEndpointNodePorts = "no-endpoint-nodeports"

	// nftMasqBit is the packet mark bit that asks masquerading to
	// masquerade a connection (the same bit the iptables rules use).
	nftMasqBit uint32 = 0x4000
)

// nftTable is the desired content of `table ip skiff`.
type nftTable struct {
	chains map[string]*nftChain
	sets   map[string]*nftSet
}

// nftChain is one chain; hook is set for base chains.
type nftChain struct {
	name  string
	hook  *nftHook
	rules []nftRule
}

type nftHook struct {
	typ      nftables.ChainType
	hooknum  nftables.ChainHook
	priority nftables.ChainPriority
}

func (h *nftHook) String() string {
	names := map[nftables.ChainHook]string{
		*nftables.ChainHookPrerouting: "prerouting", *nftables.ChainHookInput: "input", *nftables.ChainHookForward: "forward",
		*nftables.ChainHookOutput: "output", *nftables.ChainHookPostrouting: "postrouting",
	}
	return fmt.Sprintf("type %s hook %s priority %d", h.typ, names[h.hooknum], h.priority)
}

func (c *nftChain) equal(o *nftChain) bool {
	if c == o {
		return true
	}
	if (c.hook == nil) != (o.hook == nil) || (c.hook != nil && *c.hook != *o.hook) || len(c.rules) != len(o.rules) {
		return false
	}
	for i := range c.rules {
		if c.rules[i].text != o.rules[i].text {
			return false
		}
	}
	return true
}

// nftSetKind is what a named set holds.
type nftSetKind int

const (
	nftMapAddrPort nftSetKind = iota // ipv4_addr . inet_proto . inet_service : verdict
	nftMapPort                       // inet_proto . inet_service : verdict
	nftMapIndex                      // integer : verdict
	nftAffinity                      // ipv4_addr, filled by packets, entries time out
)

func (k nftSetKind) String() string {
	return [...]string{
		"type ipv4_addr . inet_proto . inet_service : verdict",
		"type inet_proto . inet_service : verdict",
		"type integer : verdict",
		"type ipv4_addr; flags dynamic,timeout",
	}[k]
}

// nftSet is a named set or verdict map. Maps hold elements by the text of
// their key; affinity sets have none (packets fill them), and are never
// rewritten, so a sync does not forget which client went where.
type nftSet struct {
	name  string
	kind  nftSetKind
	elems map[string]nftElem
}

// nftElem is one element of a verdict map: key → goto target.
type nftElem struct {
	key     []byte
	target  string
	comment string
}

func (e nftElem) equal(o nftElem) bool { return e.target == o.target && e.comment == o.comment }

// Keys of concatenations: every field is padded to 4 bytes.
func keyAddrPort(ip netip.Addr, proto string, port int32) []byte {
	a := ip.As4()
	k := make([]byte, 12)
	copy(k, a[:])
	k[4] = l4Protos[proto]
	copy(k[8:], binaryutil.BigEndian.PutUint16(uint16(port)))
	return k
}

func keyPort(proto string, port int32) []byte {
	k := make([]byte, 8)
	k[0] = l4Protos[proto]
	copy(k[4:], binaryutil.BigEndian.PutUint16(uint16(port)))
	return k
}

// nftPort is what one service port adds to the table.
type nftPort struct {
	chains []*nftChain
	sets   []*nftSet // its endpoints map and affinity sets
	elems  []nftPortElem
}

type nftPortElem struct {
	set, key string
	elem     nftElem
}

// nftConfig is the part of a Snapshot that is not Services or slices.
type nftConfig struct {
	clusterCIDR, serviceCIDR netip.Prefix // invalid when not set
	localhostNodePorts       bool
}

func nftConfigOf(s Snapshot) nftConfig {
	c := nftConfig{localhostNodePorts: s.LocalhostNodePorts}
	if p, err := netip.ParsePrefix(s.ClusterCIDR); err == nil && p.Addr().Is4() {
		c.clusterCIDR = p.Masked()
	}
	if p, err := netip.ParsePrefix(s.ServiceCIDR); err == nil && p.Addr().Is4() {
		c.serviceCIDR = p.Masked()
	}
	return c
}

// buildNFT computes the table for a snapshot. It is a pure function: the
// same snapshot always gives the same table.
func buildNFT(s Snapshot) *nftTable { return new(nftBuilder).build(s) }

// nftBuilder builds tables and reuses what it built for a service as long as
// the service and its slices are the same objects (informers replace an
// object on every change, and never modify one in place), so a sync costs
// in proportion to what changed. It gives the same tables as buildNFT.
type nftBuilder struct {
	cfg   nftConfig
	cache map[string]nftCached // by namespace/name
	// sizes of the last table, to allocate the next one at once
	chains, sets int
}

type nftCached struct {
	svc    *v1.Service
	slices []*discovery.EndpointSlice
	ports  []nftPort
}

func sameSlices(a, b []*discovery.EndpointSlice) bool {
	if len(a) != len(b) {
		return false
	}
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}

func (b *nftBuilder) build(s Snapshot) *nftTable {
	cfg := nftConfigOf(s)
	if b.cache == nil || cfg != b.cfg {
		b.cfg, b.cache = cfg, map[string]nftCached{}
	}
	svcs, byService := s.proxiedServices()

	t := nftSkeleton(cfg, b.chains, b.sets)
	seen := make(map[string]bool, len(svcs))
	for _, svc := range svcs {
		k := svc.Namespace + "/" + svc.Name
		if seen[k] {
			continue // the same service twice: keep the first
		}
		seen[k] = true
		sl := byService[k]
		c, ok := b.cache[k]
		if !ok || c.svc != svc || !sameSlices(c.slices, sl) {
			c = nftCached{svc: svc, slices: sl, ports: nftServicePorts(svc, sl, cfg)}
			b.cache[k] = c
		}
		for _, p := range c.ports {
			for _, ch := range p.chains {
				t.chains[ch.name] = ch
			}
			for _, s := range p.sets {
				t.sets[s.name] = s
			}
			for _, e := range p.elems {
				// Two services claiming one address and port (external
				// IPs are not checked by the API): the first one wins.
				m := t.sets[e.set].elems
				if _, taken := m[e.key]; !taken {
					m[e.key] = e.elem
				}
			}
		}
	}
	for k := range b.cache {
		if !seen[k] {
			delete(b.cache, k)
		}
	}
	b.chains, b.sets = len(t.chains), len(t.sets)
	return t
}

// nftServicePorts builds the chains and map elements of each port of svc.
func nftServicePorts(svc *v1.Service, slices []*discovery.EndpointSlice, cfg nftConfig) []nftPort {
	cip := netip.MustParseAddr(svc.Spec.ClusterIP)
	dests := []netip.Addr{cip}
	for _, ip := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
			dests = append(dests, a)
		}
	}
	affinity := svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP
	timeout := 10800 * time.Second
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		timeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
	}
	var out []nftPort
	for _, sp := range svc.Spec.Ports {
		proto := strings.ToLower(string(sp.Protocol))
		if _, ok := l4Protos[proto]; !ok {
			continue
		}
		id := svc.Namespace + "/" + svc.Name + "/" + proto + "/" + strconv.Itoa(int(sp.Port))
		name := svc.Namespace + "/" + svc.Name + ":" + sp.Name
		hasNodePort := sp.NodePort != 0 && (svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer)
		eps := PortEndpoints(slices, sp)
		var p nftPort

		if len(eps) == 0 {
			for _, d := range dests {
				p.elems = append(p.elems, nftPortElem{nftNoEndpointServices, d.String() + " . " + proto + " . " + strconv.Itoa(int(sp.Port)),
					nftElem{keyAddrPort(d, proto, sp.Port), nftRejectService, name + " has no endpoints"}})
			}
			if hasNodePort {
				p.elems = append(p.elems, nftPortElem{nftNoEndpointNodePorts, proto + " . " + strconv.Itoa(int(sp.NodePort)),
					nftElem{keyPort(proto, sp.NodePort), nftRejectService, name + " has no endpoints"}})
			}
			out = append(out, p)
			continue
		}

		svcName, extName := "svc-"+id, "ext-"+id
		sc := &nftChain{name: svcName}
		if cfg.clusterCIDR.IsValid() {
			sc.rules = append(sc.rules, newRule(ipSaddr(cfg.clusterCIDR, true), ipDaddr(netip.PrefixFrom(cip, 32), false),
				l4proto(proto), thDport(sp.Port), jumpTo(nftMarkMasq)))
		}
		seps := make([]string, len(eps))
		var sepChains []*nftChain
		for i, e := range eps {
			ip := netip.MustParseAddr(e.IP)
			suffix := id + "__" + e.IP + "/" + strconv.Itoa(int(e.Port))
			seps[i] = "sep-" + suffix
			c := &nftChain{name: seps[i], rules: []nftRule{newRule(ipSaddr(netip.PrefixFrom(ip, 32), false), jumpTo(nftMarkMasq))}}
			if affinity {
				set := "aff-" + suffix
				p.sets = append(p.sets, &nftSet{name: set, kind: nftAffinity})
				sc.rules = append(sc.rules, newRule(saddrIn(set), gotoChain(seps[i])))
				c.rules = append(c.rules, newRule(updateSaddr(set, timeout)))
			}
			c.rules = append(c.rules, newRule(l4proto(proto), dnatTo(ip, e.Port)))
			sepChains = append(sepChains, c)
		}
		if len(seps) == 1 {
			sc.rules = append(sc.rules, newRule(gotoChain(seps[0])))
		} else {
			m := &nftSet{name: "endpoints-" + id, kind: nftMapIndex, elems: make(map[string]nftElem, len(seps))}
			for i, sep := range seps {
				m.elems[strconv.Itoa(i)] = nftElem{key: binaryutil.NativeEndian.PutUint32(uint32(i)), target: sep}
			}
			p.sets = append(p.sets, m)
			sc.rules = append(sc.rules, newRule(numgenVmap(len(seps), m.name)))
		}
		p.chains = append(p.chains, sc)
		if hasNodePort || len(dests) > 1 {
			p.chains = append(p.chains, &nftChain{name: extName, rules: []nftRule{newRule(jumpTo(nftMarkMasq)), newRule(gotoChain(svcName))}})
		}
		p.chains = append(p.chains, sepChains...)

		p.elems = append(p.elems, nftPortElem{nftServiceIPs, cip.String() + " . " + proto + " . " + strconv.Itoa(int(sp.Port)),
			nftElem{keyAddrPort(cip, proto, sp.Port), svcName, name}})
		for _, d := range dests[1:] {
			p.elems = append(p.elems, nftPortElem{nftServiceIPs, d.String() + " . " + proto + " . " + strconv.Itoa(int(sp.Port)),
				nftElem{keyAddrPort(d, proto, sp.Port), extName, name}})
		}
		if hasNodePort {
			p.elems = append(p.elems, nftPortElem{nftServiceNodePorts, proto + " . " + strconv.Itoa(int(sp.NodePort)),
				nftElem{keyPort(proto, sp.NodePort), extName, name}})
		}
		out = append(out, p)
	}
	return out
}

// nftSkeleton is the part of the table that does not depend on Services:
// base chains, the dispatch chains and the (empty) maps.
func nftSkeleton(cfg nftConfig, chains, sets int) *nftTable {
	t := &nftTable{chains: make(map[string]*nftChain, chains), sets: make(map[string]*nftSet, sets)}
	add := func(name string, hook *nftHook, rules ...nftRule) {
		t.chains[name] = &nftChain{name: name, hook: hook, rules: rules}
	}
	nat := func(h *nftables.ChainHook, prio *nftables.ChainPriority) *nftHook {
		return &nftHook{nftables.ChainTypeNAT, *h, *prio}
	}
	filter := func(h *nftables.ChainHook) *nftHook {
		return &nftHook{nftables.ChainTypeFilter, *h, *nftables.ChainPriorityFilter}
	}
	add(nftNATPrerouting, nat(nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest), newRule(jumpTo(nftServices)))
	add(nftNATOutput, nat(nftables.ChainHookOutput, nftables.ChainPriorityNATDest), newRule(jumpTo(nftServices)))
	add(nftNATPostrouting, nat(nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource), newRule(jumpTo(nftMasquerading)))
	add(nftFilterForward, filter(nftables.ChainHookForward),
		newRule(ctStateNew(), jumpTo(nftServiceChecks)),
		newRule(ctStateNew(), jumpTo(nftNodePortChecks)),
		newRule(jumpTo(nftForward)))
	add(nftFilterOutput, filter(nftables.ChainHookOutput),
		newRule(ctStateNew(), jumpTo(nftServiceChecks)),
		newRule(jumpTo(nftFirewall)))
	add(nftFilterInput, filter(nftables.ChainHookInput),
		newRule(ctStateNew(), jumpTo(nftNodePortChecks)),
		newRule(jumpTo(nftFirewall)))

	add(nftServices, nil,
		newRule(vmapAddrPort(nftServiceIPs)),
		newRule(fibDaddrLocal(), vmapPort(nftServiceNodePorts)))
	add(nftMarkMasq, nil, newRule(markOr(nftMasqBit)))
	add(nftMasquerading, nil,
		newRule(markClear(nftMasqBit), verdictReturn()),
		newRule(markXor(nftMasqBit)),
		newRule(masqueradeFullyRandom()))

	checks := []nftRule{newRule(vmapAddrPort(nftNoEndpointServices))}
	if cfg.serviceCIDR.IsValid() {
		checks = append(checks,
			newRule(ipDaddr(cfg.serviceCIDR, false), l4proto("tcp"), rejectTCPReset()),
			newRule(ipDaddr(cfg.serviceCIDR, false), rejectPortUnreachable()))
	}
	add(nftServiceChecks, nil, checks...)
	add(nftNodePortChecks, nil, newRule(fibDaddrLocal(), vmapPort(nftNoEndpointNodePorts)))
	add(nftRejectService, nil,
		newRule(l4proto("tcp"), rejectTCPReset()),
		newRule(rejectPortUnreachable()))
	add(nftForward, nil,
		newRule(ctStateInvalid(), verdictDrop()),
		newRule(markSet(nftMasqBit), verdictAccept()),
		newRule(ctStateEstablishedRelated(), verdictAccept()))
	var fw []nftRule
	if cfg.localhostNodePorts {
		// With route_localnet on, nothing from outside may reach
		// 127.0.0.0/8 except replies and node-port connections we NATed.
		lo := netip.MustParsePrefix("127.0.0.0/8")
		fw = append(fw, newRule(ipDaddr(lo, false), ipSaddr(lo, true), ctStateNotEstablishedRelated(), ctStatusNotDNAT(), verdictDrop()))
	}
	add(nftFirewall, nil, fw...)

	for name, kind := range map[string]nftSetKind{
		nftServiceIPs: nftMapAddrPort, nftNoEndpointServices: nftMapAddrPort,
		nftServiceNodePorts: nftMapPort, nftNoEndpointNodePorts: nftMapPort,
	} {
		t.sets[name] = &nftSet{name: name, kind: kind, elems: map[string]nftElem{}}
	}
	return t
}

// String prints the table much as `nft list table ip skiff` would, sets
// first, everything sorted by name: for tests and for reading.
func (t *nftTable) String() string {
	var b strings.Builder
	b.WriteString("table ip " + nftTableName + " {\n")
	for _, name := range sortedKeys(t.sets) {
		s := t.sets[name]
		kw := "set"
		if s.kind != nftAffinity {
			kw = "map"
		}
		fmt.Fprintf(&b, "\t%s %s {\n\t\t%s\n", kw, name, s.kind)
		keys := sortedKeys(s.elems)
		if s.kind == nftMapIndex {
			sort.Slice(keys, func(i, j int) bool {
				return len(keys[i]) < len(keys[j]) || len(keys[i]) == len(keys[j]) && keys[i] < keys[j]
			})
		}
		for _, k := range keys {
			e := s.elems[k]
			if e.comment != "" {
				k += fmt.Sprintf(" comment %q", e.comment)
			}
			fmt.Fprintf(&b, "\t\t%s : goto %s\n", k, e.target)
		}
		b.WriteString("\t}\n")
	}
	for _, name := range sortedKeys(t.chains) {
		c := t.chains[name]
		fmt.Fprintf(&b, "\tchain %s {\n", name)
		if c.hook != nil {
			fmt.Fprintf(&b, "\t\t%s\n", c.hook)
		}
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.text)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
