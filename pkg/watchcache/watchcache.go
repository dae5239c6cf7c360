// Package watchcache keeps one resource type's objects in memory, fed by a
// single etcd watch, and serves lists and watches from there so that many
// clients cost etcd nothing. It remembers a window of recent events: a watch
// may resume from any resourceVersion still inside the window; an older one
// is told it is gone (410), and client-go then relists.
package watchcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-org/skiff/pkg/storage"
)

// ErrGone means the requested resourceVersion is older than the window.
var ErrGone = errors.New("watchcache: resource version too old")

// Decoder turns stored bytes into an object whose resourceVersion is set to rev.
type Decoder func(data []byte, rev int64) (runtime.Object, error)

// Entry is one object in the cache with a memo of its encodings, so that an
// object sent to many watchers is serialized once per format.
type Entry struct {
	Key    string
	Object runtime.Object
	Rev    int64

	mu    sync.Mutex
	coded map[string][]byte
}

// Encoded returns the object's encoding under name, computing it once.
func (e *Entry) Encoded(name string, enc func(runtime.Object) ([]byte, error)) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.coded[name]; ok {
		return b, nil
	}
	b, err := enc(e.Object)
	if err != nil {
		return nil, err
	}
	if e.coded == nil {
		e.coded = map[string][]byte{}
	}
	e.coded[name] = b
	return b, nil
}

// Event is a change of one object. Prev is the object before the change
// (nil for ADDED). For DELETED, Object is the last state.
type Event struct {
	Type   watch.EventType
	Object *Entry
	Prev   *Entry
	Rev    int64
}

// Cache is the in-memory copy of one resource type.
type Cache struct {
	mu       sync.RWMutex
	items    map[string]*Entry
	rev      int64
	window   []Event // ring buffer of the latest events, grown up to max
	max      int     // the most events the window keeps
	head     int     // index of the oldest event in window
	size     int     // events held
	oldest   int64   // lowest revision a watch may resume from
	watchers map[*Watcher]struct{}
	ready    bool
	cond     *sync.Cond

	store  *storage.Store
	prefix string
	decode Decoder
	log    *slog.Logger
}

