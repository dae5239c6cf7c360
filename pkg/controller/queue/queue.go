// Package queue is the shell every skiff controller reconciles in: informer
// event handlers put keys on a rate-limited work queue, and once the
// informers' caches have synced, workers take one key at a time, hand it to
// the controller's sync function, and then either forget the key or put it
// back with back-off. A controller supplies only the sync function and its
// handlers; the goroutines, the retries and the shutdown are here, written
// once.
package queue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// ErrCacheSync means the informers' caches did not sync although the
// context is still live.
var ErrCacheSync = errors.New("queue: caches did not sync")

// Config tunes a Queue. Only Name and Log are needed; the zero value of every
// other field is what most controllers want.
type Config struct {
	// Name names the queue in client-go's workqueue metrics.
	Name string
	// Log receives a line for every failed sync.
	Log *slog.Logger
	// KeyAttr is the log attribute a key is written under ("service",
	// "node"); "key" when empty.
	KeyAttr string
	// RateLimiter paces the retries of failing keys; nil means client-go's
	// default controller limiter (per key 5 ms doubling to 1000 s, overall
	// 10 per second with bursts of 100).
	RateLimiter workqueue.TypedRateLimiter[string]
	// Clock times delayed and rate-limited adds; nil means the real clock.
	Clock clock.WithTicker
	// ConflictRetry, when not zero, retries a key whose sync ended in a
	// write conflict after this fixed delay, with its back-off forgotten.
	// A conflict means a newer version is already on its way through the
	// informer; exponential back-off would stall a busy key for seconds.
	ConflictRetry time.Duration
	// Expected reports errors that are part of normal operation, such as a
	// conflict the next sync resolves: they are retried like any other but
	// not logged. Nil means every error is logged.
	Expected func(error) bool
	// Ready, when set, runs in Run after the caches have synced and before
	// the first worker starts, for state a controller rebuilds from full
	// caches (nodeipam's allocation map). An error from it ends Run.
	Ready func() error
}

// Queue is a rate-limited queue of namespace/name keys (or any other string
// keys) and the workers that drain it into a sync function.
type Queue struct {
	q    workqueue.TypedRateLimitingInterface[string]
	sync func(ctx context.Context, key string) error
	cfg  Config
}

// New returns a queue whose workers call sync for each key. sync reconciles
// one key from the caches: nil means done, an error means try again later.
// The queue holds goroutines from the start; Run (or ShutDown) ends them.
func New(sync func(ctx context.Context, key string) error, cfg Config) *Queue {
	if cfg.KeyAttr == "" {
		cfg.KeyAttr = "key"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	rl := cfg.RateLimiter
	if rl == nil {
		rl = workqueue.DefaultTypedControllerRateLimiter[string]()
	}
	return &Queue{
		q: workqueue.NewTypedRateLimitingQueueWithConfig(rl,
			workqueue.TypedRateLimitingQueueConfig[string]{Name: cfg.Name, Clock: cfg.Clock}),
		sync: sync,
		cfg:  cfg,
	}
}

// Add queues key now.
func (q *Queue) Add(key string) { q.q.Add(key) }

// AddAfter queues key once d has passed, for a sync that knows when it must
// look again (a deadline, a readiness delay).
func (q *Queue) AddAfter(key string, d time.Duration) { q.q.AddAfter(key, d) }

// AddObject queues the namespace/name key (the name alone for a
// cluster-scoped object) of an informer object or of a deleted object's
// tombstone. It fits any of an informer handler's add and delete slots.
func (q *Queue) AddObject(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		q.q.Add(key)
	}
}

// Handler queues the key of every object added, updated or deleted: the
// handler of a controller's primary resource.
func (q *Queue) Handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    q.AddObject,
		UpdateFunc: func(_, obj any) { q.AddObject(obj) },
		DeleteFunc: q.AddObject,
	}
}

// ShutDown stops the queue without Run, for a controller whose Run fails
// before it gets to Queue.Run. Calling it again, or after Run, is harmless.
func (q *Queue) ShutDown() { q.q.ShutDown() }

// Run waits for synced, runs Config.Ready if set, and then syncs keys with
// the given number of workers until ctx ends. It returns once every worker
// has stopped and the queue is shut down, nil when ctx ended (even before
// the caches synced).
func (q *Queue) Run(ctx context.Context, workers int, synced ...cache.InformerSynced) error {
	defer q.q.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return ErrCacheSync
	}
	if q.cfg.Ready != nil {
		if err := q.cfg.Ready(); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for q.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	q.q.ShutDown()
	wg.Wait()
	return nil
}

// processNext syncs one key; false means the queue has shut down.
func (q *Queue) processNext(ctx context.Context) bool {
	key, quit := q.q.Get()
	if quit {
		return false
	}
	defer q.q.Done(key)
	err := q.sync(ctx, key)
	switch {
	case err == nil:
		q.q.Forget(key)
	case q.cfg.ConflictRetry > 0 && apierrors.IsConflict(err):
		q.q.Forget(key)
		q.q.AddAfter(key, q.cfg.ConflictRetry)
	default:
		// A sync cut short by shutdown is no news.
		if ctx.Err() == nil && (q.cfg.Expected == nil || !q.cfg.Expected(err)) {
			q.cfg.Log.Info("sync failed, requeuing", q.cfg.KeyAttr, key, "err", err)
		}
		q.q.AddRateLimited(key)
	}
	return true
}
