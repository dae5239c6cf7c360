package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
)

var (
	// ErrFull means every pod CIDR of the cluster CIDR is taken.
	ErrFull = errors.New("nodeipam: cluster CIDR has no free pod CIDR")
	// ErrOutside means a CIDR is not one of the allocator's pod CIDRs.
	ErrOutside = errors.New("nodeipam: CIDR is not a pod CIDR of the cluster CIDR")
	// ErrBadMask means the node mask cannot split the cluster CIDR.
	ErrBadMask = errors.New("nodeipam: node CIDR mask size must be no smaller than the cluster CIDR's and at most the address length")
)

// Allocator hands out fixed-size pod CIDRs from a cluster CIDR. It is not
// safe for concurrent use; the controller serialises calls.
type Allocator struct {
	cluster  netip.Prefix
	maskSize int
	size     int // number of pod CIDRs
	used     []bool
	next     int // where the next search starts, so freed CIDRs are reused last
}

// NewAllocator splits cluster (e.g. 10.42.0.0/16) into /maskSize pod CIDRs.
func NewAllocator(cluster string, maskSize int) (*Allocator, error) {
	p, err := netip.ParsePrefix(cluster)
	if err != nil {
		return nil, fmt.Errorf("nodeipam: cluster CIDR %q: %w", cluster, err)
	}
	p = p.Masked()
	bits := maskSize - p.Bits()
	if bits < 0 || maskSize > p.Addr().BitLen() || bits > 24 {
		return nil, fmt.Errorf("%w (cluster %s, node mask /%d)", ErrBadMask, p, maskSize)
	}
	n := 1 << bits
	return &Allocator{cluster: p, maskSize: maskSize, size: n, used: make([]bool, n)}, nil
}

// Capacity is how many pod CIDRs the cluster CIDR holds.
func (a *Allocator) Capacity() int { return a.size }

// Allocate returns a free pod CIDR and marks it used.
func (a *Allocator) Allocate() (netip.Prefix, error) {
	for i := range a.size {
		idx := (a.next + i) % a.size
		if !a.used[idx] {
			a.used[idx] = true
			a.next = (idx + 1) % a.size
			return a.prefix(idx), nil
		}
	}
	return netip.Prefix{}, ErrFull
}

// Occupy marks cidr used (a node already has it). It reports whether the CIDR
// was free before.
func (a *Allocator) Occupy(cidr string) (bool, error) {
	idx, err := a.index(cidr)
	if err != nil {
		return false, err
	}
	was := a.used[idx]
	a.used[idx] = true
	return !was, nil
}

// Release frees cidr.
func (a *Allocator) Release(cidr string) error {
	idx, err := a.index(cidr)
	if err != nil {
		return err
	}
	a.used[idx] = false
	return nil
}

func (a *Allocator) prefix(idx int) netip.Prefix {
	base := new(big.Int).SetBytes(a.cluster.Addr().AsSlice())
	off := new(big.Int).Lsh(big.NewInt(int64(idx)), uint(a.cluster.Addr().BitLen()-a.maskSize))
	b := base.Add(base, off).FillBytes(make([]byte, a.cluster.Addr().BitLen()/8))
	addr, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(addr, a.maskSize)
}

func (a *Allocator) index(cidr string) (int, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrOutside, cidr)
	}
	if p.Bits() != a.maskSize || !a.cluster.Contains(p.Addr()) || p.Masked() != p {
		return 0, fmt.Errorf("%w: %s", ErrOutside, cidr)
	}
	base := new(big.Int).SetBytes(a.cluster.Addr().AsSlice())
	v := new(big.Int).SetBytes(p.Addr().AsSlice())
	v.Sub(v, base).Rsh(v, uint(a.cluster.Addr().BitLen()-a.maskSize))
	return int(v.Int64()), nil
}
