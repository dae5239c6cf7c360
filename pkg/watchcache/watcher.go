package watchcache

import (
	"context"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// Watcher receives the events of one client watch. Its buffer is bounded: a
// watcher too slow to keep up is stopped (its channel closes) and the client
// resumes or relists, as Kubernetes clients do.
type Watcher struct {
	ch      chan Event
	prefix  string
	match   func(runtime.Object) bool
	stopped bool
}

// Events is the stream; it closes when the watch ends.
func (w *Watcher) Events() <-chan Event { return w.ch }

// WatchOptions say where a watch starts and what it sees.
type WatchOptions struct {
	Prefix string                    // namespace or whole-type key prefix
	Match  func(runtime.Object) bool // label/field selector; nil matches all
	// FromRev resumes after this revision. With Initial, the watch first
	// replays the current state as ADDED events (resourceVersion "" or "0",
	// or sendInitialEvents).
	FromRev int64
	Initial bool
	Buffer  int
}

// Watch starts a watch. It fails with ErrGone when FromRev is older than the
// window.
func (c *Cache) Watch(ctx context.Context, o WatchOptions) (*Watcher, int64, error) {
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.waitRevLocked(ctx, o.FromRev); err != nil {
		return nil, 0, err
	}
	w := &Watcher{prefix: o.Prefix, match: o.Match}
	var backlog []Event
	if o.Initial {
		for k, e := range c.items {
			if strings.HasPrefix(k, o.Prefix) && (o.Match == nil || o.Match(e.Object)) {
				backlog = append(backlog, Event{Type: watch.Added, Object: e, Rev: e.Rev})
			}
		}
		sort.Slice(backlog, func(i, j int) bool { return backlog[i].Object.Key < backlog[j].Object.Key })
	} else {
		if o.FromRev < c.oldest {
			return nil, 0, ErrGone
		}
		n := len(c.window)
		for i := 0; i < c.size; i++ {
			ev := c.window[(c.head+i)%n]
			if ev.Rev <= o.FromRev {
				continue
			}
			if out, ok := w.filter(ev); ok {
				backlog = append(backlog, out)
			}
		}
	}
	w.ch = make(chan Event, len(backlog)+o.Buffer)
	for _, ev := range backlog {
		w.ch <- ev
	}
	c.watchers[w] = struct{}{}
	rev := c.rev
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		c.stopLocked(w)
		c.mu.Unlock()
	}()
	return w, rev, nil
}

// filter turns a raw event into what this watcher sees: an object leaving
// the selector is DELETED for it, one entering is ADDED.
func (w *Watcher) filter(ev Event) (Event, bool) {
	if !strings.HasPrefix(ev.Object.Key, w.prefix) {
		return ev, false
	}
	if w.match == nil {
		return ev, true
	}
	cur := w.match(ev.Object.Object)
	if ev.Type != watch.Modified {
		return ev, cur
	}
	old := ev.Prev != nil && w.match(ev.Prev.Object)
	switch {
	case cur && old:
		return ev, true
	case cur:
		ev.Type = watch.Added
		return ev, true
	case old:
		ev.Type = watch.Deleted
		return ev, true
	}
	return ev, false
}

func (w *Watcher) sendLocked(c *Cache, ev Event) {
	out, ok := w.filter(ev)
	if !ok || w.stopped {
		return
	}
	select {
	case w.ch <- out:
	default:
		c.log.Warn("dropping a watcher too slow to keep up", "prefix", c.prefix)
		c.stopLocked(w)
	}
}

func (c *Cache) stopLocked(w *Watcher) {
	if w.stopped {
		return
	}
	w.stopped = true
	delete(c.watchers, w)
	close(w.ch)
}

func setRV(obj runtime.Object, rev int64) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(itoa(rev))
	}
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
