package podnet

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestNextFree(t *testing.T) {
	r, err := ParseRange("10.1.0.0/29") // .1 gateway, .2-.6 pods, .7 broadcast
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		taken []string
		prev  string
		want  string
		ok    bool
	}{
		{nil, "", "10.1.0.2", true},
		{[]string{"10.1.0.2"}, "10.1.0.2", "10.1.0.3", true},
		{nil, "10.1.0.3", "10.1.0.4", true}, // freed addresses come back last
		{nil, "10.1.0.6", "10.1.0.2", true}, // wrap
		{[]string{"10.1.0.2", "10.1.0.3"}, "10.1.0.6", "10.1.0.4", true},
		{[]string{"10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"}, "10.1.0.4", "", false},
		{nil, "192.168.0.9", "10.1.0.2", true}, // prev from another range
	} {
		taken := map[netip.Addr]bool{}
		for _, s := range tc.taken {
			taken[a(s)] = true
		}
		var prev netip.Addr
		if tc.prev != "" {
			prev = a(tc.prev)
		}
		got, ok := r.NextFree(taken, prev)
		if ok != tc.ok || (ok && got != a(tc.want)) {
			t.Errorf("NextFree(%v, %v) = %v, %v, want %v, %v", tc.taken, tc.prev, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		cidr, gw string
		ok       bool
	}{
		{"10.244.1.0/24", "10.244.1.1", true},
		{"10.244.1.7/24", "10.244.1.1", true},
		{"10.0.0.0/31", "", false},
		{"fd00::/64", "", false},
		{"nope", "", false},
	} {
		r, err := ParseRange(tc.cidr)
		if (err == nil) != tc.ok || (tc.ok && r.Gateway.String() != tc.gw) {
			t.Errorf("ParseRange(%q) = %v, %v, want gateway %q ok %v", tc.cidr, r.Gateway, err, tc.gw, tc.ok)
		}
	}
}

// TestStoreSurvivesRestart checks that a second store over the same
// directory (a restarted agent) does not hand out a live address again.
func TestStoreSurvivesRestart(t *testing.T) {
	r, _ := ParseRange("10.2.0.0/24")
	dir := t.TempDir()
	a1, err := store{dir}.allocate(r, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := store{dir}.allocate(r, "pod-a")
	if again != a1 {
		t.Errorf("allocate(pod-a) twice = %v then %v, want the same", a1, again)
	}
	a2, _ := store{dir}.allocate(r, "pod-b")
	if a2 == a1 {
		t.Errorf("allocate(pod-b) = %v, the address pod-a holds", a2)
	}
	if err := (store{dir}).release("pod-a"); err != nil {
		t.Fatal(err)
	}
	a3, _ := store{dir}.allocate(r, "pod-c")
	if a3 == a1 || a3 == a2 {
		t.Errorf("allocate(pod-c) = %v, want an address never used (a1=%v a2=%v)", a3, a1, a2)
	}
}

// inTestNetns runs fn on a thread inside a fresh network namespace, which
// plays the node: nothing done there can reach the real network.
func inTestNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		ns, err := netns.New()
		if err != nil {
			t.Errorf("netns.New: %v", err)
			return
		}
		defer ns.Close()
		fn()
	}()
	<-done
}

func TestAttachThreePods(t *testing.T) {
	inTestNetns(t, func() {
		dir := t.TempDir()
		n := New(Config{StateDir: filepath.Join(dir, "ipam"), BridgeName: "sktest0"})
		if ok, _ := n.Ready(); ok {
			t.Errorf("Ready() before SetPodCIDR = true")
		}
		if err := n.SetPodCIDR("10.88.0.0/24"); err != nil {
			t.Errorf("SetPodCIDR: %v", err)
			return
		}
		seen := map[netip.Addr]bool{}
		for i := 0; i < 3; i++ {
			id := fmt.Sprintf("sandbox-%d", i)
			path := filepath.Join(dir, id, "netns")
			if err := CreateNetns(path); err != nil {
				t.Errorf("CreateNetns: %v", err)
				return
			}
			defer RemoveNetns(path)
			at, err := n.Attach(id, path)
			if err != nil {
				t.Errorf("Attach(%s): %v", id, err)
				return
			}
			defer n.Detach(id)
			if seen[at.IP] || !netip.MustParsePrefix("10.88.0.0/24").Contains(at.IP) || at.IP == at.Gateway {
				t.Errorf("Attach(%s) IP = %v, want a fresh pod address in 10.88.0.0/24", id, at.IP)
			}
			seen[at.IP] = true
			if l, err := netlink.LinkByName(at.HostIf); err != nil || l.Attrs().MasterIndex == 0 {
				t.Errorf("host end %s: %v (master %v), want a bridge port", at.HostIf, err, l)
			}
			var ln net.Listener
			if err := Do(path, func() (err error) { ln, err = net.Listen("tcp", ":8080"); return }); err != nil {
				t.Errorf("listen in %s: %v", id, err)
				return
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					io.WriteString(c, id)
					c.Close()
				}
			}()
			c, err := net.DialTimeout("tcp", net.JoinHostPort(at.IP.String(), "8080"), 2*time.Second)
			if err != nil {
				t.Errorf("dial %v:8080 from the node: %v", at.IP, err)
				return
			}
			b, _ := io.ReadAll(c)
			c.Close()
			if string(b) != id {
				t.Errorf("%v:8080 answered %q, want %q", at.IP, b, id)
			}
		}
	})
}
