package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/skiff-org/skiff/pkg/proxy/netnstest"
)

// bigSnapshot is n services with m ready endpoints each.
func bigSnapshot(n, m int) Snapshot {
	s := Snapshot{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", LocalhostNodePorts: true}
	for i := range n {
		name := fmt.Sprintf("svc-%d", i)
		svc := service("bench", name, fmt.Sprintf("10.43.%d.%d", 1+i/250, 1+i%250), func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = int32(30000 + i)
		})
		var eps []ep
		for j := range m {
			eps = append(eps, ep{ip: fmt.Sprintf("10.42.%d.%d", i/25, 1+(i%25)*10+j)})
		}
		s.Services = append(s.Services, svc)
		s.Slices = append(s.Slices, slice("bench", name, name+"-1", 8080, eps...))
	}
	return s
}

// BenchmarkBuild is the pure part of a full sync of 1,000 services with 10
// endpoints each: the iptables rules rendered for iptables-restore, and the
// nftables table with the plan that creates it.
func BenchmarkBuild(b *testing.B) {
	snap := bigSnapshot(1000, 10)
	b.Run("iptables", func(b *testing.B) {
		for b.Loop() {
			Render(nil, Build(snap))
		}
	})
	b.Run("nftables", func(b *testing.B) {
		for b.Loop() {
			planCreate(buildNFT(snap), false)
		}
	})
}

// BenchmarkSync1000x10 applies 1,000 services × 10 endpoints to a real
// kernel in a fresh namespace: a full sync, then one endpoint change.
func BenchmarkSync1000x10(b *testing.B) {
	netnstest.RequireNetAdmin(b)
	b.Run(BackendNFTables, benchSyncNFT)
	for _, backend := range []string{BackendLegacy, BackendNFT} {
		b.Run(backend, func(b *testing.B) { benchSync(b, backend) })
	}
}

// benchSyncNFT measures what the nftables backend does at start-up with no
// table (full-ms), then one endpoint of one service going away
// (one-endpoint-ms: model, plan and transaction), then a periodic resync
// over the table it left (resync-ms: every chain flushed and refilled,
// every map refilled).
func benchSyncNFT(b *testing.B) {
	ns := netnstest.New(b, "bench-nftables")
	snap := bigSnapshot(1000, 10)
	changed := snap
	changed.Slices = append([]*discovery.EndpointSlice(nil), snap.Slices...)
	s0 := *changed.Slices[0]
	s0.Endpoints = s0.Endpoints[1:]
	changed.Slices[0] = &s0
	var full, resync, one time.Duration
	var fullMsgs, oneMsgs int
	for b.Loop() {
		if err := newNFTBackend(ns).kernel.deleteTable(); err != nil {
			b.Fatal(err)
		}
		be := newNFTBackend(ns)
		start := time.Now()
		st, err := be.sync(snap, true)
		if err != nil {
			b.Fatal(err)
		}
		full += time.Since(start)
		fullMsgs = st.Messages

		start = time.Now()
		st, err = be.sync(changed, false)
		if err != nil {
			b.Fatal(err)
		}
		one += time.Since(start)
		oneMsgs = st.Messages
		if st.Full {
			b.Fatal("one endpoint change was a full sync")
		}

		start = time.Now()
		if _, err := be.sync(changed, true); err != nil {
			b.Fatal(err)
		}
		resync += time.Since(start)
	}
	b.ReportMetric(float64(full.Milliseconds())/float64(b.N), "full-ms")
	b.ReportMetric(float64(fullMsgs), "full-msgs")
	b.ReportMetric(float64(one.Microseconds())/1000/float64(b.N), "one-endpoint-ms")
	b.ReportMetric(float64(oneMsgs), "one-endpoint-msgs")
	b.ReportMetric(float64(resync.Milliseconds())/float64(b.N), "resync-ms")
}

func benchSync(b *testing.B, backend string) {
	ns := netnstest.New(b, "bench-"+backend)
	h := &host{netns: ns, suffix: "-" + backend}
	snap := bigSnapshot(1000, 10)
	var full, one time.Duration
	var fullBytes, oneBytes int
	for b.Loop() {
		st, err := h.save()
		if err != nil {
			b.Fatal(err)
		}
		// st marks every chain unknown: all are rewritten, as at start-up.
		start := time.Now()
		text, st := Render(st, Build(snap))
		if err := h.restore(text); err != nil {
			b.Fatal(err)
		}
		full += time.Since(start)
		fullBytes = len(text)

		// One endpoint of one service goes away, then comes back.
		changed := snap
		changed.Slices = append([]*discovery.EndpointSlice(nil), snap.Slices...)
		s0 := *changed.Slices[0]
		s0.Endpoints = s0.Endpoints[1:]
		changed.Slices[0] = &s0
		start = time.Now()
		text, _ = Render(st, Build(changed))
		if err := h.restore(text); err != nil {
			b.Fatal(err)
		}
		one += time.Since(start)
		oneBytes = len(text)
	}
	b.ReportMetric(float64(full.Milliseconds())/float64(b.N), "full-ms")
	b.ReportMetric(float64(fullBytes), "full-bytes")
	b.ReportMetric(float64(one.Microseconds())/1000/float64(b.N), "one-endpoint-ms")
	b.ReportMetric(float64(oneBytes), "one-endpoint-bytes")
}

