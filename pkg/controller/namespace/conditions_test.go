package namespace

import (
	"errors"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func TestConditions(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		o    Outcome
		want map[v1.NamespaceConditionType]string // type -> reason
		done bool
	}{
		{"empty", Outcome{}, map[v1.NamespaceConditionType]string{
			v1.NamespaceDeletionDiscoveryFailure: "ResourcesDiscovered",
			v1.NamespaceDeletionGVParsingFailure: "ParsedGroupVersions",
			v1.NamespaceDeletionContentFailure:   "ContentDeleted",
			v1.NamespaceContentRemaining:         "ContentRemoved",
			v1.NamespaceFinalizersRemaining:      "ContentHasNoFinalizers",
		}, true},
		{"pods with finalizers remain", Outcome{Remaining: map[string]int{"pods": 2}, Finalizers: map[string]int{"example.com/x": 2}},
			map[v1.NamespaceConditionType]string{
				v1.NamespaceContentRemaining:    "SomeResourcesRemain",
				v1.NamespaceFinalizersRemaining: "SomeFinalizersRemain",
			}, false},
		{"delete failed", Outcome{DeleteErrs: []error{errors.New("pods: boom")}},
			map[v1.NamespaceConditionType]string{v1.NamespaceDeletionContentFailure: "ContentDeletionFailed"}, false},
		{"discovery failed", Outcome{DiscoveryErr: errors.New("metrics.k8s.io down")},
			map[v1.NamespaceConditionType]string{v1.NamespaceDeletionDiscoveryFailure: "DiscoveryFailed"}, false},
	}
	for _, tt := range tests {
		got := Conditions(nil, tt.o, t0)
		if len(got) != 5 {
			t.Errorf("%s: Conditions() has %d conditions, want 5", tt.name, len(got))
		}
		for _, c := range got {
			want, ok := tt.want[c.Type]
			if ok && c.Reason != want {
				t.Errorf("%s: condition %s reason = %s, want %s", tt.name, c.Type, c.Reason, want)
			}
			if bad := c.Status == v1.ConditionTrue; ok && bad == (tt.done) {
				t.Errorf("%s: condition %s status = %s with done %v", tt.name, c.Type, c.Status, tt.done)
			}
		}
		if tt.o.Done() != tt.done {
			t.Errorf("%s: Done() = %v, want %v", tt.name, tt.o.Done(), tt.done)
		}
	}
	// A condition whose status holds keeps its transition time.
	first := Conditions(nil, Outcome{Remaining: map[string]int{"pods": 1}}, t0)
	later := Conditions(first, Outcome{Remaining: map[string]int{"pods": 1}}, t0.Add(time.Minute))
	for _, c := range later {
		if !c.LastTransitionTime.Time.Equal(t0) {
			t.Errorf("condition %s transition = %v, want %v (status unchanged)", c.Type, c.LastTransitionTime, t0)
		}
	}
}
