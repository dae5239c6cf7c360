package placement

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestOwnedPods checks the per-controller count that selector spreading
// reads: deleting pods and other owners do not count, removal and clones
// keep it right.
func TestOwnedPods(t *testing.T) {
	owned := func(name string, owner types.UID, deleting bool) *PodInfo {
		p := pod(name, "100m", "10Mi", nil)
		p.UID = types.UID("uid-" + name)
		if owner != "" {
			yes := true
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: owner, Controller: &yes}}
		}
		if deleting {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		return NewPodInfo(p)
	}
	ni := NewNodeInfo(node("n1", "4", "4Gi", 110, nil))
	a1, a2, aDel, b1, none := owned("a1", "A", false), owned("a2", "A", false), owned("a3", "A", true), owned("b1", "B", false), owned("x", "", false)
	for _, pi := range []*PodInfo{a1, a2, aDel, b1, none} {
		ni.AddPod(pi)
	}
	clone := ni.Clone()
	steps := []struct {
		name   string
		do     func()
		ni     *NodeInfo
		owner  types.UID
		expect int64
	}{
		{"two live pods of A", func() {}, ni, "A", 2},
		{"one of B", func() {}, ni, "B", 1},
		{"unknown owner", func() {}, ni, "C", 0},
		{"no owner is not counted", func() {}, ni, "", 0},
		{"remove a live pod of A", func() { ni.RemovePod(a1) }, ni, "A", 1},
		{"remove the deleting pod of A", func() { ni.RemovePod(aDel) }, ni, "A", 1},
		{"remove the last of B", func() { ni.RemovePod(b1) }, ni, "B", 0},
		{"the clone kept its counts", func() {}, clone, "A", 2},
	}
	for _, s := range steps {
		s.do()
		if got := s.ni.OwnedPods(s.owner); got != s.expect {
			t.Errorf("%s: OwnedPods(%q) = %d, want %d", s.name, s.owner, got, s.expect)
		}
	}
	if _, ok := ni.owned["B"]; ok {
		t.Error("owner B still has an entry after its last pod left")
	}
}
