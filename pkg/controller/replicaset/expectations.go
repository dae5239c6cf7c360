package replicaset

import (
	"sync"
	"time"
)

// ExpectationsTTL bounds how long an owner waits for creations and deletions
// it made to show up in its cache; after that it trusts the cache again, so
// a lost watch event cannot wedge it forever.
const ExpectationsTTL = 5 * time.Minute

// Expectations remember, per owner key, the pod creations and deletions a
// sync has issued but the informer has not shown yet. While any are pending
// the owner's cache is known to be stale, and a sync must not compute a new
// plan from it: that is how a stale cache would double-create.
//
// Creations are counted (the pods' names are not known until the API server
// generates them); deletions are tracked by pod key, so that seeing a pod's
// deletion twice (its deletionTimestamp, then its removal) counts once.
type Expectations struct {
	mu sync.Mutex
	m  map[string]*expectation
}

type expectation struct {
	adds int
	dels map[string]bool
	at   time.Time
}

// NewExpectations returns an empty set of expectations.
func NewExpectations() *Expectations {
	return &Expectations{m: map[string]*expectation{}}
}

// Satisfied reports whether the owner may trust its cache at now.
func (e *Expectations) Satisfied(key string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	return (x.adds <= 0 && len(x.dels) == 0) || now.Sub(x.at) > ExpectationsTTL
}

// ExpectCreations records n creations about to be issued.
func (e *Expectations) ExpectCreations(key string, n int, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, dels: map[string]bool{}, at: now}
}

// ExpectDeletions records deletions of the given pod keys about to be issued.
func (e *Expectations) ExpectDeletions(key string, pods []string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expectation{dels: make(map[string]bool, len(pods)), at: now}
	for _, p := range pods {
		x.dels[p] = true
	}
	e.m[key] = x
}

// CreationObserved lowers the pending creations by one: a created pod was
// seen, or a creation failed and will never be seen.
func (e *Expectations) CreationObserved(key string) {
	e.LowerCreations(key, 1)
}

// LowerCreations lowers the pending creations by n.
func (e *Expectations) LowerCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.adds -= n
	}
}

// DeletionObserved marks the deletion of pod as seen (or as failed).
func (e *Expectations) DeletionObserved(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.dels, pod)
	}
}

// Forget drops the owner's expectations, when the owner is gone.
func (e *Expectations) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
