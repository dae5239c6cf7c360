package proxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The nftables backend's rules are made of parts. Each part carries the
// text that names it, in nft's own syntax, and the expressions the kernel
// runs for it, so a rule can be compared and tested as text and applied as
// expressions, and the two cannot disagree: every value an expression holds
// is in its text.

// nftPart is one match, statement or verdict of a rule.
type nftPart struct {
	text  string
	exprs []expr.Any
}

// nftRule is one rule of a chain.
type nftRule struct {
	text  string
	exprs []expr.Any
}

func newRule(parts ...nftPart) nftRule {
	n := 0
	for _, p := range parts {
		n += len(p.exprs)
	}
	r := nftRule{exprs: make([]expr.Any, 0, n)}
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = p.text
		r.exprs = append(r.exprs, p.exprs...)
	}
	r.text = strings.Join(texts, " ")
	return r
}

// numgenVmap picks one of n verdicts at random from the verdict map set,
// whose keys are 0 to n-1.
func numgenVmap(n int, set string) nftPart {
	return nftPart{fmt.Sprintf("numgen random mod %d vmap @%s", n, set), []expr.Any{
		&expr.Numgen{Register: 1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: 1, SetName: set, IsDestRegSet: true, DestRegister: 0},
	}}
}

// Offsets of the IPv4 header fields the rules read.
const (
	offSaddr = 12
	offDaddr = 16
)

// ipAddr matches the IPv4 source or destination against a prefix.
func ipAddr(field string, p netip.Prefix, negate bool) nftPart {
	off := uint32(offSaddr)
	if field == "daddr" {
		off = offDaddr
	}
	op, rel := expr.CmpOpEq, ""
	if negate {
		op, rel = expr.CmpOpNeq, "!= "
	}
	p = p.Masked()
	a := p.Addr().As4()
	text := "ip " + field + " " + rel + p.String()
	if p.Bits() == 32 {
		text = "ip " + field + " " + rel + p.Addr().String()
	}
	if p.Bits()%8 == 0 {
		n := uint32(p.Bits() / 8)
		return nftPart{text, []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: op, Register: 1, Data: a[:n]},
		}}
	}
	m := uint32(0xffffffff) << (32 - p.Bits())
	return nftPart{text, []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.BigEndian.PutUint32(m), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: a[:]},
	}}
}

func ipSaddr(p netip.Prefix, negate bool) nftPart { return ipAddr("saddr", p, negate) }
func ipDaddr(p netip.Prefix, negate bool) nftPart { return ipAddr("daddr", p, negate) }

// l4Protos are the transport protocols a Service port may have.
var l4Protos = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

func l4proto(name string) nftPart {
	return nftPart{"meta l4proto " + name, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4Protos[name]}},
	}}
}

// thDport matches the transport header's destination port, at the same
// offset for TCP, UDP and SCTP.
func thDport(port int32) nftPart {
	return nftPart{"th dport " + strconv.Itoa(int(port)), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
	}}
}

// bitsAny and bitsNone test a host-order 32-bit value that expression e
// loads into register 1 against mask.
func bitsAny(text string, e expr.Any, mask uint32) nftPart {
	return nftPart{text, []expr.Any{e,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}}
}

func bitsNone(text string, e expr.Any, mask uint32) nftPart {
	return nftPart{text, []expr.Any{e,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
	}}
}

// ipsDstNAT is the conntrack status bit of a destination-NATed connection.
const ipsDstNAT = 1 << 5

func ctStateNew() nftPart {
	return bitsAny("ct state new", &expr.Ct{Register: 1, Key: expr.CtKeySTATE}, expr.CtStateBitNEW)
}

func ctStateInvalid() nftPart {
	return bitsAny("ct state invalid", &expr.Ct{Register: 1, Key: expr.CtKeySTATE}, expr.CtStateBitINVALID)
}

func ctStateEstablishedRelated() nftPart {
	return bitsAny("ct state established,related", &expr.Ct{Register: 1, Key: expr.CtKeySTATE}, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

func ctStateNotEstablishedRelated() nftPart {
	return bitsNone("ct state ! established,related", &expr.Ct{Register: 1, Key: expr.CtKeySTATE}, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

func ctStatusNotDNAT() nftPart {
	return bitsNone("ct status ! dnat", &expr.Ct{Register: 1, Key: expr.CtKeySTATUS}, ipsDstNAT)
}

func markSet(bit uint32) nftPart {
	return bitsAny(fmt.Sprintf("meta mark & %#x != 0", bit), &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, bit)
}

func markClear(bit uint32) nftPart {
	return bitsNone(fmt.Sprintf("meta mark & %#x == 0", bit), &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, bit)
}

// fibDaddrLocal matches packets to an address of this host.
func fibDaddrLocal() nftPart {
	return nftPart{"fib daddr type local", []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}}
}

// Registers of a concatenation: each field takes 32-bit registers from
// NFT_REG32_00 on (register 1 is the first four of them).
const (
	reg32x01 = 9
	reg32x02 = 10
)

// vmapAddrPort dispatches on `ip daddr . meta l4proto . th dport` through
// the verdict map set.
func vmapAddrPort(set string) nftPart {
	return nftPart{"ip daddr . meta l4proto . th dport vmap @" + set, []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offDaddr, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32x01},
		&expr.Payload{DestRegister: reg32x02, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set, IsDestRegSet: true, DestRegister: 0},
	}}
}

// vmapPort dispatches on `meta l4proto . th dport` through the verdict map
// set.
func vmapPort(set string) nftPart {
	return nftPart{"meta l4proto . th dport vmap @" + set, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Payload{DestRegister: reg32x01, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set, IsDestRegSet: true, DestRegister: 0},
	}}
}

// saddrIn matches sources that are in the named set.
func saddrIn(set string) nftPart {
	return nftPart{"ip saddr @" + set, []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set},
	}}
}

// updateSaddr adds the source to the named set, or restarts its timeout.
func updateSaddr(set string, timeout time.Duration) nftPart {
	return nftPart{fmt.Sprintf("update @%s { ip saddr timeout %ds }", set, int64(timeout/time.Second)), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offSaddr, Len: 4},
		&expr.Dynset{SrcRegKey: 1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout},
	}}
}

// markOr sets bit in the packet mark; markXor flips it.
func markOr(bit uint32) nftPart {
	return nftPart{fmt.Sprintf("meta mark set meta mark | %#x", bit), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}}
}

func markXor(bit uint32) nftPart {
	return nftPart{fmt.Sprintf("meta mark set meta mark ^ %#x", bit), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(0xffffffff), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}}
}

func masqueradeFullyRandom() nftPart {
	return nftPart{"masquerade fully-random", []expr.Any{&expr.Masq{FullyRandom: true}}}
}

// dnatTo rewrites the destination to ip:port.
func dnatTo(ip netip.Addr, port int32) nftPart {
	a := ip.As4()
	return nftPart{"dnat to " + netip.AddrPortFrom(ip, uint16(port)).String(), []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2},
	}}
}

func rejectTCPReset() nftPart {
	return nftPart{"reject with tcp reset", []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}}
}

// rejectPortUnreachable answers with ICMP port unreachable (code 3).
func rejectPortUnreachable() nftPart {
	return nftPart{"reject", []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}}}
}

func jumpTo(chain string) nftPart {
	return nftPart{"jump " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}

func gotoChain(chain string) nftPart {
	return nftPart{"goto " + chain, []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}}
}

func verdictAccept() nftPart {
	return nftPart{"accept", []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
}
func verdictDrop() nftPart { return nftPart{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}} }
func verdictReturn() nftPart {
	return nftPart{"return", []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}}
}