// BenchmarkNFTTransport loads the same full table (1,000 services × 10
// endpoints, the operations already planned) two ways: as the backend does,
// one batch with a single acknowledgement, and with the library's own
// Flush, which asks for an acknowledgement of every message and an echo of
// every rule and reads them one by one.
func BenchmarkNFTTransport(b *testing.B) {
	netnstest.RequireNetAdmin(b)
	ns := netnstest.New(b, "bench-transport")
	ops := planCreate(buildNFT(bigSnapshot(1000, 10)), true)
	k := &nftKernel{host: &host{netns: ns}}
	b.Run("one-ack", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := k.apply(ops); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("library-flush", func(b *testing.B) {
		f, err := os.Open(ns)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		// Room for every acknowledgement and echo, or the kernel drops
		// them and Flush fails.
		bufs := nftables.WithSockOptions(func(c *netlink.Conn) error {
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			err = rc.Control(func(fd uintptr) {
				serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20),
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20))
			})
			return errors.Join(err, serr)
		})
		for b.Loop() {
			conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), bufs)
			if err != nil {
				b.Fatal(err)
			}
			batch := &nftBatch{conn: conn, table: &nftables.Table{Name: nftTableName, Family: nftables.TableFamilyIPv4}, ops: ops}
			batch.encode()
			if err := conn.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClusterIPvsPodIP compares HTTP requests per second from a client
// namespace to one pod, through a ClusterIP and straight to the pod's
// address, with a new connection per request (so every request pays the
// NAT lookup on its first packet) and over one kept-alive connection.
func BenchmarkClusterIPvsPodIP(b *testing.B) {
	netnstest.RequireNetAdmin(b)
	node, cli, pod := netnstest.New(b, "bnode"), netnstest.New(b, "bcli"), netnstest.New(b, "bpod")
	n := netnstest.Name(node)
	netnstest.Sh(b, "ip", "-n", n, "link", "add", "br0", "type", "bridge")
	netnstest.Sh(b, "ip", "-n", n, "addr", "add", "10.42.0.1/24", "dev", "br0")
	netnstest.Sh(b, "ip", "-n", n, "link", "set", "br0", "up")
	netnstest.Plug(b, node, "br0", pod, "vp", "10.42.0.11/24", "10.42.0.1")
	netnstest.Plug(b, node, "br0", cli, "vc", "10.42.0.20/24", "10.42.0.1")
	netnstest.ServeHTTP(b, pod, ":8080", "pod1")
	h := &host{netns: node, suffix: "-" + BackendLegacy}
	if err := h.sysctls(false); err != nil {
		b.Fatal(err)
	}
	if err := h.routes("10.42.0.0/16", "10.43.0.0/16"); err != nil {
		b.Fatal(err)
	}
	snap := Snapshot{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16",
		Services: []*v1.Service{service("default", "web", "10.43.0.20")},
		Slices:   []*discovery.EndpointSlice{slice("default", "web", "web-1", 8080, ep{ip: "10.42.0.11"})}}
	st, err := h.save()
	if err != nil {
		b.Fatal(err)
	}
	text, _ := Render(st, Build(snap))
	if err := h.restore(text); err != nil {
		b.Fatal(err)
	}
	if err := h.ensureJumps(); err != nil {
		b.Fatal(err)
	}
	for _, keep := range []bool{false, true} {
		for _, target := range []struct{ name, url string }{{"pod-ip", "http://10.42.0.11:8080/"}, {"cluster-ip", "http://10.43.0.20/"}} {
			b.Run(fmt.Sprintf("%s/keepalive=%v", target.name, keep), func(b *testing.B) {
				const workers = 4
				tr := &http.Transport{DialContext: netnstest.Dialer(cli, time.Second), DisableKeepAlives: !keep, MaxIdleConnsPerHost: workers}
				c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
				defer tr.CloseIdleConnections()
				if body, err := netnstest.Get(c, target.url); err != nil || body != "pod1" {
					b.Fatalf("GET %s = %q, %v", target.url, body, err)
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				var firstErr error
				start := time.Now()
				per := b.N/workers + 1
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							if _, err := netnstest.Get(c, target.url); err != nil {
								mu.Lock()
								firstErr = err
								mu.Unlock()
								return
							}
						}
					}()
				}
				wg.Wait()
				if firstErr != nil {
					b.Fatal(firstErr)
				}
				b.ReportMetric(float64(per*workers)/time.Since(start).Seconds(), "req/s")
			})
		}
	}
}
