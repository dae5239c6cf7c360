package storage

import (
	"context"
	"testing"
	"time"
)

// A watch on one prefix learns, through a progress notification, that a
// write under another prefix has moved etcd's revision past it.
func TestWatchProgress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, s, err := StartEmbedded(ctx, t.TempDir(), freePort(t), freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evc, _ := s.Watch(ctx, "/a/", rev)
	time.Sleep(100 * time.Millisecond)
	if _, err := s.Create(ctx, "/b/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	want, _ := s.Revision(ctx)
	deadline := time.After(5 * time.Second)
	for {
		if err := s.RequestProgress(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case batch := <-evc:
			for _, ev := range batch {
				if ev.Type == Progress && ev.Revision >= want {
					return
				}
			}
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no progress notification reaching revision %d", want)
		}
	}
}
