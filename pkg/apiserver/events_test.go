package apiserver_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestEventsShareStorage checks that core/v1 and events.k8s.io/v1 events are
// one set of objects seen two ways, as in Kubernetes: what a controller
// records through either API shows in `kubectl get events` and the other.
func TestEventsShareStorage(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	core, ev1 := c.Client.CoreV1().Events("default"), c.Client.EventsV1().Events("default")

	w, err := core.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	now := metav1.NowMicro()
	created, err := ev1.Create(ctx, &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "new-style"},
		EventTime:           now,
		Regarding:           corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"},
		Reason:              "Pulled",
		Note:                "pulled the image",
		Type:                "Normal",
		Action:              "Pull",
		ReportingController: "example.com/puller",
		ReportingInstance:   "puller-1",
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := core.Get(ctx, "new-style", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("core/v1 get of an events.k8s.io/v1 event: %v", err)
	}
	if got.Message != "pulled the image" || got.InvolvedObject.Name != "web-1" || got.ReportingController != "example.com/puller" ||
		got.UID != created.UID || got.ResourceVersion != created.ResourceVersion {
		t.Errorf("core/v1 view = message %q object %q controller %q uid %s rv %s, want the created event (uid %s rv %s)",
			got.Message, got.InvolvedObject.Name, got.ReportingController, got.UID, got.ResourceVersion, created.UID, created.ResourceVersion)
	}
	select {
	case e := <-w.ResultChan():
		if e.Type != watch.Added || e.Object.(*corev1.Event).Name != "new-style" {
			t.Errorf("core/v1 watch got %s %v", e.Type, e.Object)
		}
	case <-time.After(10 * time.Second):
		t.Error("core/v1 watch did not see the events.k8s.io/v1 create")
	}
	sel, err := core.List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web-1"})
	if err != nil || len(sel.Items) != 1 {
		t.Errorf("core/v1 list by involvedObject.name = %v, %v; want the one event", sel, err)
	}

	// The other way: an event recorded the old way, updated the new way.
	if _, err := core.Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "old-style"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-2"},
		Reason:         "Started", Message: "started container", Type: "Normal", Count: 1,
		Source: corev1.EventSource{Component: "kubelet"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	old, err := ev1.Get(ctx, "old-style", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("events.k8s.io/v1 get of a core/v1 event: %v", err)
	}
	if old.Note != "started container" || old.DeprecatedCount != 1 || old.DeprecatedSource.Component != "kubelet" || old.Regarding.Name != "web-2" {
		t.Errorf("events.k8s.io/v1 view = %+v", old)
	}
	list, err := ev1.List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("events.k8s.io/v1 list = %v, %v; want both events", list, err)
	}

	if err := core.Delete(ctx, "new-style", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ev1.Get(ctx, "new-style", metav1.GetOptions{}); err == nil {
		t.Error("an event deleted through core/v1 is still served by events.k8s.io/v1")
	}
}
