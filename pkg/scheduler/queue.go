package scheduler

import (
	"container/heap"
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// Back-off for pods that failed to schedule: 1 s, doubling, at most 10 s.
const (
	initialBackoff = time.Second
	maxBackoff     = 10 * time.Second
	// unschedulableFlush moves pods that have waited this long for an event
	// back to the queue anyway, in case an event that mattered was missed.
	unschedulableFlush = time.Minute
)

type itemState uint8

const (
	stateActive itemState = iota
	stateBackoff
	stateUnschedulable
	stateInFlight
)

// qItem is one pending pod.
type qItem struct {
	key      string
	pod      *v1.Pod
	priority int32
	seq      uint64 // arrival order, the last tie-break
	attempts int
	lastTry  time.Time
	state    itemState
	index    int // in the active heap
	// moveSeq is the queue's move counter when the item was popped; a move
	// during the attempt sends it to back-off rather than unschedulable, so
	// that event is not lost.
	moveSeq uint64
	// dirty records an update while in flight.
	dirty bool
}

// queue orders pending pods by priority then age, holds failed ones in
// back-off or as unschedulable until something changes, and hands them to
// one scheduling loop.
type queue struct {
	mu       sync.Mutex
	items    map[string]*qItem
	active   activeHeap
	seq      uint64
	moveSeq  uint64
	now      func() time.Time
	wake     chan struct{}
	priority func(*v1.Pod) int32
}

func newQueue(now func() time.Time, priority func(*v1.Pod) int32) *queue {
	return &queue{items: map[string]*qItem{}, now: now, wake: make(chan struct{}, 1), priority: priority}
}

func (q *queue) signalLocked() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) pushActiveLocked(it *qItem) {
	it.state = stateActive
	heap.Push(&q.active, it)
	q.signalLocked()
}

// Add adds or updates a pending pod. An unschedulable pod whose spec or
// labels changed is tried again (after its back-off).
func (q *queue) Add(pod *v1.Pod) {
	key := podKey(pod)
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.items[key]
	if !ok {
		q.seq++
		it = &qItem{key: key, pod: pod, priority: q.priority(pod), seq: q.seq}
		q.items[key] = it
		q.pushActiveLocked(it)
		return
	}
	changed := it.pod.UID != pod.UID || !specEqual(it.pod, pod)
	it.pod = pod
	it.priority = q.priority(pod)
	switch it.state {
	case stateActive:
		heap.Fix(&q.active, it.index)
	case stateInFlight:
		it.dirty = it.dirty || changed
	case stateUnschedulable:
		if changed {
			q.toBackoffOrActiveLocked(it)
		}
	}
}

// Delete forgets a pod that was deleted or bound elsewhere.
func (q *queue) Delete(pod *v1.Pod) {
	key := podKey(pod)
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.items[key]
	if !ok {
		return
	}
	if it.state == stateActive {
		heap.Remove(&q.active, it.index)
	}
	delete(q.items, key)
}

// Pop blocks until a pod is ready to be tried, and marks it in flight.
// It returns nil when ctx ends.
func (q *queue) Pop(ctx context.Context) *qItem {
	for {
		q.mu.Lock()
		if q.active.Len() > 0 {
			it := heap.Pop(&q.active).(*qItem)
			it.state = stateInFlight
			it.moveSeq = q.moveSeq
			it.dirty = false
			q.mu.Unlock()
			return it
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-q.wake:
		}
	}
}

// Done removes a pod that was scheduled.
func (q *queue) Done(it *qItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur := q.items[it.key]; cur == it {
		delete(q.items, it.key)
	}
}

// Unschedulable parks a pod no node fits until a change might help; if
// something changed while it was being tried it goes to back-off instead.
func (q *queue) Unschedulable(it *qItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.items[it.key] != it {
		return
	}
	it.attempts++
	it.lastTry = q.now()
	if it.dirty || it.moveSeq != q.moveSeq {
		q.toBackoffOrActiveLocked(it)
		return
	}
	it.state = stateUnschedulable
}

// Backoff requeues a pod whose attempt failed for another reason (a failed
// bind, an API error) after its back-off.
func (q *queue) Backoff(it *qItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.items[it.key] != it {
		return
	}
	it.attempts++
	it.lastTry = q.now()
	q.toBackoffOrActiveLocked(it)
}

func backoffFor(attempts int) time.Duration {
	d := initialBackoff
	for i := 1; i < attempts && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

func (it *qItem) readyAt() time.Time { return it.lastTry.Add(backoffFor(it.attempts)) }

func (q *queue) toBackoffOrActiveLocked(it *qItem) {
	if it.attempts > 0 && q.now().Before(it.readyAt()) {
		it.state = stateBackoff
		return
	}
	q.pushActiveLocked(it)
}

// MoveUnschedulable sends the unschedulable pods that match (all when match
// is nil) back to be tried, after their back-off: something changed that
// may make them fit.
func (q *queue) MoveUnschedulable(match func(*v1.Pod) bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moveSeq++
	for _, it := range q.items {
		if it.state == stateUnschedulable && (match == nil || match(it.pod)) {
			q.toBackoffOrActiveLocked(it)
		}
	}
}

// Flush moves pods whose back-off ended to the active queue, and pods that
// have been unschedulable for long to back-off.
func (q *queue) Flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for _, it := range q.items {
		switch {
		case it.state == stateBackoff && !now.Before(it.readyAt()):
			q.pushActiveLocked(it)
		case it.state == stateUnschedulable && now.Sub(it.lastTry) >= unschedulableFlush:
			q.pushActiveLocked(it)
		}
	}
}

// Len counts pods in the queue in any state.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func podKey(pod *v1.Pod) string { return pod.Namespace + "/" + pod.Name }

// specEqual says whether an update leaves what scheduling looks at alone;
// status-only updates (like our own condition) must not retry the pod.
func specEqual(a, b *v1.Pod) bool {
	return mapsEqual(a.Labels, b.Labels) && equality.Semantic.DeepEqual(a.Spec, b.Spec)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// activeHeap orders by priority (higher first), then creation time, then
// arrival.
type activeHeap []*qItem

func (h activeHeap) Len() int { return len(h) }
func (h activeHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	ta, tb := a.pod.CreationTimestamp.Time, b.pod.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.seq < b.seq
}
func (h activeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *activeHeap) Push(x any) {
	it := x.(*qItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *activeHeap) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	it.index = -1
	return it
}
