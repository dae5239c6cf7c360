package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// Names of the chains every ruleset has. Per-service and per-endpoint chains
// are named by hashes (see svcChain, sepChain) so that they fit iptables' 28
// character limit and stay stable across syncs.
const (
	chainServices         = "SKIFF-SERVICES"
	chainNodePorts        = "SKIFF-NODEPORTS"
	chainMarkMasq         = "SKIFF-MARK-MASQ"
	chainPostrouting      = "SKIFF-POSTROUTING"
	chainExternalServices = "SKIFF-EXTERNAL-SERVICES"
	chainForward          = "SKIFF-FORWARD"
	chainFirewall         = "SKIFF-FIREWALL"

	// masqMark is the packet mark bit that asks SKIFF-POSTROUTING to
	// masquerade a connection.
	masqMark = "0x4000"
)

// Snapshot is everything the ruleset depends on.
type Snapshot struct {
	Services []*v1.Service
	Slices   []*discovery.EndpointSlice
	// ClusterCIDR is the pods' range: traffic to a ClusterIP from outside it
	// is masqueraded so replies come back through this node.
	ClusterCIDR string
	// ServiceCIDR is the ClusterIP range: any address in it that no rule
	// DNATs is rejected, so unknown service addresses fail fast.
	ServiceCIDR string
	// LocalhostNodePorts lets 127.0.0.1:<nodePort> reach node ports (needs
	// net.ipv4.conf.all.route_localnet=1).
	LocalhostNodePorts bool
}

// Chain is one iptables chain and its rules, each rule without "-A CHAIN".
type Chain struct {
	Name  string
	Rules []string
}

// Ruleset is the whole desired state of skiff's chains, table by table, in
// a deterministic order.
type Ruleset struct {
	NAT    []Chain
	Filter []Chain
}

// Endpoint is one backend of a service port.
type Endpoint struct {
	IP   string
	Port int32
}

func (e Endpoint) String() string { return e.IP + ":" + strconv.Itoa(int(e.Port)) }

