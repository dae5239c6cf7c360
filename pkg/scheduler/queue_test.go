package scheduler

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func qPod(name string, prio int32, created int64) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), CreationTimestamp: metav1.Unix(created, 0)},
		Spec:       v1.PodSpec{Priority: &prio},
	}
}

func prio(p *v1.Pod) int32 { return *p.Spec.Priority }

func popNow(t *testing.T, q *queue) *qItem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	it := q.Pop(ctx)
	if it == nil {
		t.Fatalf("Pop = nil, want an item")
	}
	return it
}

func assertEmpty(t *testing.T, q *queue) {
	t.Helper()
	q.mu.Lock()
	n := q.active.Len()
	q.mu.Unlock()
	if n != 0 {
		t.Fatalf("active queue has %d items, want none", n)
	}
}

func TestQueueOrder(t *testing.T) {
	clk := &fakeClock{t: time.Unix(100, 0)}
	q := newQueue(clk.now, prio)
	q.Add(qPod("low-old", 0, 1))
	q.Add(qPod("high-new", 1000, 50))
	q.Add(qPod("low-new", 0, 40))
	q.Add(qPod("high-old", 1000, 10))
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, popNow(t, q).key)
	}
	want := []string{"default/high-old", "default/high-new", "default/low-old", "default/low-new"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Pop order = %v, want %v", got, want)
		}
	}
}

func TestQueueUnschedulableAndBackoff(t *testing.T) {
	clk := &fakeClock{t: time.Unix(100, 0)}
	q := newQueue(clk.now, prio)
	p := qPod("p", 0, 1)
	q.Add(p)
	it := popNow(t, q)
	q.Unschedulable(it)
	assertEmpty(t, q)

	// A status-only update does not retry it.
	st := p.DeepCopy()
	st.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse}}
	q.Add(st)
	q.Flush()
	assertEmpty(t, q)

	// A node change moves it, but it waits out its 1s back-off first.
	q.MoveUnschedulable(nil)
	q.Flush()
	assertEmpty(t, q)
	clk.t = clk.t.Add(time.Second)
	q.Flush()
	it = popNow(t, q)

	// Second failure: 2s back-off, and a move during the attempt sends it
	// to back-off rather than parking it.
	q.MoveUnschedulable(nil)
	q.Unschedulable(it)
	clk.t = clk.t.Add(1500 * time.Millisecond)
	q.Flush()
	assertEmpty(t, q)
	clk.t = clk.t.Add(600 * time.Millisecond)
	q.Flush()
	it = popNow(t, q)

	// Back-off is capped at 10s.
	for i := 0; i < 10; i++ {
		it.attempts++
	}
	if d := backoffFor(it.attempts); d != maxBackoff {
		t.Errorf("backoffFor(%d) = %v, want %v", it.attempts, d, maxBackoff)
	}
	q.Done(it)
	if q.Len() != 0 {
		t.Errorf("Len after Done = %d, want 0", q.Len())
	}
}

func TestQueueSpecChangeRetries(t *testing.T) {
	clk := &fakeClock{t: time.Unix(100, 0)}
	q := newQueue(clk.now, prio)
	p := qPod("p", 0, 1)
	q.Add(p)
	q.Unschedulable(popNow(t, q))
	clk.t = clk.t.Add(time.Second)
	changed := p.DeepCopy()
	changed.Spec.NodeSelector = map[string]string{"a": "b"}
	q.Add(changed)
	it := popNow(t, q)
	if it.pod.Spec.NodeSelector["a"] != "b" {
		t.Errorf("popped pod has nodeSelector %v, want the updated one", it.pod.Spec.NodeSelector)
	}
	q.Delete(changed)
	q.Unschedulable(it) // ignored: the pod is gone
	if q.Len() != 0 {
		t.Errorf("Len after Delete = %d, want 0", q.Len())
	}
}

func TestQueuePopEndsWithContext(t *testing.T) {
	q := newQueue(time.Now, prio)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if it := q.Pop(ctx); it != nil {
		t.Errorf("Pop on a cancelled context = %v, want nil", it)
	}
}
