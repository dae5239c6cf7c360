package dns

import (
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// ttl is the time to live of every cluster record: short, so that clients
// notice endpoint changes quickly.
const ttl = 5

// Catalog is the read-only view of the cluster that answers come from.
type Catalog interface {
	Service(namespace, name string) (*v1.Service, bool)
	// Slices returns the EndpointSlices of one service.
	Slices(namespace, service string) []*discovery.EndpointSlice
}

// Zone answers queries for one cluster domain.
type Zone struct {
	Domain string // fully qualified, lower case, e.g. "cluster.local."
	Cat    Catalog
}

// NewZone returns the zone for domain (e.g. "cluster.local").
func NewZone(domain string, cat Catalog) *Zone {
	return &Zone{Domain: dns.Fqdn(strings.ToLower(domain)), Cat: cat}
}

// InZone reports whether name is in the cluster domain, so that we answer it
// rather than forward it.
func (z *Zone) InZone(name string) bool {
	return dns.IsSubDomain(z.Domain, strings.ToLower(name))
}

// Answer builds the reply to a query for a name in the zone. It is a pure
// function of the query and the catalog.
func (z *Zone) Answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	rrs, extra, exists := z.lookup(name)
	if !exists {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.soa()}
		return m
	}
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == q.Qtype || t == dns.TypeCNAME || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{z.soa()} // NODATA: the name exists, not this type
	} else {
		m.Extra = extra
	}
	return m
}

func (z *Zone) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns.dns." + z.Domain,
		Mbox:    "hostmaster." + z.Domain,
		Serial:  1,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  ttl,
	}
}

func a(name string, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(ip).To4()}
}

// lookup returns the records at name (of every type), additional records
// that go with them, and whether the name exists at all.
func (z *Zone) lookup(name string) (rrs, extra []dns.RR, exists bool) {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, z.Domain), ".")
	if rel == "" {
		return nil, nil, true
	}
	l := strings.Split(rel, ".")
	n := len(l)
	switch {
	case n == 1 && l[0] == "svc", n == 1 && l[0] == "pod":
		return nil, nil, true
	case n == 2 && (l[1] == "svc" || l[1] == "pod"):
		return nil, nil, true // a namespace
	case n == 3 && l[2] == "pod":
		rrs, exists = podRecord(name, l[0])
	case n == 3 && l[2] == "svc":
		rrs, exists = z.service(name, l[1], l[0])
	case n == 4 && l[3] == "svc":
		rrs, exists = z.hostRecord(name, l[2], l[1], l[0])
	case n == 5 && l[4] == "svc" && strings.HasPrefix(l[0], "_") && strings.HasPrefix(l[1], "_"):
		rrs, extra, exists = z.srv(name, l[3], l[2], l[0][1:], l[1][1:])
	}
	return rrs, extra, exists
}

// podRecord answers <a-b-c-d>.<ns>.pod.<domain> with a.b.c.d.
func podRecord(name, dashed string) ([]dns.RR, bool) {
	ip, err := netip.ParseAddr(strings.ReplaceAll(dashed, "-", "."))
	if err != nil || !ip.Is4() {
		return nil, false
	}
	return []dns.RR{a(name, ip.String())}, true
}

// endpoint is one address a headless service publishes.
type endpoint struct {
	ip, hostname string
}

// endpoints are the addresses of a service's ready endpoints (all of them
// when the service publishes not-ready addresses), sorted, once each.
func (z *Zone) endpoints(svc *v1.Service) []endpoint {
	seen := map[string]bool{}
	var out []endpoint
	for _, s := range z.Cat.Slices(svc.Namespace, svc.Name) {
		if s.AddressType != discovery.AddressTypeIPv4 {
			continue
		}
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			if (!ready && !svc.Spec.PublishNotReadyAddresses) || len(e.Addresses) == 0 || seen[e.Addresses[0]] {
				continue
			}
			seen[e.Addresses[0]] = true
			ep := endpoint{ip: e.Addresses[0]}
			if e.Hostname != nil {
				ep.hostname = strings.ToLower(*e.Hostname)
			}
			out = append(out, ep)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ip < out[j].ip })
	return out
}

