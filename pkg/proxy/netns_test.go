package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The helpers here build small networks out of namespaces the test creates
// (never touching the host's own), and run listeners and dialers inside them.

func requireNetAdmin(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, bin := range []string{"ip", "iptables-restore", "iptables-save", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (apt-get install -y iptables iproute2)", bin)
		}
	}
}

func sh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// netnsName makes names unique per test process, so parallel packages and
// leftovers of a killed run never collide.
func netnsName(short string) string { return fmt.Sprintf("skpx%d-%s", os.Getpid()%100000, short) }

// newNetns creates a namespace with lo up and returns its path.
func newNetns(t testing.TB, short string) string {
	t.Helper()
	name := netnsName(short)
	_ = exec.Command("ip", "netns", "del", name).Run()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

func nsName(path string) string { return strings.TrimPrefix(path, "/var/run/netns/") }

// inNetns runs fn inside the namespace at path.
func inNetns(t testing.TB, path string, fn func() error) {
	t.Helper()
	if err := (&host{netns: path}).do(fn); err != nil {
		t.Fatal(err)
	}
}

// plug connects pod namespace pod to the bridge br in namespace node with
// address cidr (e.g. 10.42.0.11/24) and a default route via gw.
func plug(t testing.TB, node, br, pod, hostIf, cidr, gw string) {
	t.Helper()
	n, p := nsName(node), nsName(pod)
	sh(t, "ip", "-n", n, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", p)
	sh(t, "ip", "-n", n, "link", "set", hostIf, "master", br, "up")
	sh(t, "ip", "-n", n, "link", "set", hostIf, "type", "bridge_slave", "hairpin", "on")
	sh(t, "ip", "-n", p, "addr", "add", cidr, "dev", "eth0")
	sh(t, "ip", "-n", p, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", p, "route", "add", "default", "via", gw)
}

// serveHTTP listens on addr inside ns and answers every request with name.
func serveHTTP(t testing.TB, ns, addr, name string) {
	t.Helper()
	var l net.Listener
	inNetns(t, ns, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); wg.Wait() })
}

// nsDialer dials from inside ns. Sockets belong to the namespace they are
// created in, so only the dial needs the namespace's thread.
func nsDialer(ns string, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := (&host{netns: ns}).do(func() (err error) {
			d := net.Dialer{Timeout: timeout}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// nsClient is an HTTP client in ns that opens a new connection per request,
// so each request is balanced anew.
func nsClient(ns string) *http.Client {
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DialContext: nsDialer(ns, time.Second), DisableKeepAlives: true},
	}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
