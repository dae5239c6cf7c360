package scheduler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
)

func TestWaitSynced(t *testing.T) {
	var late atomic.Bool
	time.AfterFunc(150*time.Millisecond, func() { late.Store(true) })
	yes := func() bool { return true }
	no := func() bool { return false }
	cases := []struct {
		name    string
		synced  map[string]toolscache.InformerSynced
		wantErr string // "" for success
	}{
		{"all synced", map[string]toolscache.InformerSynced{"pods": yes, "nodes": yes}, ""},
		{"one syncs late", map[string]toolscache.InformerSynced{"pods": yes, "nodes": late.Load}, ""},
		{"two never served", map[string]toolscache.InformerSynced{"pods": yes, "services": no, "priorityclasses": no},
			"[priorityclasses services]"},
	}
	s := &scheduler{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, c := range cases {
		wait := 2 * time.Second
		if c.wantErr != "" {
			wait = 300 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := s.waitSynced(ctx, c.synced)
		cancel()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("waitSynced(%s) = %v, want nil", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, context.DeadlineExceeded)):
			t.Errorf("waitSynced(%s) = %v, want an error naming %s", c.name, err, c.wantErr)
		}
	}
}
