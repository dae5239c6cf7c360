package nodeipam

import (
	"errors"
	"testing"
)

func TestAllocatorSequence(t *testing.T) {
	a, err := NewAllocator("10.42.0.0/16", 24)
	if err != nil {
		t.Fatal(err)
	}
	if a.Capacity() != 256 {
		t.Errorf("Capacity() = %d, want 256", a.Capacity())
	}
	if _, err := a.Occupy("10.42.1.0/24"); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.42.0.0/24", "10.42.2.0/24", "10.42.3.0/24"}
	for _, w := range want {
		got, err := a.Allocate()
		if err != nil || got.String() != w {
			t.Errorf("Allocate() = %v, %v, want %s", got, err, w)
		}
	}
	if err := a.Release("10.42.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Allocate(); got.String() != "10.42.4.0/24" {
		t.Errorf("Allocate() after release = %v, want 10.42.4.0/24 (freed CIDRs reused last)", got)
	}
}

func TestAllocatorFull(t *testing.T) {
	a, err := NewAllocator("10.0.0.0/30", 31)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := a.Allocate(); err != nil {
			t.Fatalf("Allocate() = %v", err)
		}
	}
	if _, err := a.Allocate(); !errors.Is(err, ErrFull) {
		t.Errorf("Allocate() on full = %v, want ErrFull", err)
	}
	if err := a.Release("10.0.0.2/31"); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Allocate(); err != nil || got.String() != "10.0.0.2/31" {
		t.Errorf("Allocate() after release = %v, %v, want 10.0.0.2/31", got, err)
	}
}

func TestAllocatorRejects(t *testing.T) {
	a, _ := NewAllocator("10.42.0.0/16", 24)
	tests := []struct {
		cidr string
		want error
	}{
		{"10.43.0.0/24", ErrOutside},
		{"10.42.0.0/25", ErrOutside},
		{"10.42.0.1/24", ErrOutside},
		{"junk", ErrOutside},
		{"10.42.255.0/24", nil},
	}
	for _, tt := range tests {
		if _, err := a.Occupy(tt.cidr); !errors.Is(err, tt.want) {
			t.Errorf("Occupy(%s) = %v, want %v", tt.cidr, err, tt.want)
		}
	}
	if _, err := NewAllocator("10.42.0.0/16", 8); !errors.Is(err, ErrBadMask) {
		t.Errorf("NewAllocator(/16, 8) = %v, want ErrBadMask", err)
	}
}

func TestAllocatorIPv6(t *testing.T) {
	a, err := NewAllocator("fd00:42::/56", 64)
	if err != nil {
		t.Fatal(err)
	}
	a.Allocate()
	if got, _ := a.Allocate(); got.String() != "fd00:42:0:1::/64" {
		t.Errorf("Allocate() = %v, want fd00:42:0:1::/64", got)
	}
}
