package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNFTables wraps what the kernel said about an nftables transaction.
var ErrNFTables = errors.New("proxy: nftables")

// nftKernel reads and writes skiff's table in one network namespace.
type nftKernel struct {
	host *host
}

// conn opens a library connection (for reading) in the namespace; done
// releases it.
func (k *nftKernel) conn() (c *nftables.Conn, done func(), err error) {
	if k.host.netns == "" {
		c, err = nftables.New()
		return c, func() {}, err
	}
	f, err := os.Open(k.host.netns)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: open netns %s: %w", ErrHost, k.host.netns, err)
	}
	c, err = nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return c, func() { f.Close() }, nil
}

// inventory lists the chains and named sets of skiff's table; nil when there
// is no table.
func (k *nftKernel) inventory() (*nftInventory, error) {
	c, done, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer done()
	t, err := c.ListTableOfFamily(nftTableName, nftables.TableFamilyIPv4)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: list table: %w", ErrNFTables, err)
	}
	inv := &nftInventory{chains: map[string]bool{}, sets: map[string]bool{}}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("%w: list chains: %w", ErrNFTables, err)
	}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == nftTableName {
			inv.chains[ch.Name] = true
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("%w: list sets: %w", ErrNFTables, err)
	}
	for _, s := range sets {
		if !s.Anonymous {
			inv.sets[s.Name] = true
		}
	}
	return inv, nil
}

// apply runs ops as one transaction and returns the number of netlink
// messages it took and the ruleset generation it made.
func (k *nftKernel) apply(ops []nftOp) (msgs int, gen uint32, err error) {
	return k.applyTo(nftTableName, ops)
}

func (k *nftKernel) applyTo(table string, ops []nftOp) (int, uint32, error) {
	if len(ops) == 0 {
		return 0, 0, nil
	}
	b := newNFTBatch(table, ops)
	b.encode()
	msgs, err := b.finish()
	if err != nil {
		return 0, 0, err
	}
	gen, err := k.send(msgs, b.describe)
	return len(msgs) - 2, gen, err
}

// probe reports whether the kernel has everything the table needs: it
// builds a sample table under another name and deletes it in the same
// transaction, so nothing is left behind and no packet sees it.
func (k *nftKernel) probe() error {
	ops := append(planCreate(buildNFT(probeSnapshot()), false), nftOp{kind: opDeleteTable})
	_, _, err := k.applyTo(nftTableName+"-probe", ops)
	return err
}

// deleteTable removes skiff's table if there is one.
func (k *nftKernel) deleteTable() error {
	_, _, err := k.apply([]nftOp{{kind: opAddTable}, {kind: opDeleteTable}})
	return err
}

// nftBatch collects the messages of one transaction. The library encodes
// them; skiff sends them itself (see send), so the library's connection is
// given a dial function that only captures the finished batch.
type nftBatch struct {
	conn  *nftables.Conn
	table *nftables.Table
	ops   []nftOp
	refs  []nftMsgRef // which op, and which line of it, each message is

	setID  uint32
	msgs   []netlink.Message
	encErr error
}

func newNFTBatch(table string, ops []nftOp) *nftBatch {
	b := &nftBatch{table: &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}, ops: ops}
	ack := func() []netlink.Message {
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}
	}
	b.conn, _ = nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req != nil {
			b.msgs = req
		}
		return ack(), nil // the library waits for one acknowledgement per message
	}))
	return b
}

// Elements per message: a netlink attribute holds at most 64 KiB.
const nftElemsPerMessage = 256

// nftMsgRef says what a message does: op.lines()[line] of the op at index op.
type nftMsgRef struct{ op, line int }

func (b *nftBatch) note(op, line int) { b.refs = append(b.refs, nftMsgRef{op, line}) }

// describe says what the i-th message of the batch (0 is the first after
// the batch begin) does.
func (b *nftBatch) describe(i int) string {
	if i < 0 || i >= len(b.refs) {
		return "the batch"
	}
	r := b.refs[i]
	return b.ops[r.op].lines()[r.line]
}

func (b *nftBatch) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: b.table}
}

func (b *nftBatch) set(name string) *nftables.Set { return &nftables.Set{Name: name, Table: b.table} }

// encode hands every operation to the library's connection.
func (b *nftBatch) encode() {
	for i := range b.ops {
		b.encodeOp(i)
	}
}