func headless(svc *v1.Service) bool {
	return svc.Spec.ClusterIP == v1.ClusterIPNone || svc.Spec.ClusterIP == ""
}

// service answers <svc>.<ns>.svc.<domain>.
func (z *Zone) service(name, ns, svcName string) ([]dns.RR, bool) {
	svc, ok := z.Cat.Service(ns, svcName)
	if !ok {
		return nil, false
	}
	switch {
	case svc.Spec.Type == v1.ServiceTypeExternalName:
		return []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: dns.Fqdn(svc.Spec.ExternalName)}}, true
	case headless(svc):
		var rrs []dns.RR
		for _, e := range z.endpoints(svc) {
			rrs = append(rrs, a(name, e.ip))
		}
		return rrs, true
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	var rrs []dns.RR
	for _, ip := range ips {
		if p, err := netip.ParseAddr(ip); err == nil && p.Is4() {
			rrs = append(rrs, a(name, ip))
		}
	}
	return rrs, true
}

// label is the first label of an endpoint's own record: its hostname,
// or its address with dashes.
func (e endpoint) label() string {
	if e.hostname != "" {
		return e.hostname
	}
	return strings.ReplaceAll(e.ip, ".", "-")
}

// hostRecord answers <hostname>.<svc>.<ns>.svc.<domain> for the endpoints
// of a headless service (pods with hostname and subdomain, StatefulSets).
func (z *Zone) hostRecord(name, ns, svcName, host string) ([]dns.RR, bool) {
	svc, ok := z.Cat.Service(ns, svcName)
	if !ok || !headless(svc) {
		return nil, false
	}
	var rrs []dns.RR
	for _, e := range z.endpoints(svc) {
		if e.label() == host {
			rrs = append(rrs, a(name, e.ip))
		}
	}
	return rrs, len(rrs) > 0
}

// srv answers _<port>._<proto>.<svc>.<ns>.svc.<domain> for named ports: one
// record pointing at the service name, or for a headless service one per
// endpoint, with the endpoints' addresses as additional records.
func (z *Zone) srv(name, ns, svcName, port, proto string) (rrs, extra []dns.RR, exists bool) {
	svc, ok := z.Cat.Service(ns, svcName)
	if !ok {
		return nil, nil, false
	}
	svcFQDN := svcName + "." + ns + ".svc." + z.Domain
	hdr := dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl}
	if !headless(svc) {
		for _, p := range svc.Spec.Ports {
			if strings.EqualFold(p.Name, port) && strings.EqualFold(string(p.Protocol), proto) {
				rrs = append(rrs, &dns.SRV{Hdr: hdr, Priority: 0, Weight: 100, Port: uint16(p.Port), Target: svcFQDN})
			}
		}
		return rrs, nil, len(rrs) > 0
	}
	eps := z.endpoints(svc)
	byIP := map[string]endpoint{}
	for _, e := range eps {
		byIP[e.ip] = e
	}
	type target struct {
		port int32
		e    endpoint
	}
	var ts []target
	for _, s := range z.Cat.Slices(ns, svcName) {
		for _, p := range s.Ports {
			if p.Name == nil || p.Port == nil || !strings.EqualFold(*p.Name, port) {
				continue
			}
			pr := v1.ProtocolTCP
			if p.Protocol != nil {
				pr = *p.Protocol
			}
			if !strings.EqualFold(string(pr), proto) {
				continue
			}
			for _, e := range s.Endpoints {
				if len(e.Addresses) == 0 {
					continue
				}
				if ep, ok := byIP[e.Addresses[0]]; ok {
					ts = append(ts, target{*p.Port, ep})
				}
			}
		}
	}
	sort.Slice(ts, func(i, j int) bool {
		return ts[i].e.ip < ts[j].e.ip || ts[i].e.ip == ts[j].e.ip && ts[i].port < ts[j].port
	})
	for i, t := range ts {
		if i > 0 && ts[i-1] == t {
			continue
		}
		host := t.e.label() + "." + svcFQDN
		rrs = append(rrs, &dns.SRV{Hdr: hdr, Priority: 0, Weight: uint16(100 / max(1, len(ts))), Port: uint16(t.port), Target: host})
		extra = append(extra, a(host, t.e.ip))
	}
	return rrs, extra, len(rrs) > 0
}