// New returns a cache of the keys under prefix; Run fills it.
func New(store *storage.Store, prefix string, decode Decoder, capacity int, log *slog.Logger) *Cache {
	c := &Cache{
		items:    map[string]*Entry{},
		window:   make([]Event, min(capacity, 256)),
		max:      capacity,
		watchers: map[*Watcher]struct{}{},
		store:    store,
		prefix:   prefix,
		decode:   decode,
		log:      log,
	}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Run lists then watches etcd until ctx ends, relisting after any failure.
func (c *Cache) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.listAndWatch(ctx)
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("watch cache restarting", "prefix", c.prefix, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.mu.Lock()
	for w := range c.watchers {
		c.stopLocked(w)
	}
	c.mu.Unlock()
}

func (c *Cache) listAndWatch(ctx context.Context) error {
	items := map[string]*Entry{}
	var rev int64
	start := ""
	for {
		kvs, r, more, err := c.store.List(ctx, c.prefix, start, rev, 1000)
		if err != nil {
			return err
		}
		rev = r
		for _, kv := range kvs {
			obj, err := c.decode(kv.Value, kv.Revision)
			if err != nil {
				c.log.Error("undecodable object in storage", "key", kv.Key, "err", err)
				continue
			}
			items[kv.Key] = &Entry{Key: kv.Key, Object: obj, Rev: kv.Revision}
		}
		if !more || len(kvs) == 0 {
			break
		}
		start = kvs[len(kvs)-1].Key + "\x00"
	}
	c.mu.Lock()
	c.items = items
	if rev > c.rev || !c.ready {
		// A relist after a failure invalidates the window: watchers resume by
		// relisting themselves.
		for w := range c.watchers {
			c.stopLocked(w)
		}
		c.size, c.head = 0, 0
	}
	c.rev = rev
	c.oldest = rev
	c.ready = true
	c.cond.Broadcast()
	c.mu.Unlock()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evc, errc := c.store.Watch(wctx, c.prefix, rev)
	for batch := range evc {
		c.apply(batch)
	}
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

func (c *Cache) apply(batch []storage.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, se := range batch {
		if se.Type == storage.Progress {
			if se.Revision > c.rev {
				c.rev = se.Revision
			}
			continue
		}
		prev := c.items[se.Key]
		var ev Event
		switch se.Type {
		case storage.Put:
			obj, err := c.decode(se.Value, se.Revision)
			if err != nil {
				c.log.Error("undecodable object in storage", "key", se.Key, "err", err)
				continue
			}
			e := &Entry{Key: se.Key, Object: obj, Rev: se.Revision}
			c.items[se.Key] = e
			ev = Event{Type: watch.Modified, Object: e, Prev: prev, Rev: se.Revision}
			if prev == nil {
				ev.Type = watch.Added
			}
		case storage.Deleted:
			if prev == nil {
				continue
			}
			delete(c.items, se.Key)
			// The deleted object carries the revision of its deletion, as
			// Kubernetes reports it.
			last := prev.Object.DeepCopyObject()
			setRV(last, se.Revision)
			ev = Event{Type: watch.Deleted, Object: &Entry{Key: se.Key, Object: last, Rev: se.Revision}, Prev: prev, Rev: se.Revision}
		}
		c.appendLocked(ev)
		c.rev = se.Revision
		for w := range c.watchers {
			w.sendLocked(c, ev)
		}
	}
	c.cond.Broadcast()
}

func (c *Cache) appendLocked(ev Event) {
	n := len(c.window)
	if c.size == n && n < c.max {
		// Grow on demand: an idle cluster keeps a small window, so the
		// garbage collector has little to scan.
		grown := make([]Event, min(2*n, c.max))
		for i := 0; i < c.size; i++ {
			grown[i] = c.window[(c.head+i)%n]
		}
		c.window, c.head, n = grown, 0, len(grown)
	}
	if c.size == n {
		// Drop the oldest; a watch must now resume after it.
		c.oldest = c.window[c.head].Rev
		c.head = (c.head + 1) % n
		c.size--
	}
	c.window[(c.head+c.size)%n] = ev
	c.size++
}

// WaitReady blocks until the first list has loaded.
func (c *Cache) WaitReady(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.ready {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.cond.Wait()
	}
	return nil
}

// waitRevLocked waits until the cache has seen revision rev.
func (c *Cache) waitRevLocked(ctx context.Context, rev int64) error {
	if c.rev >= rev && c.ready {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	deadline := time.Now().Add(3 * time.Second)
	for !c.ready || c.rev < rev {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watchcache: too large resource version %d, current %d", rev, c.rev)
		}
		go func() {
			_ = c.store.RequestProgress(ctx)
			time.Sleep(50 * time.Millisecond)
			c.mu.Lock()
			c.cond.Broadcast()
			c.mu.Unlock()
		}()
		c.cond.Wait()
	}
	return nil
}

// Get returns the cached entry at key.
func (c *Cache) Get(key string) (*Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.items[key]
	return e, ok
}

// List returns the entries under prefix (a namespace's or the whole type's)
// that match, sorted by key, once the cache has seen minRev, and the revision
// the list is as of.
func (c *Cache) List(ctx context.Context, prefix string, minRev int64, match func(runtime.Object) bool) ([]*Entry, int64, error) {
	c.mu.Lock()
	if err := c.waitRevLocked(ctx, minRev); err != nil {
		c.mu.Unlock()
		return nil, 0, err
	}
	out := make([]*Entry, 0, len(c.items))
	for k, e := range c.items {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix && (match == nil || match(e.Object)) {
			out = append(out, e)
		}
	}
	rev := c.rev
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, rev, nil
}

// Revision is the latest revision the cache has applied.
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Len is the number of cached objects.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.items)
}
