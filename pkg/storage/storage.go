// Package storage keeps API objects in etcd v3. It deals in raw bytes keyed by
// path and versioned by etcd's mod revision, so that optimistic concurrency is
// exactly etcd's compare-and-swap; encoding objects is the caller's business.
// Nothing outside this package imports the etcd client.
package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors callers map onto API status codes.
var (
	ErrNotFound  = errors.New("storage: key not found")
	ErrExists    = errors.New("storage: key already exists")
	ErrConflict  = errors.New("storage: resource version conflict")
	ErrCompacted = errors.New("storage: revision compacted")
)

// KV is one stored value and the revision that last modified it.
type KV struct {
	Key      string
	Value    []byte
	Revision int64
}

// Side is an extra key written or removed in the same transaction as the main
// object, e.g. the allocation record of a Service's ClusterIP. A Side with
// MustNotExist fails the whole write with ErrExists when the key is taken.
type Side struct {
	Key          string
	Value        []byte // nil deletes the key
	MustNotExist bool
}

// Store is a thin, typed-error layer over an etcd client.
type Store struct {
	client *clientv3.Client
}

// New wraps an etcd client.
func New(client *clientv3.Client) *Store { return &Store{client: client} }

// Close closes the etcd client.
func (s *Store) Close() error { return s.client.Close() }

// Get returns the value at key.
func (s *Store) Get(ctx context.Context, key string) (KV, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return KV{}, wrap(err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	return KV{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision}, nil
}

// Create writes key only if it does not exist yet, with the side keys, and
// returns the new revision.
func (s *Store) Create(ctx context.Context, key string, value []byte, sides ...Side) (int64, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	ops := []clientv3.Op{clientv3.OpPut(key, string(value))}
	cmps, ops = addSides(cmps, ops, sides)
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, wrap(err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%w: %s", ErrExists, key)
	}
	return resp.Header.Revision, nil
}

// Update replaces key if its mod revision is still rev, and returns the new
// revision. A changed or missing key is ErrConflict or ErrNotFound.
func (s *Store) Update(ctx context.Context, key string, rev int64, value []byte, sides ...Side) (int64, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	ops := []clientv3.Op{clientv3.OpPut(key, string(value))}
	cmps, ops = addSides(cmps, ops, sides)
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, wrap(err)
	}
	if !resp.Succeeded {
		return 0, s.whyFailed(resp, key, sides)
	}
	return resp.Header.Revision, nil
}

// Delete removes key if its mod revision is still rev, with the side keys,
// and returns the revision of the deletion.
func (s *Store) Delete(ctx context.Context, key string, rev int64, sides ...Side) (int64, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	ops := []clientv3.Op{clientv3.OpDelete(key)}
	cmps, ops = addSides(cmps, ops, sides)
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, wrap(err)
	}
	if !resp.Succeeded {
		return 0, s.whyFailed(resp, key, sides)
	}
	return resp.Header.Revision, nil
}

// Put writes key unconditionally; for bookkeeping keys only, never objects.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	_, err := s.client.Put(ctx, key, string(value))
	return wrap(err)
}

func (s *Store) whyFailed(resp *clientv3.TxnResponse, key string, sides []Side) error {
	if len(resp.Responses) > 0 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) == 0 {
			return fmt.Errorf("%w: %s", ErrNotFound, key)
		}
	}
	for _, sd := range sides {
		if sd.MustNotExist {
			// A side key may be what failed; the caller retries with fresh state.
			return fmt.Errorf("%w: %s", ErrConflict, key)
		}
	}
	return fmt.Errorf("%w: %s", ErrConflict, key)
}

func addSides(cmps []clientv3.Cmp, ops []clientv3.Op, sides []Side) ([]clientv3.Cmp, []clientv3.Op) {
	for _, sd := range sides {
		if sd.MustNotExist {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(sd.Key), "=", 0))
		}
		if sd.Value == nil {
			ops = append(ops, clientv3.OpDelete(sd.Key))
		} else {
			ops = append(ops, clientv3.OpPut(sd.Key, string(sd.Value)))
		}
	}
	return cmps, ops
}

