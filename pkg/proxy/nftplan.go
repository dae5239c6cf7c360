package proxy

import (
	"sort"
	"strings"
)

// A plan is the list of operations of one nftables transaction. Planning is
// pure, like building: the applier only encodes the operations it is given.

type nftOpKind int

const (
	opAddTable nftOpKind = iota
	opDeleteTable
	opAddSet      // set: its definition, no elements
	opDeleteSet   // name
	opFlushSet    // name: delete all its elements
	opAddChain    // chain: the chain, empty
	opFlushChain  // name: delete all its rules
	opDeleteChain // name: the chain and its rules
	opAddRules    // chain: all its rules, appended
	opAddElems    // name, keys, elems
	opDeleteElems // name, keys, elems
)

type nftOp struct {
	kind  nftOpKind
	name  string
	chain *nftChain
	set   *nftSet
	keys  []string
	elems []nftElem
}

// lines describes op, one line per kernel object it touches, for tests and
// error messages.
func (op nftOp) lines() []string {
	switch op.kind {
	case opAddTable:
		return []string{"add table ip " + nftTableName}
	case opDeleteTable:
		return []string{"delete table ip " + nftTableName}
	case opAddSet:
		return []string{"add set " + op.set.name + " { " + op.set.kind.String() + " }"}
	case opDeleteSet:
		return []string{"delete set " + op.name}
	case opFlushSet:
		return []string{"flush set " + op.name}
	case opAddChain:
		if op.chain.hook != nil {
			return []string{"add chain " + op.chain.name + " { " + op.chain.hook.String() + " }"}
		}
		return []string{"add chain " + op.chain.name}
	case opFlushChain:
		return []string{"flush chain " + op.name}
	case opDeleteChain:
		return []string{"delete chain " + op.name}
	case opAddRules:
		out := make([]string, len(op.chain.rules))
		for i, r := range op.chain.rules {
			out[i] = "add rule " + op.chain.name + " " + r.text
		}
		return out
	case opAddElems:
		elems := make([]string, len(op.keys))
		for i, k := range op.keys {
			elems[i] = k + " : goto " + op.elems[i].target
		}
		return []string{"add element " + op.name + " { " + strings.Join(elems, ", ") + " }"}
	case opDeleteElems:
		return []string{"delete element " + op.name + " { " + strings.Join(op.keys, ", ") + " }"}
	}
	return []string{"unknown op"}
}

