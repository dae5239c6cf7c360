package podnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Range is the usable part of a node's pod CIDR: the first address is the
// bridge's (the pods' gateway), the last is broadcast, the rest go to pods.
type Range struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// ParseRange validates an IPv4 pod CIDR such as "10.244.1.0/24".
func ParseRange(cidr string) (Range, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Range{}, fmt.Errorf("%w: %q: %v", ErrBadCIDR, cidr, err)
	}
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() > 30 {
		return Range{}, fmt.Errorf("%w: %q: need an IPv4 prefix of /30 or larger", ErrBadCIDR, cidr)
	}
	return Range{Prefix: p, Gateway: p.Addr().Next()}, nil
}

// last returns the broadcast address of r.
func (r Range) last() netip.Addr {
	a := r.Prefix.Addr().As4()
	host := uint32(1)<<(32-r.Prefix.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// NextFree picks the first address after prev (wrapping around) that is not
// taken, so a freed address is reused as late as possible. It is the whole
// allocation policy; the store around it only persists the result.
func (r Range) NextFree(taken map[netip.Addr]bool, prev netip.Addr) (netip.Addr, bool) {
	first := r.Gateway.Next()
	last := r.last()
	start := first
	if prev.IsValid() && r.Prefix.Contains(prev) && prev.Compare(first) >= 0 && prev.Compare(last) < 0 {
		start = prev.Next()
		if start == last {
			start = first
		}
	}
	a := start
	for {
		if !taken[a] {
			return a, true
		}
		a = a.Next()
		if a == last {
			a = first
		}
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// store keeps one file per allocated address (named by the address,
// holding the owner) so allocations survive restarts and are atomic with
// O_EXCL even if two agents shared a directory by mistake.
type store struct {
	dir string
}

func (s store) taken() (map[netip.Addr]bool, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	out := map[netip.Addr]bool{}
	for _, e := range ents {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			out[a] = true
		}
	}
	return out, nil
}

func (s store) last() netip.Addr {
	b, _ := os.ReadFile(filepath.Join(s.dir, "last"))
	a, _ := netip.ParseAddr(strings.TrimSpace(string(b)))
	return a
}

// allocate reserves an address for owner, returning the one it already
// holds if any (so a retried RunPodSandbox gets the same IP).
func (s store) allocate(r Range, owner string) (netip.Addr, error) {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return netip.Addr{}, err
	}
	if a, ok := s.owned(owner); ok {
		return a, nil
	}
	for tries := 0; tries < 8; tries++ {
		taken, err := s.taken()
		if err != nil {
			return netip.Addr{}, err
		}
		a, ok := r.NextFree(taken, s.last())
		if !ok {
			return netip.Addr{}, fmt.Errorf("%w: %s", ErrExhausted, r.Prefix)
		}
		f, err := os.OpenFile(filepath.Join(s.dir, a.String()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, err = f.WriteString(owner)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_ = os.WriteFile(filepath.Join(s.dir, "last"), []byte(a.String()), 0o644)
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: %s: lost too many races", ErrExhausted, r.Prefix)
}

func (s store) owned(owner string) (netip.Addr, bool) {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(s.dir, e.Name())); err == nil && string(b) == owner {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// release frees owner's address; releasing nothing is not an error.
func (s store) release(owner string) error {
	if a, ok := s.owned(owner); ok {
		if err := os.Remove(filepath.Join(s.dir, a.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
