package proxy

import (
	"bufio"
	"bytes"
	"sort"
	"strings"
)

// State is what skiff's chains hold in the kernel as far as the proxy knows:
// table ("nat", "filter") → chain → its rules joined by newlines.
type State map[string]map[string]string

// unknown marks a chain that exists but whose rules the proxy did not write
// (found at start-up, or left by a failed restore).
const unknown = "\x00unknown"

// chainPrefix is what every chain skiff owns starts with.
const chainPrefix = "SKIFF-"

// ParseSave reads iptables-save output and records skiff's chains as present
// with unknown content, so that the next Render rewrites or deletes each.
func ParseSave(out []byte) State {
	st := State{}
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"+chainPrefix) && table != "":
			name, _, _ := strings.Cut(line[1:], " ")
			if st[table] == nil {
				st[table] = map[string]string{}
			}
			st[table][name] = unknown
		}
	}
	return st
}

// Render returns the input for `iptables-restore --noflush` that turns the
// chains in prev into next, and the state after it applies. Chains whose
// rules did not change are left out — --noflush keeps them — so one endpoint
// change rewrites only the few chains it touches; chains that are no longer
// wanted are flushed and deleted after every rule that jumped to them has been
// rewritten.
func Render(prev State, next Ruleset) ([]byte, State) {
	var b bytes.Buffer
	after := State{}
	for _, t := range []struct {
		name   string
		chains []Chain
	}{{"filter", next.Filter}, {"nat", next.NAT}} {
		old := prev[t.name]
		cur := make(map[string]string, len(t.chains))
		var changed []Chain
		for _, c := range t.chains {
			text := strings.Join(c.Rules, "\n")
			cur[c.Name] = text
			if was, ok := old[c.Name]; !ok || was != text {
				changed = append(changed, c)
			}
		}
		var stale []string
		for name := range old {
			if _, ok := cur[name]; !ok {
				stale = append(stale, name)
			}
		}
		sort.Strings(stale)
		after[t.name] = cur
		if len(changed) == 0 && len(stale) == 0 {
			continue
		}
		b.WriteString("*" + t.name + "\n")
		for _, c := range changed {
			b.WriteString(":" + c.Name + " - [0:0]\n")
		}
		for _, name := range stale {
			b.WriteString(":" + name + " - [0:0]\n")
		}
		for _, c := range changed {
			for _, r := range c.Rules {
				b.WriteString("-A " + c.Name + " " + r + "\n")
			}
		}
		for _, name := range stale {
			b.WriteString("-X " + name + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes(), after
}

// RemoveInput returns the input for `iptables-restore --noflush` that
// deletes every chain of skiff's found in iptables-save output, and every
// rule elsewhere that jumps to one: what another backend runs when it takes
// over. Nothing when there is nothing of skiff's.
func RemoveInput(save []byte) []byte {
	var b bytes.Buffer
	var table string
	var chains, jumps []string
	flush := func() {
		if len(chains) == 0 && len(jumps) == 0 {
			return
		}
		b.WriteString("*" + table + "\n")
		for _, c := range chains {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, j := range jumps {
			b.WriteString("-D " + j + "\n")
		}
		for _, c := range chains {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			table, chains, jumps = line[1:], nil, nil
		case line == "COMMIT":
			flush()
			table = ""
		case strings.HasPrefix(line, ":"+chainPrefix):
			name, _, _ := strings.Cut(line[1:], " ")
			chains = append(chains, name)
		case strings.HasPrefix(line, "-A "):
			rule := line[3:]
			if !strings.HasPrefix(rule, chainPrefix) && (strings.Contains(rule, " -j "+chainPrefix) || strings.Contains(rule, " -g "+chainPrefix)) {
				jumps = append(jumps, rule)
			}
		}
	}
	return b.Bytes()
}
