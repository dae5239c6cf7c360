// Package netnstest builds small networks for tests out of network
// namespaces the test creates — never touching the host's own — and runs
// listeners and dialers inside them.
package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// RequireNetAdmin skips the test unless it runs as root with ip and
// iptables installed.
func RequireNetAdmin(t testing.TB) {
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

// Sh runs a command and fails the test if it fails.
func Sh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// New creates a namespace with lo up, deleted when the test ends, and
// returns its path. Names carry the process id, so parallel packages and
// leftovers of a killed run never collide.
func New(t testing.TB, short string) string {
	t.Helper()
	name := fmt.Sprintf("skpx%d-%s", os.Getpid()%100000, short)
	_ = exec.Command("ip", "netns", "del", name).Run()
	Sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

// Name is the `ip netns` name of the namespace at path.
func Name(path string) string { return strings.TrimPrefix(path, "/var/run/netns/") }

// Do runs fn on an OS thread inside the namespace at path; sockets fn opens
// and commands it starts belong to that namespace.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Output runs a command inside the namespace at path.
func Output(t testing.TB, path string, args ...string) string {
	t.Helper()
	var out []byte
	if err := Do(path, func() (err error) {
		out, err = exec.Command(args[0], args[1:]...).Output()
		return err
	}); err != nil {
		t.Fatalf("%s in %s: %v", strings.Join(args, " "), Name(path), err)
	}
	return string(out)
}

// Bridge creates bridge br with address cidr in the namespace at node.
func Bridge(t testing.TB, node, br, cidr string) {
	t.Helper()
	n := Name(node)
	Sh(t, "ip", "-n", n, "link", "add", br, "type", "bridge")
	Sh(t, "ip", "-n", n, "addr", "add", cidr, "dev", br)
	Sh(t, "ip", "-n", n, "link", "set", br, "up")
}

// Plug connects the pod namespace to bridge br in namespace node (hairpin
// on, as the pod network sets it) with address cidr on eth0 and a default
// route via gw.
func Plug(t testing.TB, node, br, pod, hostIf, cidr, gw string) {
	t.Helper()
	n, p := Name(node), Name(pod)
	Sh(t, "ip", "-n", n, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", p)
	Sh(t, "ip", "-n", n, "link", "set", hostIf, "master", br, "up")
	Sh(t, "ip", "-n", n, "link", "set", hostIf, "type", "bridge_slave", "hairpin", "on")
	Sh(t, "ip", "-n", p, "addr", "add", cidr, "dev", "eth0")
	Sh(t, "ip", "-n", p, "link", "set", "eth0", "up")
	Sh(t, "ip", "-n", p, "route", "add", "default", "via", gw)
}

// ServeHTTP listens on addr inside ns and answers every request with name
// until the test ends.
func ServeHTTP(t testing.TB, ns, addr, name string) {
	t.Helper()
	var l net.Listener
	if err := Do(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); wg.Wait() })
}

// Dialer dials from inside ns. Only the dial needs the namespace's thread:
// a socket stays in the namespace it was created in.
func Dialer(ns string, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() (err error) {
			d := net.Dialer{Timeout: timeout}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Client is an HTTP client in ns that opens a new connection per request,
// so each request is balanced anew.
func Client(ns string) *http.Client {
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DialContext: Dialer(ns, time.Second), DisableKeepAlives: true},
	}
}

// Get returns the body of a GET.
func Get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
