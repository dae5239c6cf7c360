package kubelet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/ptr"
)

const sampleLog = `2026-01-02T03:04:01.000000001Z stdout F one
2026-01-02T03:04:02.000000000Z stderr F two
2026-01-02T03:04:03.000000000Z stdout P thr
2026-01-02T03:04:03.500000000Z stdout F ee
garbage line
2026-01-02T03:04:04.000000000Z stdout F four
`

func TestWriteLogs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(sampleLog), 0o644); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 1, 2, 3, 4, 2, 500, time.UTC)
	tests := []struct {
		name string
		opts logOptions
		want string
	}{
		{"all", logOptions{}, "one\ntwo\nthree\nfour\n"},
		{"tail 2", logOptions{TailLines: ptr.To[int64](2)}, "three\nfour\n"},
		{"tail 0", logOptions{TailLines: ptr.To[int64](0)}, ""},
		{"tail more than there is", logOptions{TailLines: ptr.To[int64](10)}, "one\ntwo\nthree\nfour\n"},
		{"since", logOptions{Since: &since}, "three\nfour\n"},
		{"timestamps", logOptions{TailLines: ptr.To[int64](1), Timestamps: true}, "2026-01-02T03:04:04Z four\n"},
		{"limit bytes", logOptions{LimitBytes: ptr.To[int64](6)}, "one\ntw"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := writeLogs(context.Background(), path, tt.opts, &buf, nil); err != nil {
			t.Errorf("writeLogs(%s) error = %v", tt.name, err)
		}
		if buf.String() != tt.want {
			t.Errorf("writeLogs(%s) = %q, want %q", tt.name, buf.String(), tt.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a follower writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestWriteLogsFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte("2026-01-02T03:04:01Z stdout F one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	finished := false
	out := &syncBuffer{}
	errc := make(chan error, 1)
	go func() {
		errc <- writeLogs(context.Background(), path, logOptions{Follow: true}, out, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return finished
		})
	}()
	waitFor(t, func() bool { return out.String() == "one\n" })
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A line written in two pieces is only shown once complete.
	f.WriteString("2026-01-02T03:04:02Z stdout F tw")
	time.Sleep(2 * followPoll)
	if got := out.String(); got != "one\n" {
		t.Errorf("follow showed a half-written line: %q", got)
	}
	f.WriteString("o\n2026-01-02T03:04:03Z stdout F three\n")
	f.Close()
	waitFor(t, func() bool { return out.String() == "one\ntwo\nthree\n" })
	mu.Lock()
	finished = true
	mu.Unlock()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("writeLogs(follow) error = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("writeLogs(follow) did not end after the container finished")
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
