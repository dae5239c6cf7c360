package apiserver

import (
	"context"
	"fmt"
	"net"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-org/skiff/pkg/registry"
	"github.com/skiff-org/skiff/pkg/storage"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestUpdateFromLaggingCache: an update computed on a cached object that
// etcd has since changed must not be taken for a no-op when it equals the
// stale copy; it has to reach etcd.
func TestUpdateFromLaggingCache(t *testing.T) {
	ctx := context.Background()
	etcd, store, err := storage.StartEmbedded(ctx, t.TempDir(), freePort(t), freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	s, err := New(Config{Store: store, Resources: registry.All()})
	if err != nil {
		t.Fatal(err)
	}
	res := s.resources[schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}]
	cacheCtx, stopCache := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); res.cache.Run(cacheCtx) }()
	if err := res.cache.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	cm := func(v string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "default"}, Data: map[string]string{"k": v}}
	}
	key := res.key("default", "c")
	data, _ := encodeForStorage(res, cm("old"))
	rev, err := store.Create(ctx, key, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := res.cache.List(ctx, res.prefix, rev, nil); err != nil {
		t.Fatal(err)
	}
	// The cache stops here, holding "old"; etcd moves on to "new".
	stopCache()
	<-done
	data, _ = encodeForStorage(res, cm("new"))
	if _, err := store.Update(ctx, key, rev, data); err != nil {
		t.Fatal(err)
	}

	// A change that fails on the stale copy (as a JSON patch's test op would)
	// is judged on etcd's.
	expectNew := func(cur runtime.Object) (runtime.Object, error) {
		if c := cur.(*corev1.ConfigMap); c.Data["k"] != "new" {
			return nil, fmt.Errorf("test failed: k is %q", c.Data["k"])
		}
		return cur, nil
	}
	if _, _, err := s.updateObject(ctx, res, "default", "c", expectNew, writeOptions{}, false); err != nil {
		t.Errorf("update judged on the stale cached copy: %v", err)
	}

	back := func(cur runtime.Object) (runtime.Object, error) {
		c := cur.(*corev1.ConfigMap)
		c.Data = map[string]string{"k": "old"}
		return c, nil
	}
	if _, _, err := s.updateObject(ctx, res, "default", "c", back, writeOptions{}, false); err != nil {
		t.Fatal(err)
	}
	kv, err := store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decoderOf(res)(kv.Value, kv.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if v := got.(*corev1.ConfigMap).Data["k"]; v != "old" {
		t.Errorf("etcd holds %q after the update to \"old\"; the write was dropped as a no-op", v)
	}
}
