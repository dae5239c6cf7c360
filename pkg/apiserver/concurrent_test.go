package apiserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestConcurrentPatches: patches name no resourceVersion, so writers racing
// on one object all succeed, each applied to the copy before it; none may get
// a 409 (kubectl rollout restart did while the controller wrote status). An
// update that names a stale resourceVersion still gets 409.
func TestConcurrentPatches(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	cms := c.Client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pt := []types.PatchType{types.MergePatchType, types.StrategicMergePatchType}[i%2]
				patch := fmt.Sprintf(`{"data":{"w%d-%d":"x"}}`, w, i)
				if _, err := cms.Patch(ctx, "hot", pt, []byte(patch), metav1.PatchOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent patch: %v", err)
	}
	got, err := cms.Get(ctx, "hot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Data) != writers*each {
		t.Errorf("%d keys after %d patches; some were lost", len(got.Data), writers*each)
	}
	cm.Data = map[string]string{"stale": "yes"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("update with a stale resourceVersion: %v, want 409", err)
	}
}
