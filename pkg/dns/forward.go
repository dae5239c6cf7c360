package dns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// systemdResolvConf lists the real upstreams when /etc/resolv.conf points
// at systemd-resolved's loopback stub.
const systemdResolvConf = "/run/systemd/resolve/resolv.conf"

// Upstreams reads the name servers of a resolv.conf as host:port. When
// every server is a loopback stub (systemd-resolved's 127.0.0.53) and the
// stub's own list exists, that list is used instead: a pod asking the stub
// through us would work from the host, but the stub is not the host's real
// resolver and may itself forward to us. Any server equal to self (our own
// listen address) is left out, so that we never forward to ourselves.
func Upstreams(path string, self string) ([]string, error) {
	servers, err := readNameservers(path)
	if err != nil {
		return nil, err
	}
	allLoopback := len(servers) > 0
	for _, s := range servers {
		if ip, err := netip.ParseAddr(s); err != nil || !ip.IsLoopback() {
			allLoopback = false
		}
	}
	if allLoopback && path != systemdResolvConf {
		if alt, err := readNameservers(systemdResolvConf); err == nil && len(alt) > 0 {
			servers = alt
		}
	}
	var out []string
	for _, s := range servers {
		hp := net.JoinHostPort(s, "53")
		if hp != self {
			out = append(out, hp)
		}
	}
	return out, nil
}

func readNameservers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if ip, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, ip.String())
			}
		}
	}
	return out, sc.Err()
}

// forwarder asks upstream servers in turn.
type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
}

func newForwarder(upstreams []string, timeout time.Duration) *forwarder {
	return &forwarder{
		upstreams: upstreams,
		udp:       &dns.Client{Net: "udp", Timeout: timeout, UDPSize: dns.DefaultMsgSize},
		tcp:       &dns.Client{Net: "tcp", Timeout: timeout},
	}
}

// exchange forwards req over the transport it came in on (TCP when a UDP
// answer is truncated) and returns the first answer; SERVFAIL when no
// upstream answers.
func (f *forwarder) exchange(ctx context.Context, req *dns.Msg, overTCP bool) *dns.Msg {
	for _, up := range f.upstreams {
		c := f.udp
		if overTCP {
			c = f.tcp
		}
		resp, _, err := c.ExchangeContext(ctx, req, up)
		if err == nil && resp.Truncated && !overTCP {
			resp, _, err = f.tcp.ExchangeContext(ctx, req, up)
		}
		if err == nil {
			resp.Id = req.Id
			return resp
		}
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	return m
}