func (b *nftBatch) encodeOp(i int) {
	op := b.ops[i]
	switch op.kind {
	case opAddTable:
		b.conn.AddTable(b.table)
	case opDeleteTable:
		b.conn.DelTable(b.table)
	case opAddSet:
		b.setID++
		s := &nftables.Set{Table: b.table, Name: op.set.name, ID: b.setID}
		switch op.set.kind {
		case nftMapAddrPort:
			s.KeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
			s.Concatenation, s.IsMap, s.DataType = true, true, nftables.TypeVerdict
		case nftMapPort:
			s.KeyType = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
			s.Concatenation, s.IsMap, s.DataType = true, true, nftables.TypeVerdict
		case nftMapIndex:
			s.KeyType, s.KeyByteOrder, s.IsMap, s.DataType = nftables.TypeInteger, binaryutil.NativeEndian, true, nftables.TypeVerdict
		case nftAffinity:
			s.KeyType, s.HasTimeout, s.Dynamic, s.Size = nftables.TypeIPAddr, true, true, 65535
		}
		b.fail(b.conn.AddSet(s, nil))
	case opDeleteSet:
		b.conn.DelSet(b.set(op.name))
	case opFlushSet:
		b.conn.FlushSet(b.set(op.name))
	case opAddChain:
		c := b.chain(op.chain.name)
		if h := op.chain.hook; h != nil {
			hook, prio := h.hooknum, h.priority
			c.Type, c.Hooknum, c.Priority = h.typ, &hook, &prio
		}
		b.conn.AddChain(c)
	case opFlushChain:
		b.conn.FlushChain(b.chain(op.name))
	case opDeleteChain:
		b.conn.DelChain(b.chain(op.name))
	case opAddRules:
		c := b.chain(op.chain.name)
		for j, r := range op.chain.rules {
			b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: c, Exprs: r.exprs})
			b.note(i, j)
		}
		return
	case opAddElems, opDeleteElems:
		s := b.set(op.name)
		for start := 0; start < len(op.elems); start += nftElemsPerMessage {
			end := min(start+nftElemsPerMessage, len(op.elems))
			vals := make([]nftables.SetElement, 0, end-start)
			for _, e := range op.elems[start:end] {
				v := nftables.SetElement{Key: e.key}
				if op.kind == opAddElems {
					v.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.target}
					v.Comment = e.comment
				}
				vals = append(vals, v)
			}
			if op.kind == opAddElems {
				b.fail(b.conn.SetAddElements(s, vals))
			} else {
				b.fail(b.conn.SetDeleteElements(s, vals))
			}
			b.note(i, 0)
		}
		return
	}
	b.note(i, 0)
}

func (b *nftBatch) fail(err error) {
	if err != nil && b.encErr == nil {
		b.encErr = err
	}
}

// finish returns the encoded batch, begin and end messages included.
func (b *nftBatch) finish() ([]netlink.Message, error) {
	if b.encErr != nil {
		return nil, fmt.Errorf("%w: encode: %w", ErrNFTables, b.encErr)
	}
	if err := b.conn.Flush(); err != nil {
		return nil, fmt.Errorf("%w: encode: %w", ErrNFTables, err)
	}
	if len(b.msgs) != len(b.refs)+2 {
		return nil, fmt.Errorf("%w: encoded %d messages for %d operations", ErrNFTables, len(b.msgs)-2, len(b.refs))
	}
	return b.msgs, nil
}

// send hands one batch to the kernel and waits for its verdict; it returns
// the ruleset generation the batch's commit made.
//
// The library asks for an acknowledgement of every message and for every
// rule to be echoed back, and reads them one receive at a time; for the
// 38,000 messages of a full sync of 1,000 services that took longer than
// the kernel's own work. Here only the last message asks for an
// acknowledgement: the kernel handles a batch within the send call, all or
// nothing, and reports every failing message with its sequence number, so
// the last message's acknowledgement or an error is the whole answer. The
// first message asks for an echo, which brings the new generation.
func (k *nftKernel) send(msgs []netlink.Message, describe func(int) string) (uint32, error) {
	const base = 1
	size := 0
	for _, m := range msgs {
		size += 16 + (len(m.Data)+3)&^3
	}
	buf := make([]byte, 0, size)
	last := len(msgs) - 2
	for i, m := range msgs {
		flags := m.Header.Flags &^ (netlink.Acknowledge | unix.NLM_F_ECHO)
		if i == 1 {
			// The commit echoes the generation to the sender when the
			// first message after the batch begin asks for an echo.
			flags |= unix.NLM_F_ECHO
		}
		if i == last {
			flags |= netlink.Acknowledge
		}
		buf = appendMessage(buf, uint16(m.Header.Type), uint16(flags), uint32(base+i), m.Data)
	}
	fd, err := k.socket(size + 64<<10)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("%w: send %d messages (%d bytes): %w", ErrNFTables, len(msgs)-2, size, err)
	}

	type failure struct {
		seq   uint32
		errno unix.Errno
	}
	var failed []failure
	var gen uint32
	err = receive(fd, func(r syscall.NetlinkMessage) (bool, error) {
		if g, ok := generationOf(r); ok {
			gen = g
		}
		if r.Header.Type != unix.NLMSG_ERROR || len(r.Data) < 4 {
			return false, nil
		}
		if code := int32(binary.NativeEndian.Uint32(r.Data[:4])); code != 0 {
			failed = append(failed, failure{r.Header.Seq, unix.Errno(-code)})
		}
		return r.Header.Seq == uint32(base+last), nil
	})
	if len(failed) > 0 {
		f := failed[0]
		return 0, fmt.Errorf("%w: %s: %w (%d of %d messages failed; nothing was changed)", ErrNFTables, describe(int(f.seq)-base-1), f.errno, len(failed), len(msgs)-2)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: waiting for the kernel's answer to %d messages: %w", ErrNFTables, len(msgs)-2, err)
	}
	return gen, nil
}