func planText(ops []nftOp) string {
	var b strings.Builder
	for _, op := range ops {
		for _, l := range op.lines() {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// nftInventory names what the kernel's table holds.
type nftInventory struct {
	chains map[string]bool
	sets   map[string]bool
}

// matches reports whether the kernel has the chains and sets of t and no
// others.
func (inv *nftInventory) matches(t *nftTable) bool {
	if len(inv.chains) != len(t.chains) || len(inv.sets) != len(t.sets) {
		return false
	}
	for name := range t.chains {
		if !inv.chains[name] {
			return false
		}
	}
	for name := range t.sets {
		if !inv.sets[name] {
			return false
		}
	}
	return true
}

// planCreate builds next from nothing; with replace, whatever table of that
// name exists is deleted first, in the same transaction.
func planCreate(next *nftTable, replace bool) []nftOp {
	ops := make([]nftOp, 0, 3+2*len(next.sets)+2*len(next.chains))
	ops = append(ops, nftOp{kind: opAddTable})
	if replace {
		ops = append(ops, nftOp{kind: opDeleteTable}, nftOp{kind: opAddTable})
	}
	for _, name := range sortedKeys(next.sets) {
		ops = append(ops, nftOp{kind: opAddSet, set: next.sets[name]})
	}
	chains := sortedKeys(next.chains)
	for _, name := range chains {
		ops = append(ops, nftOp{kind: opAddChain, chain: next.chains[name]})
	}
	for _, name := range chains {
		if c := next.chains[name]; len(c.rules) > 0 {
			ops = append(ops, nftOp{kind: opAddRules, chain: c})
		}
	}
	for _, name := range sortedKeys(next.sets) {
		ops = appendElems(ops, opAddElems, next.sets[name], nil)
	}
	return ops
}

// planFull rewrites the whole table over what the kernel has, whoever
// changed it: every chain is flushed and refilled, every map emptied and
// refilled, and what should not be there is deleted. Affinity sets that
// should stay are left alone, so clients keep their endpoints. A set or
// chain of the right name but the wrong type makes the transaction fail;
// the caller then replaces the table with planCreate(next, true).
func planFull(have *nftInventory, next *nftTable) []nftOp {
	if have == nil {
		return planCreate(next, false)
	}
	ops := []nftOp{{kind: opAddTable}}
	for _, name := range sortedKeys(next.sets) {
		if !have.sets[name] {
			ops = append(ops, nftOp{kind: opAddSet, set: next.sets[name]})
		}
	}
	chains := sortedKeys(next.chains)
	for _, name := range chains {
		if !have.chains[name] {
			ops = append(ops, nftOp{kind: opAddChain, chain: next.chains[name]})
		}
	}
	for _, name := range sortedKeys(have.chains) {
		ops = append(ops, nftOp{kind: opFlushChain, name: name})
	}
	for _, name := range sortedKeys(next.sets) {
		if have.sets[name] && next.sets[name].kind != nftAffinity {
			ops = append(ops, nftOp{kind: opFlushSet, name: name})
		}
	}
	for _, name := range chains {
		if c := next.chains[name]; len(c.rules) > 0 {
			ops = append(ops, nftOp{kind: opAddRules, chain: c})
		}
	}
	for _, name := range sortedKeys(next.sets) {
		ops = appendElems(ops, opAddElems, next.sets[name], nil)
	}
	// Sets before chains: a map's elements may jump to a chain.
	for _, name := range sortedKeys(have.sets) {
		if next.sets[name] == nil {
			ops = append(ops, nftOp{kind: opDeleteSet, name: name})
		}
	}
	for _, name := range sortedKeys(have.chains) {
		if next.chains[name] == nil {
			ops = append(ops, nftOp{kind: opDeleteChain, name: name})
		}
	}
	return ops
}

// planIncremental turns the table the last transaction left, prev, into
// next: new chains are added, changed ones flushed and refilled, gone ones
// deleted, and map elements added or deleted one by one. Chains are
// compared by pointer first; the builder reuses the chains of unchanged
// services, so the cost follows what changed.
func planIncremental(prev, next *nftTable) []nftOp {
	var ops, rules []nftOp
	for _, name := range sortedKeys(next.sets) {
		if prev.sets[name] == nil {
			ops = append(ops, nftOp{kind: opAddSet, set: next.sets[name]})
		}
	}
	var added, changed []string
	for name, c := range next.chains {
		switch old := prev.chains[name]; {
		case old == nil:
			added = append(added, name)
		case !old.equal(c):
			changed = append(changed, name)
		}
	}
	sort.Strings(added)
	sort.Strings(changed)
	for _, name := range added {
		ops = append(ops, nftOp{kind: opAddChain, chain: next.chains[name]})
		if len(next.chains[name].rules) > 0 {
			rules = append(rules, nftOp{kind: opAddRules, chain: next.chains[name]})
		}
	}
	for _, name := range changed {
		ops = append(ops, nftOp{kind: opFlushChain, name: name})
		if len(next.chains[name].rules) > 0 {
			rules = append(rules, nftOp{kind: opAddRules, chain: next.chains[name]})
		}
	}
	ops = append(ops, rules...)
	for _, name := range sortedKeys(next.sets) {
		s, old := next.sets[name], prev.sets[name]
		if s == old {
			continue // a service port's own map, built once with its chains
		}
		if s.kind == nftAffinity || old == nil {
			ops = appendElems(ops, opAddElems, s, nil)
			continue
		}
		ops = appendElems(ops, opDeleteElems, old, func(k string, e nftElem) bool {
			n, ok := s.elems[k]
			return !ok || !n.equal(e)
		})
		ops = appendElems(ops, opAddElems, s, func(k string, e nftElem) bool {
			o, ok := old.elems[k]
			return !ok || !o.equal(e)
		})
	}
	var gone []string
	for name := range prev.chains {
		if next.chains[name] == nil {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	// The kernel refuses to delete what something still refers to. Gone
	// chains may jump to each other (ext to svc to sep) and use gone sets,
	// and gone maps jump to gone chains: empty the chains, delete the sets,
	// then delete the chains.
	for _, name := range gone {
		ops = append(ops, nftOp{kind: opFlushChain, name: name})
	}
	for _, name := range sortedKeys(prev.sets) {
		if next.sets[name] == nil {
			ops = append(ops, nftOp{kind: opDeleteSet, name: name})
		}
	}
	for _, name := range gone {
		ops = append(ops, nftOp{kind: opDeleteChain, name: name})
	}
	return ops
}

// appendElems adds one op of kind for the elements of s that keep says to
// (all when keep is nil), if there are any.
func appendElems(ops []nftOp, kind nftOpKind, s *nftSet, keep func(string, nftElem) bool) []nftOp {
	op := nftOp{kind: kind, name: s.name}
	for _, k := range sortedKeys(s.elems) {
		if e := s.elems[k]; keep == nil || keep(k, e) {
			op.keys = append(op.keys, k)
			op.elems = append(op.elems, e)
		}
	}
	if len(op.keys) == 0 {
		return ops
	}
	return append(ops, op)
}
