package proxy

import (
	"strings"
	"testing"

	"github.com/skiff-org/skiff/pkg/proxy/netnstest"
)

// TestRulesApply loads every golden ruleset into a real kernel, in a fresh
// namespace, so that the golden files cannot drift from what iptables takes.
func TestRulesApply(t *testing.T) {
	netnstest.RequireNetAdmin(t)
	for _, b := range []string{BackendLegacy, BackendNFT} {
		t.Run(b, func(t *testing.T) { testRulesApply(t, b) })
	}
}

func testRulesApply(t *testing.T, backend string) {
	ns := netnstest.New(t, "apply-"+backend)
	h := &host{netns: ns, suffix: "-" + backend}
	for name, snap := range goldenCases() {
		st, err := h.save()
		if err != nil {
			t.Fatal(err)
		}
		text, _ := Render(st, Build(snap))
		if err := h.restore(text); err != nil {
			t.Errorf("%s: iptables-restore: %v", name, err)
		}
	}
	if err := h.ensureJumps(); err != nil {
		t.Fatal(err)
	}
	if err := h.ensureJumps(); err != nil {
		t.Fatal(err)
	}
	out := netnstest.Output(t, ns, "iptables-"+backend+"-save")
	for _, j := range jumps {
		line := "-A " + j.chain + " " + saveForm(j.rule)
		if n := countLines(out, line); n != 1 {
			t.Errorf("%q after two ensureJumps: %d times, want 1:\n%s", line, n, out)
		}
	}
}

func countLines(text, line string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			n++
		}
	}
	return n
}