// generation returns the ruleset generation, which every committed
// transaction, anyone's, moves on.
func (k *nftKernel) generation() (uint32, error) {
	fd, err := k.socket(64 << 10)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	req := appendMessage(nil, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 1, []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0})
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("%w: get generation: %w", ErrNFTables, err)
	}
	var gen uint32
	var found bool
	err = receive(fd, func(r syscall.NetlinkMessage) (bool, error) {
		if g, ok := generationOf(r); ok {
			gen, found = g, true
		}
		if r.Header.Type == unix.NLMSG_ERROR && len(r.Data) >= 4 {
			if code := int32(binary.NativeEndian.Uint32(r.Data[:4])); code != 0 {
				return true, unix.Errno(-code)
			}
			return true, nil
		}
		return false, nil
	})
	if err == nil && !found {
		err = errors.New("no generation in the answer")
	}
	if err != nil {
		return 0, fmt.Errorf("%w: get generation: %w", ErrNFTables, err)
	}
	return gen, nil
}

// socket opens a netfilter netlink socket in the namespace, with room to
// send sndbuf bytes at once.
func (k *nftKernel) socket(sndbuf int) (int, error) {
	var fd int
	err := k.host.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%w: netlink socket: %w", ErrNFTables, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	return fd, nil
}

// receive reads answers and hands each message to handle until handle says
// it was the last, or returns an error. Once an error has been seen, what
// is left is read without waiting: the kernel queues all of its answer
// before the send returns.
func receive(fd int, handle func(syscall.NetlinkMessage) (bool, error)) error {
	buf := make([]byte, 64<<10)
	var first error
	for {
		flags := 0
		if first != nil {
			flags = unix.MSG_DONTWAIT
		}
		n, _, err := unix.Recvfrom(fd, buf, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if first != nil {
				return first
			}
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			done, err := handle(m)
			if err != nil && first == nil {
				first = err
			}
			if done {
				return first
			}
		}
	}
}

// generationOf reads the generation from a NEWGEN message.
func generationOf(m syscall.NetlinkMessage) (uint32, bool) {
	if m.Header.Type != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN || len(m.Data) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32(), true
		}
	}
	return 0, false
}

func appendMessage(buf []byte, typ, flags uint16, seq uint32, data []byte) []byte {
	buf = binary.NativeEndian.AppendUint32(buf, uint32(16+len(data)))
	buf = binary.NativeEndian.AppendUint16(buf, typ)
	buf = binary.NativeEndian.AppendUint16(buf, flags)
	buf = binary.NativeEndian.AppendUint32(buf, seq)
	buf = binary.NativeEndian.AppendUint32(buf, 0)
	buf = append(buf, data...)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	return buf
}

// probeSnapshot has a NodePort service with session affinity and two
// endpoints, which uses every kind of expression the table has.
func probeSnapshot() Snapshot {
	name, port, proto := "p", int32(80), v1.ProtocolTCP
	meta := metav1.ObjectMeta{Namespace: "probe", Name: "probe", Labels: map[string]string{discovery.LabelServiceName: "probe"}}
	return Snapshot{
		ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", LocalhostNodePorts: true,
		Services: []*v1.Service{{
			ObjectMeta: meta,
			Spec: v1.ServiceSpec{
				Type: v1.ServiceTypeNodePort, ClusterIP: "10.43.0.1", SessionAffinity: v1.ServiceAffinityClientIP,
				Ports: []v1.ServicePort{{Name: name, Port: port, NodePort: 30000, Protocol: proto}},
			},
		}},
		Slices: []*discovery.EndpointSlice{{
			ObjectMeta:  meta,
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
			Endpoints:   []discovery.Endpoint{{Addresses: []string{"10.42.0.1"}}, {Addresses: []string{"10.42.0.2"}}},
		}},
	}
}
