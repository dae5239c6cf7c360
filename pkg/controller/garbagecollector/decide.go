package garbagecollector

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Finalizers the API server sets for the non-default propagation policies.
const (
	FinalizerOrphan     = metav1.FinalizerOrphanDependents // "orphan"
	FinalizerForeground = metav1.FinalizerDeleteDependents // "foregroundDeletion"
)

// OwnerState is what became of an object's owner.
type OwnerState int

const (
	// OwnerPresent: the owner exists and is not waiting for its dependents.
	OwnerPresent OwnerState = iota
	// OwnerAbsent: no object with the owner's uid exists.
	OwnerAbsent
	// OwnerDeletingDependents: the owner is being deleted in the foreground
	// and waits for its dependents to go first.
	OwnerDeletingDependents
)

// Item is what the collector knows about one object when it decides.
type Item struct {
	Owners     []metav1.OwnerReference
	Deleting   bool // has a deletionTimestamp
	Finalizers []string
	// Dependents is how many objects name this one as an owner;
	// BlockingDependents how many of them with blockOwnerDeletion=true.
	Dependents, BlockingDependents int
}

// Plan is what to do with an Item.
type Plan struct {
	// Delete the object with Policy.
	Delete bool
	Policy metav1.DeletionPropagation
	// RemoveOwners are owner uids to drop from the object's ownerReferences.
	RemoveOwners []types.UID
	// OrphanDependents: drop this object from every dependent's
	// ownerReferences (then remove the orphan finalizer).
	OrphanDependents bool
	// DeleteDependents: have every dependent deleted (foreground deletion).
	DeleteDependents bool
	// RemoveFinalizer is a finalizer to take off the object, once the work
	// above is done.
	RemoveFinalizer string
}

// Decide is the collector's decision for one object given the states of its
// owners (by uid; a missing uid counts as present, so doubt never deletes).
//
//   - An object being deleted with the orphan finalizer has its dependents
//     orphaned, then the finalizer removed.
//   - One being deleted with the foregroundDeletion finalizer has its
//     dependents deleted, and loses the finalizer (and so goes itself) once
//     none blocks it any longer.
//   - An object with at least one present owner stays; references to absent
//     owners and to owners waiting on their dependents are removed from it.
//   - An object all of whose owners are absent or waiting is deleted: in the
//     foreground if an owner waits for it and it has dependents of its own,
//     else with the policy its own finalizers ask for, background by default.
func Decide(it Item, owners map[types.UID]OwnerState) Plan {
	if it.Deleting {
		switch {
		case slices.Contains(it.Finalizers, FinalizerOrphan):
			return Plan{OrphanDependents: it.Dependents > 0, RemoveFinalizer: FinalizerOrphan}
		case slices.Contains(it.Finalizers, FinalizerForeground):
			if it.BlockingDependents == 0 {
				return Plan{DeleteDependents: it.Dependents > 0, RemoveFinalizer: FinalizerForeground}
			}
			return Plan{DeleteDependents: true}
		}
		return Plan{}
	}
	if len(it.Owners) == 0 {
		return Plan{}
	}
	var present, gone, waiting []types.UID
	for _, o := range it.Owners {
		switch owners[o.UID] {
		case OwnerAbsent:
			gone = append(gone, o.UID)
		case OwnerDeletingDependents:
			waiting = append(waiting, o.UID)
		default:
			present = append(present, o.UID)
		}
	}
	if len(present) > 0 {
		if len(gone)+len(waiting) == 0 {
			return Plan{}
		}
		return Plan{RemoveOwners: append(gone, waiting...)}
	}
	if len(waiting) > 0 && it.Dependents > 0 {
		return Plan{Delete: true, Policy: metav1.DeletePropagationForeground}
	}
	policy := metav1.DeletePropagationBackground
	switch {
	case slices.Contains(it.Finalizers, FinalizerOrphan):
		policy = metav1.DeletePropagationOrphan
	case slices.Contains(it.Finalizers, FinalizerForeground):
		policy = metav1.DeletePropagationForeground
	}
	return Plan{Delete: true, Policy: policy}
}