// List returns up to limit keys under prefix starting at start (inclusive),
// as of revision rev (0: latest). It returns the revision read and whether
// more keys follow.
func (s *Store) List(ctx context.Context, prefix, start string, rev, limit int64) ([]KV, int64, bool, error) {
	if start == "" {
		start = prefix
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.client.Get(ctx, start, opts...)
	if err != nil {
		return nil, 0, false, wrap(err)
	}
	kvs := make([]KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		kvs[i] = KV{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision}
	}
	return kvs, resp.Header.Revision, resp.More, nil
}

// Keys returns the keys under prefix (values are not read).
func (s *Store) Keys(ctx context.Context, prefix string) ([]string, error) {
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, wrap(err)
	}
	keys := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		keys[i] = string(kv.Key)
	}
	return keys, nil
}

// Revision returns etcd's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, "/registry/health", clientv3.WithCountOnly())
	if err != nil {
		return 0, wrap(err)
	}
	return resp.Header.Revision, nil
}

// EventType says what happened to a key.
type EventType int

// The kinds of change a watch reports.
const (
	Put EventType = iota
	Deleted
	// Progress carries no change: etcd says every change up to Revision has
	// been sent.
	Progress
)

// Event is one change under a watched prefix. Prev is the value before the
// change (nil for a create).
type Event struct {
	Type     EventType
	Key      string
	Value    []byte
	Prev     []byte
	Revision int64
	Created  bool // the put created the key
}

// Watch streams changes under prefix after revision rev. The channel closes
// when ctx ends or the watch fails; a compacted start revision yields
// ErrCompacted through errc.
func (s *Store) Watch(ctx context.Context, prefix string, rev int64) (<-chan []Event, <-chan error) {
	out := make(chan []Event, 64)
	errc := make(chan error, 1)
	wch := s.client.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.CompactRevision != 0 {
				errc <- fmt.Errorf("%w: %d", ErrCompacted, resp.CompactRevision)
				return
			}
			if err := resp.Err(); err != nil {
				errc <- wrap(err)
				return
			}
			if resp.IsProgressNotify() {
				select {
				case out <- []Event{{Type: Progress, Revision: resp.Header.Revision}}:
				case <-ctx.Done():
					return
				}
				continue
			}
			evs := make([]Event, 0, len(resp.Events))
			for _, e := range resp.Events {
				ev := Event{Key: string(e.Kv.Key), Revision: e.Kv.ModRevision}
				if e.PrevKv != nil {
					ev.Prev = e.PrevKv.Value
				}
				if e.Type == mvccpb.DELETE {
					ev.Type = Deleted
				} else {
					ev.Type = Put
					ev.Value = e.Kv.Value
					ev.Created = e.IsCreate()
				}
				evs = append(evs, ev)
			}
			if len(evs) == 0 {
				continue
			}
			select {
			case out <- evs:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			errc <- errors.New("storage: watch closed")
		}
	}()
	return out, errc
}

// RequestProgress asks etcd to tell every watch how far it has got, so a
// cache can prove it is up to date with a revision that touched other keys.
func (s *Store) RequestProgress(ctx context.Context) error {
	// Watch streams are keyed by the context's metadata: ask on the same
	// (leader-requiring) stream the watches use.
	return wrap(s.client.RequestProgress(clientv3.WithRequireLeader(ctx)))
}

// Compact drops history older than rev, keeping etcd small.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	_, err := s.client.Compact(ctx, rev)
	return wrap(err)
}

// RunCompactor compacts every interval, keeping the last interval of history
// (what watchers need to resume), until ctx ends.
func (s *Store) RunCompactor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if last > 0 {
				_ = s.Compact(ctx, last)
			}
			if rev, err := s.Revision(ctx); err == nil {
				last = rev
			}
		}
	}
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("%w: %v", ErrCompacted, err)
	}
	return fmt.Errorf("storage: %w", err)
}