// PortEndpoints picks the endpoints for one service port from the service's
// slices: the ready ones; when none is ready, the serving and terminating
// ones, so that connections drain to pods that are shutting down gracefully
// rather than fail. The result is sorted and has no duplicates.
func PortEndpoints(slices []*discovery.EndpointSlice, port v1.ServicePort) []Endpoint {
	var ready, terminating []Endpoint
	seen := map[Endpoint]bool{}
	for _, s := range slices {
		if s.AddressType != discovery.AddressTypeIPv4 {
			continue
		}
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			proto := v1.ProtocolTCP
			if sp.Protocol != nil {
				proto = *sp.Protocol
			}
			if name != port.Name || proto != port.Protocol || sp.Port == nil {
				continue
			}
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) == 0 {
					continue
				}
				addr, err := netip.ParseAddr(ep.Addresses[0])
				if err != nil || !addr.Is4() {
					continue
				}
				e := Endpoint{IP: addr.String(), Port: *sp.Port}
				if seen[e] {
					continue
				}
				isReady := ep.Conditions.Ready == nil || *ep.Conditions.Ready
				serving := isReady
				if ep.Conditions.Serving != nil {
					serving = *ep.Conditions.Serving
				}
				isTerminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
				switch {
				case isReady && !isTerminating:
					ready = append(ready, e)
				case serving && isTerminating:
					terminating = append(terminating, e)
				default:
					continue
				}
				seen[e] = true
			}
		}
	}
	out := ready
	if len(out) == 0 {
		out = terminating
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := netip.MustParseAddr(out[i].IP), netip.MustParseAddr(out[j].IP)
		if c := a.Compare(b); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// hash16 is a stable, chain-name-safe digest of s.
func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

func portKey(svc *v1.Service, p v1.ServicePort) string {
	return svc.Namespace + "/" + svc.Name + ":" + p.Name + "/" + strings.ToLower(string(p.Protocol))
}

func svcChain(key string) string             { return "SKIFF-SVC-" + hash16(key) }
func extChain(key string) string             { return "SKIFF-EXT-" + hash16(key) }
func sepChain(key string, e Endpoint) string { return "SKIFF-SEP-" + hash16(key+"@"+e.String()) }

// proxied reports whether the proxy handles svc at all: headless and
// ExternalName services are DNS-only.
func proxied(svc *v1.Service) bool {
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return false
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	return err == nil && ip.Is4()
}

// proxiedServices lists the Services the proxy handles, sorted by namespace
// and name so that every build comes out in the same order, and their
// EndpointSlices by "namespace/name".
func (s Snapshot) proxiedServices() ([]*v1.Service, map[string][]*discovery.EndpointSlice) {
	byService := map[string][]*discovery.EndpointSlice{}
	for _, sl := range s.Slices {
		if name := sl.Labels[discovery.LabelServiceName]; name != "" {
			k := sl.Namespace + "/" + name
			byService[k] = append(byService[k], sl)
		}
	}
	svcs := make([]*v1.Service, 0, len(s.Services))
	for _, svc := range s.Services {
		if proxied(svc) {
			svcs = append(svcs, svc)
		}
	}
	sort.Slice(svcs, func(i, j int) bool {
		if svcs[i].Namespace != svcs[j].Namespace {
			return svcs[i].Namespace < svcs[j].Namespace
		}
		return svcs[i].Name < svcs[j].Name
	})
	return svcs, byService
}

// Build computes the ruleset for a snapshot. It is a pure function: the same
// snapshot always gives the same rules, in the same order.
func Build(s Snapshot) Ruleset {
	svcs, byService := s.proxiedServices()

	var (
		services  []string // nat SKIFF-SERVICES
		nodePorts []string // nat SKIFF-NODEPORTS
		perSvc    []Chain  // nat SKIFF-SVC-*, SKIFF-EXT-*, SKIFF-SEP-*
		reject    []string // filter SKIFF-SERVICES
		extReject []string // filter SKIFF-EXTERNAL-SERVICES
	)
	for _, svc := range svcs {
		for _, p := range svc.Spec.Ports {
			key := portKey(svc, p)
			proto := strings.ToLower(string(p.Protocol))
			match := fmt.Sprintf("-p %s -m %s --dport %d", proto, proto, p.Port)
			name := svc.Namespace + "/" + svc.Name + ":" + p.Name
			comment := commentFor(name)
			eps := PortEndpoints(byService[svc.Namespace+"/"+svc.Name], p)
			dests := []string{svc.Spec.ClusterIP}
			for _, ip := range svc.Spec.ExternalIPs {
				if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
					dests = append(dests, a.String())
				}
			}
			hasNodePort := p.NodePort != 0 && (svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer)
			nodePortMatch := fmt.Sprintf("-p %s -m %s --dport %d", proto, proto, p.NodePort)

			if len(eps) == 0 {
				for _, d := range dests {
					reject = append(reject, fmt.Sprintf("-d %s/32 %s %s %s", d, match, commentFor(name+" has no endpoints"), rejectTarget(proto)))
				}
				if hasNodePort {
					extReject = append(extReject, fmt.Sprintf("-m addrtype --dst-type LOCAL %s %s %s", nodePortMatch, commentFor(name+" has no endpoints"), rejectTarget(proto)))
				}
				continue
			}

			svcName, extName := svcChain(key), extChain(key)
			services = append(services, fmt.Sprintf("-d %s/32 %s %s -j %s", svc.Spec.ClusterIP, match, comment, svcName))
			needExt := hasNodePort || len(dests) > 1
			for _, d := range dests[1:] {
				services = append(services, fmt.Sprintf("-d %s/32 %s %s -j %s", d, match, comment, extName))
			}
			if hasNodePort {
				nodePorts = append(nodePorts, fmt.Sprintf("%s %s -j %s", nodePortMatch, comment, extName))
			}

			var svcRules []string
			if s.ClusterCIDR != "" {
				svcRules = append(svcRules, fmt.Sprintf("! -s %s -d %s/32 %s -j %s", s.ClusterCIDR, svc.Spec.ClusterIP, match, chainMarkMasq))
			}
			affinity := svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP
			timeout := int32(10800)
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				timeout = *c.ClientIP.TimeoutSeconds
			}
			seps := make([]Chain, len(eps))
			for i, e := range eps {
				sep := sepChain(key, e)
				rules := []string{fmt.Sprintf("-s %s/32 -j %s", e.IP, chainMarkMasq)}
				dnat := fmt.Sprintf("-p %s -m %s", proto, proto)
				if affinity {
					dnat += fmt.Sprintf(" -m recent --name %s --set", sep)
				}
				rules = append(rules, fmt.Sprintf("%s -j DNAT --to-destination %s", dnat, e))
				seps[i] = Chain{Name: sep, Rules: rules}
				if affinity {
					svcRules = append(svcRules, fmt.Sprintf("-m recent --name %s --rcheck --seconds %d --reap -j %s", sep, timeout, sep))
				}
			}
			for i := range eps {
				n := len(eps) - i
				if n == 1 {
					svcRules = append(svcRules, "-j "+seps[i].Name)
				} else {
					svcRules = append(svcRules, fmt.Sprintf("-m statistic --mode random --probability %0.10f -j %s", 1/float64(n), seps[i].Name))
				}
			}
			perSvc = append(perSvc, Chain{Name: svcName, Rules: svcRules})
			if needExt {
				perSvc = append(perSvc, Chain{Name: extName, Rules: []string{"-j " + chainMarkMasq, "-j " + svcName}})
			}
			perSvc = append(perSvc, seps...)
		}
	}
	services = append(services, "-m addrtype --dst-type LOCAL -j "+chainNodePorts)
	if s.ServiceCIDR != "" {
		reject = append(reject,
			fmt.Sprintf("-d %s -p tcp %s -j REJECT --reject-with tcp-reset", s.ServiceCIDR, commentFor("unallocated service address")),
			fmt.Sprintf("-d %s %s -j REJECT --reject-with icmp-port-unreachable", s.ServiceCIDR, commentFor("unallocated service address")))
	}

	nat := []Chain{
		{Name: chainServices, Rules: services},
		{Name: chainNodePorts, Rules: nodePorts},
		{Name: chainMarkMasq, Rules: []string{"-j MARK --or-mark " + masqMark}},
		{Name: chainPostrouting, Rules: []string{
			fmt.Sprintf("-m mark ! --mark %s/%s -j RETURN", masqMark, masqMark),
			"-j MARK --xor-mark " + masqMark,
			"-j MASQUERADE --random-fully",
		}},
	}
	nat = append(nat, perSvc...)
	filter := []Chain{
		{Name: chainServices, Rules: reject},
		{Name: chainExternalServices, Rules: extReject},
		{Name: chainForward, Rules: []string{
			"-m conntrack --ctstate INVALID -j DROP",
			fmt.Sprintf("-m mark --mark %s/%s -j ACCEPT", masqMark, masqMark),
			"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		}},
	}
	fw := Chain{Name: chainFirewall}
	if s.LocalhostNodePorts {
		fw.Rules = []string{"! -s 127.0.0.0/8 -d 127.0.0.0/8 " + commentFor("block martian localhost traffic") + " -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"}
	}
	filter = append(filter, fw)
	return Ruleset{NAT: nat, Filter: filter}
}

// commentFor is an iptables comment match; names are DNS labels, so quoting
// needs no escapes.
func commentFor(text string) string { return `-m comment --comment "` + text + `"` }

// rejectTarget refuses a connection at once: a TCP reset for TCP, an ICMP
// port unreachable otherwise.
func rejectTarget(proto string) string {
	if proto == "tcp" {
		return "-j REJECT --reject-with tcp-reset"
	}
	return "-j REJECT --reject-with icmp-port-unreachable"
}
