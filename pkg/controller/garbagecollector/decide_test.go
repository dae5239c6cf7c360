package garbagecollector

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func refs(uids ...types.UID) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, u := range uids {
		out = append(out, metav1.OwnerReference{UID: u, Name: string(u), Kind: "ReplicaSet", APIVersion: "apps/v1"})
	}
	return out
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		item   Item
		owners map[types.UID]OwnerState
		want   Plan
	}{
		{"no owners", Item{}, nil, Plan{}},
		{"owner present", Item{Owners: refs("a")}, map[types.UID]OwnerState{"a": OwnerPresent}, Plan{}},
		{"owner unknown counts as present", Item{Owners: refs("a")}, nil, Plan{}},
		{"owner gone: background", Item{Owners: refs("a")}, map[types.UID]OwnerState{"a": OwnerAbsent},
			Plan{Delete: true, Policy: metav1.DeletePropagationBackground}},
		{"one of two owners gone: reference dropped", Item{Owners: refs("a", "b")}, map[types.UID]OwnerState{"a": OwnerAbsent, "b": OwnerPresent},
			Plan{RemoveOwners: []types.UID{"a"}}},
		{"owner waiting, no dependents of its own", Item{Owners: refs("a")}, map[types.UID]OwnerState{"a": OwnerDeletingDependents},
			Plan{Delete: true, Policy: metav1.DeletePropagationBackground}},
		{"owner waiting, has dependents: foreground", Item{Owners: refs("a"), Dependents: 3}, map[types.UID]OwnerState{"a": OwnerDeletingDependents},
			Plan{Delete: true, Policy: metav1.DeletePropagationForeground}},
		{"waiting owner dropped while another stays", Item{Owners: refs("a", "b")}, map[types.UID]OwnerState{"a": OwnerDeletingDependents},
			Plan{RemoveOwners: []types.UID{"a"}}},
		{"gone owner, own orphan finalizer", Item{Owners: refs("a"), Finalizers: []string{FinalizerOrphan}}, map[types.UID]OwnerState{"a": OwnerAbsent},
			Plan{Delete: true, Policy: metav1.DeletePropagationOrphan}},
		{"deleting with orphan finalizer", Item{Deleting: true, Finalizers: []string{FinalizerOrphan}, Dependents: 2}, nil,
			Plan{OrphanDependents: true, RemoveFinalizer: FinalizerOrphan}},
		{"deleting with orphan finalizer, no dependents", Item{Deleting: true, Finalizers: []string{FinalizerOrphan}}, nil,
			Plan{RemoveFinalizer: FinalizerOrphan}},
		{"foreground with blocking dependents", Item{Deleting: true, Finalizers: []string{FinalizerForeground}, Dependents: 2, BlockingDependents: 1}, nil,
			Plan{DeleteDependents: true}},
		{"foreground, only non-blocking dependents left", Item{Deleting: true, Finalizers: []string{FinalizerForeground}, Dependents: 1}, nil,
			Plan{DeleteDependents: true, RemoveFinalizer: FinalizerForeground}},
		{"foreground done", Item{Deleting: true, Finalizers: []string{FinalizerForeground}}, nil,
			Plan{RemoveFinalizer: FinalizerForeground}},
		{"deleting, other finalizer only", Item{Deleting: true, Finalizers: []string{"example.com/x"}, Owners: refs("a")}, map[types.UID]OwnerState{"a": OwnerAbsent}, Plan{}},
	}
	for _, tt := range tests {
		if got := Decide(tt.item, tt.owners); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Decide(%+v) = %+v, want %+v", tt.name, tt.item, got, tt.want)
		}
	}
}
