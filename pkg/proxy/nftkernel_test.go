package proxy

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/skiff-org/skiff/pkg/proxy/netnstest"
)

func requireNFT(t testing.TB) {
	t.Helper()
	netnstest.RequireNetAdmin(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft to read tables back (apt-get install -y nftables)")
	}
}

func newNFTBackend(ns string) *nftBackend {
	return &nftBackend{kernel: &nftKernel{host: &host{netns: ns}}, log: slog.New(slog.DiscardHandler)}
}

// listTable is `nft -j list table ip skiff` in ns, with what differs between
// equal tables (handles, the order of elements) taken out, one object per
// line, sorted; "" when there is no table.
func listTable(t testing.TB, ns string) string {
	t.Helper()
	var out []byte
	err := netnstest.Do(ns, func() (err error) {
		out, err = exec.Command("nft", "-j", "list", "table", "ip", nftTableName).Output()
		return err
	})
	if err != nil {
		return ""
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j: %v: %s", err, out)
	}
	rules := map[string][]string{}
	var lines []string
	for _, obj := range doc.Nftables {
		for kind, o := range obj {
			delete(o, "handle")
			switch kind {
			case "rule":
				e, _ := json.Marshal(o["expr"])
				rules[o["chain"].(string)] = append(rules[o["chain"].(string)], string(e))
			case "set", "map":
				if elems, ok := o["elem"].([]any); ok {
					var s []string
					for _, e := range elems {
						b, _ := json.Marshal(e)
						s = append(s, string(b))
					}
					sort.Strings(s)
					o["elem"] = s
				}
				b, _ := json.Marshal(o)
				lines = append(lines, kind+" "+string(b))
			case "chain":
				b, _ := json.Marshal(o)
				lines = append(lines, kind+" "+string(b))
			}
		}
	}
	for chain, rs := range rules {
		lines = append(lines, "rules of "+chain+": "+strings.Join(rs, "\n\t"))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestNFTApply loads a sequence of tables into a real kernel, each on top of
// the last with an incremental transaction, and checks after every step
// that the kernel holds exactly what a fresh full load of the same snapshot
// gives in another namespace; full resyncs over the existing table are
// mixed in.
func TestNFTApply(t *testing.T) {
	requireNFT(t)
	incNS, freshNS := netnstest.New(t, "nft-inc"), netnstest.New(t, "nft-fresh")
	inc := newNFTBackend(incNS)
	var snaps []Snapshot
	cases := goldenCases()
	for _, name := range sortedKeys(cases) {
		snaps = append(snaps, cases[name])
	}
	rng := rand.New(rand.NewPCG(3, 4))
	s := snapOf(nil)
	for range 40 {
		s = mutate(rng, s)
		snaps = append(snaps, s)
	}
	snaps = append(snaps, snapOf(nil))
	for i, snap := range snaps {
		full := i%10 == 5
		stats, err := inc.sync(snap, full)
		if err != nil {
			t.Fatalf("step %d: sync(full=%v): %v", i, full, err)
		}
		if i > 0 && !full && stats.Full {
			t.Errorf("step %d: sync was full, want incremental", i)
		}
		fresh := newNFTBackend(freshNS)
		if _, _, err := fresh.kernel.apply(planCreate(buildNFT(snap), true)); err != nil {
			t.Fatalf("step %d: fresh load: %v", i, err)
		}
		if got, want := listTable(t, incNS), listTable(t, freshNS); got != want {
			t.Fatalf("step %d: after %d messages the kernel holds\n%s\nwant (fresh load)\n%s", i, stats.Messages, got, want)
		}
	}
}

// TestNFTFullSyncRepairs: a full sync puts back what someone else changed
// in the table, and replaces a table whose objects have other types.
func TestNFTFullSyncRepairs(t *testing.T) {
	requireNFT(t)
	ns, freshNS := netnstest.New(t, "nft-repair"), netnstest.New(t, "nft-repair-f")
	snap := goldenCases()["nodeport-affinity"]
	if _, _, err := newNFTBackend(freshNS).kernel.apply(planCreate(buildNFT(snap), false)); err != nil {
		t.Fatal(err)
	}
	want := listTable(t, freshNS)
	for _, tc := range []struct{ name, script string }{
		{"foreign rule, chain and element; a chain flushed; a set missing", `
add rule ip skiff services drop
add chain ip skiff intruder
add element ip skiff service-nodeports { udp . 1 : goto intruder }
flush chain ip skiff masquerading
delete element ip skiff service-ips { 192.0.2.5 . tcp . 80 }
flush chain ip skiff service-checks
delete map ip skiff no-endpoint-services
`},
		{"a map of another type", `
delete table ip skiff
add table ip skiff
add set ip skiff service-ips { type ipv4_addr; }
`},
		{"no table", `
delete table ip skiff
`},
	} {
		b := newNFTBackend(ns)
		if _, err := b.sync(snap, true); err != nil {
			t.Fatalf("%s: first sync: %v", tc.name, err)
		}
		err := netnstest.Do(ns, func() error {
			cmd := exec.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(tc.script)
			if out, err := cmd.CombinedOutput(); err != nil {
				return errors.New(string(out))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: nft -f: %v", tc.name, err)
		}
		if _, err := b.sync(snap, true); err != nil {
			t.Fatalf("%s: full sync: %v", tc.name, err)
		}
		if got := listTable(t, ns); got != want {
			t.Errorf("%s: after a full sync the kernel holds\n%s\nwant\n%s", tc.name, got, want)
		}
	}
}

// TestNFTFailedTransaction: a transaction the kernel refuses changes
// nothing, and its error names the operation.
func TestNFTFailedTransaction(t *testing.T) {
	requireNFT(t)
	ns := netnstest.New(t, "nft-fail")
	b := newNFTBackend(ns)
	snap := goldenCases()["clusterip"]
	if _, err := b.sync(snap, true); err != nil {
		t.Fatal(err)
	}
	before := listTable(t, ns)
	bad := &nftChain{name: "bad", rules: []nftRule{newRule(jumpTo("no-such-chain"))}}
	_, _, err := b.kernel.apply([]nftOp{{kind: opFlushChain, name: nftServices}, {kind: opAddChain, chain: bad}, {kind: opAddRules, chain: bad}})
	if !errors.Is(err, ErrNFTables) || !strings.Contains(err.Error(), "add rule bad jump no-such-chain: no such file or directory") {
		t.Errorf("apply(jump to a missing chain) = %v, want it to name the rule", err)
	}
	if got := listTable(t, ns); got != before {
		t.Errorf("after a failed transaction the kernel holds\n%s\nwant what it held before\n%s", got, before)
	}
}

func TestNFTProbe(t *testing.T) {
	requireNFT(t)
	ns := netnstest.New(t, "nft-probe")
	k := &nftKernel{host: &host{netns: ns}}
	if err := k.probe(); err != nil {
		t.Fatalf("probe() = %v", err)
	}
	if out := netnstest.Output(t, ns, "nft", "list", "ruleset"); out != "" {
		t.Errorf("probe() left\n%s", out)
	}
}

// TestBackendCleanup: each backend removes what the other left behind.
func TestBackendCleanup(t *testing.T) {
	requireNFT(t)
	ns := netnstest.New(t, "cleanup")
	snap := goldenCases()["nodeport-affinity"]
	ipt := &iptablesBackend{host: &host{netns: ns, suffix: "-" + BackendLegacy}}
	if _, err := ipt.sync(snap, true); err != nil {
		t.Fatal(err)
	}
	nft := newNFTBackend(ns)
	if _, err := nft.sync(snap, true); err != nil {
		t.Fatal(err)
	}
	if err := nft.cleanupOthers(); err != nil {
		t.Fatalf("nftables cleanupOthers() = %v", err)
	}
	if out := netnstest.Output(t, ns, "iptables-legacy-save"); strings.Contains(out, "SKIFF") {
		t.Errorf("iptables after the nftables backend's cleanup:\n%s", out)
	}
	if err := ipt.cleanupOthers(); err != nil {
		t.Fatalf("iptables cleanupOthers() = %v", err)
	}
	if got := listTable(t, ns); got != "" {
		t.Errorf("nftables after the iptables backend's cleanup:\n%s", got)
	}
	if err := ipt.cleanupOthers(); err != nil {
		t.Errorf("iptables cleanupOthers() with nothing to clean = %v", err)
	}
}

// TestNFTDrift: the cheap check notices a table changed behind the
// backend's back, and ignores changes elsewhere in the ruleset.
func TestNFTDrift(t *testing.T) {
	requireNFT(t)
	ns := netnstest.New(t, "nft-drift")
	b := newNFTBackend(ns)
	snap := goldenCases()["clusterip"]
	nft := func(script string) {
		t.Helper()
		err := netnstest.Do(ns, func() error {
			cmd := exec.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				return errors.New(string(out))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("nft -f: %v", err)
		}
	}
	if b.drifted() != true {
		t.Errorf("drifted() before any sync = false, want true")
	}
	if _, err := b.sync(snap, true); err != nil {
		t.Fatal(err)
	}
	if b.gen == 0 {
		t.Errorf("no generation echoed by the transaction")
	}
	for _, tc := range []struct {
		name, script string
		want         bool
	}{
		{"nothing", "", false},
		{"another table", "add table ip other\nadd chain ip other c\n", false},
		{"a chain added to ours", "add chain ip skiff intruder\n", true},
		{"our table deleted", "delete table ip skiff\n", true},
	} {
		if tc.script != "" {
			nft(tc.script)
		}
		if got := b.drifted(); got != tc.want {
			t.Errorf("%s: drifted() = %v, want %v", tc.name, got, tc.want)
		}
		// Repair, and check that the repair is not itself drift.
		if _, err := b.sync(snap, true); err != nil {
			t.Fatal(err)
		}
		if b.drifted() {
			t.Errorf("%s: drifted() right after a sync = true", tc.name)
		}
	}
	// An incremental sync after drift is full.
	nft("delete table ip skiff\n")
	st, err := b.sync(goldenCases()["no-endpoints"], false)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Full {
		t.Errorf("sync after the table was deleted was incremental, want full")
	}
}
