package apiserver_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestMetadataClient lists and watches through client-go's metadata client,
// which asks for protobuf PartialObjectMetadata (the garbage collector's
// informers do).
func TestMetadataClient(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md, err := metadata.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	cms := md.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("default")
	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched", Labels: map[string]string{"a": "b"}}, Data: map[string]string{"k": "v"}}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		p, ok := ev.Object.(*metav1.PartialObjectMetadata)
		if ev.Type != watch.Added || !ok || p.Name != "watched" || p.Labels["a"] != "b" || p.UID == "" {
			t.Fatalf("event %s %#v, want ADDED PartialObjectMetadata of configmap watched", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event")
	}
	got, err := cms.Get(ctx, "watched", metav1.GetOptions{})
	if err != nil || got.Name != "watched" || got.UID == "" {
		t.Fatalf("get = %v, %#v", err, got)
	}
}
