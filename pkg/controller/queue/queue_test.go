package queue_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-org/skiff/pkg/controller/queue"
)

// limiter records what the queue asks of its rate limiter and never delays.
type limiter struct {
	mu      sync.Mutex
	limited map[string]int // AddRateLimited calls
	forgot  map[string]int
}

func newLimiter() *limiter {
	return &limiter{limited: map[string]int{}, forgot: map[string]int{}}
}

func (l *limiter) When(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limited[key]++
	return 0
}

func (l *limiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgot[key]++
}

func (l *limiter) NumRequeues(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limited[key]
}

func (l *limiter) counts(key string) (limited, forgot int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limited[key], l.forgot[key]
}

// run runs q in the background; stop cancels it and returns Run's result.
func run(q *queue.Queue, workers int, synced ...cache.InformerSynced) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, workers, synced...) }()
	return func() error {
		cancel()
		return <-done
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

var conflict = apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("stale"))

func TestRetry(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		conflictRetry time.Duration
		wantLimited   int // AddRateLimited calls before the sync that succeeds
		wantForgot    int // one for the success, one per fixed conflict retry
	}{
		{"success", nil, 0, 0, 1},
		{"error backs off", errors.New("boom"), 0, 2, 1},
		{"conflict backs off by default", conflict, 0, 2, 1},
		{"conflict retried after a fixed delay", conflict, time.Millisecond, 0, 3},
		{"other errors still back off", errors.New("boom"), time.Millisecond, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter()
			var calls atomic.Int32
			sync := func(_ context.Context, key string) error {
				if key != "ns/a" {
					t.Errorf("sync(%q), want ns/a", key)
				}
				if n := calls.Add(1); tt.err != nil && n <= 2 {
					return tt.err
				}
				return nil
			}
			q := queue.New(sync, queue.Config{RateLimiter: l, ConflictRetry: tt.conflictRetry})
			q.Add("ns/a")
			stop := run(q, 1)
			waitFor(t, "success", func() bool { _, f := l.counts("ns/a"); return f >= tt.wantForgot })
			if err := stop(); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			if limited, forgot := l.counts("ns/a"); limited != tt.wantLimited || forgot != tt.wantForgot {
				t.Errorf("rate limited %d times, forgotten %d; want %d and %d", limited, forgot, tt.wantLimited, tt.wantForgot)
			}
		})
	}
}

func TestWorkersStartAfterCachesSync(t *testing.T) {
	var synced, ready atomic.Bool
	var early atomic.Bool
	done := make(chan string, 1)
	sync := func(_ context.Context, key string) error {
		if !synced.Load() || !ready.Load() {
			early.Store(true)
		}
		done <- key
		return nil
	}
	q := queue.New(sync, queue.Config{Ready: func() error {
		if !synced.Load() {
			t.Error("Ready ran before the caches synced")
		}
		ready.Store(true)
		return nil
	}})
	q.Add("k")
	stop := run(q, 3, synced.Load)
	time.Sleep(150 * time.Millisecond) // WaitForCacheSync polls every 100 ms
	select {
	case key := <-done:
		t.Fatalf("sync(%q) before the caches synced", key)
	default:
	}
	synced.Store(true)
	if key := <-done; key != "k" || early.Load() {
		t.Errorf("sync(%q) early=%v, want k after sync and Ready", key, early.Load())
	}
	if err := stop(); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}

func TestRunEnds(t *testing.T) {
	never := func() bool { return false }
	errReady := errors.New("ready failed")
	tests := []struct {
		name   string
		ready  func() error
		synced cache.InformerSynced
		cancel bool
		want   error
	}{
		{"ctx ends before the caches sync", nil, never, true, nil},
		{"ctx ends while working", nil, nil, true, nil},
		{"Ready fails", func() error { return errReady }, nil, false, errReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			var calls atomic.Int32
			q := queue.New(func(context.Context, string) error { calls.Add(1); return nil }, queue.Config{Ready: tt.ready})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			var synced []cache.InformerSynced
			if tt.synced != nil {
				synced = append(synced, tt.synced)
			}
			if err := q.Run(ctx, 4, synced...); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("Run() = %v, want %v", err, tt.want)
			}
			// The workers and the queue's own goroutines are gone.
			waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
			q.ShutDown() // again: harmless
			q.Add("late")
			if calls.Load() != 0 {
				t.Errorf("%d syncs, want 0", calls.Load())
			}
		})
	}
}

func TestLog(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		keyAttr string
		want    string // "" for no line
	}{
		{"failure", errors.New("boom"), "", `msg="sync failed, requeuing" key=ns/a err=boom`},
		{"key attribute", errors.New("boom"), "service", `msg="sync failed, requeuing" service=ns/a err=boom`},
		{"expected error", conflict, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, nil))
			l := newLimiter()
			var failed atomic.Bool
			sync := func(context.Context, string) error {
				if failed.CompareAndSwap(false, true) {
					return tt.err
				}
				return nil
			}
			q := queue.New(sync, queue.Config{Log: log, KeyAttr: tt.keyAttr, RateLimiter: l, Expected: apierrors.IsConflict})
			q.Add("ns/a")
			stop := run(q, 1)
			waitFor(t, "success", func() bool { _, f := l.counts("ns/a"); return f == 1 })
			_ = stop()
			mu.Lock()
			got := buf.String()
			mu.Unlock()
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("log = %q, want %q", got, tt.want)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestHandlerQueuesObjectKeys(t *testing.T) {
	keys := make(chan string, 10)
	q := queue.New(func(_ context.Context, key string) error { keys <- key; return nil }, queue.Config{})
	h := q.Handler()
	pod := &metav1.ObjectMeta{Namespace: "ns", Name: "p"}
	h.OnAdd(pod, false)
	stop := run(q, 1)
	defer func() { _ = stop() }()
	if got := <-keys; got != "ns/p" {
		t.Errorf("add queued %q, want ns/p", got)
	}
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/gone", Obj: &metav1.ObjectMeta{Namespace: "ns", Name: "gone"}})
	if got := <-keys; got != "ns/gone" {
		t.Errorf("delete of a tombstone queued %q, want ns/gone", got)
	}
	h.OnUpdate(pod, &metav1.ObjectMeta{Name: "node1"})
	if got := <-keys; got != "node1" {
		t.Errorf("update queued %q, want node1", got)
	}
}
