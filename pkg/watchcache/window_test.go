package watchcache

import (
	"testing"

	"k8s.io/apimachinery/pkg/watch"
)

// The window grows on demand up to its cap, keeping the newest events in
// order, and remembers from which revision a watch may still resume.
func TestWindowGrowsAndWraps(t *testing.T) {
	for _, tc := range []struct{ max, events int }{{4, 3}, {300, 700}, {1000, 600}, {5, 5}} {
		c := New(nil, "/x/", nil, tc.max, nil)
		for rev := 1; rev <= tc.events; rev++ {
			c.appendLocked(Event{Type: watch.Added, Rev: int64(rev)})
		}
		want := min(tc.max, tc.events)
		if c.size != want || len(c.window) > tc.max {
			t.Fatalf("max %d, %d events: size %d window %d, want size %d", tc.max, tc.events, c.size, len(c.window), want)
		}
		for i := 0; i < c.size; i++ {
			got := c.window[(c.head+i)%len(c.window)].Rev
			if wantRev := int64(tc.events - want + 1 + i); got != wantRev {
				t.Fatalf("max %d, %d events: event %d has rev %d, want %d", tc.max, tc.events, i, got, wantRev)
			}
		}
		if tc.events > tc.max && c.oldest != int64(tc.events-tc.max) {
			t.Errorf("max %d, %d events: oldest %d, want %d", tc.max, tc.events, c.oldest, tc.events-tc.max)
		}
	}
}
