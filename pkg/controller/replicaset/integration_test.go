package replicaset_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/replicaset"
)

func testLog() *slog.Logger {
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func fastClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	rc := rest.CopyConfig(cfg)
	rc.QPS, rc.Burst = 5000, 10000
	return kubernetes.NewForConfigOrDie(rc)
}

// runControllers runs both replica controllers until the test ends.
func runControllers(t *testing.T, cfg *rest.Config) {
	client := fastClient(t, cfg)
	f := informers.NewSharedInformerFactory(client, 0)
	rs := replicaset.NewReplicaSet(client, f, testLog())
	rc := replicaset.NewReplicationController(client, f, testLog())
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	var wg sync.WaitGroup
	wg.Go(func() { _ = rs.Run(ctx, 4) })
	wg.Go(func() { _ = rc.Run(ctx, 2) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		f.Shutdown()
	})
}

// fakeKubelet marks every pod Running and Ready, as a kubelet would.
func fakeKubelet(t *testing.T, cfg *rest.Config) {
	client := fastClient(t, cfg)
	f := informers.NewSharedInformerFactory(client, 0)
	ctx, cancel := context.WithCancel(context.Background())
	work := make(chan *v1.Pod, 10000)
	f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { work <- obj.(*v1.Pod) },
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case p := <-work:
					p = p.DeepCopy()
					now := metav1.Now()
					p.Status.Phase = v1.PodRunning
					p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: now}}
					_, _ = client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
		})
	}
	f.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		f.Shutdown()
	})
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in 30s; last: %s", what, last)
}

// ownedPods lists the live pods uid controls; nil on a list error (the
// callers poll).
func ownedPods(t *testing.T, c kubernetes.Interface, ns string, uid types.UID) []v1.Pod {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Logf("list pods: %v", err)
		return nil
	}
	var out []v1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == uid && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, "pod-template-hash": "abc"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
}

// converged waits until the ReplicaSet has exactly n live pods and a status
// that says so.
func converged(t *testing.T, c kubernetes.Interface, name string, n int32) *appsv1.ReplicaSet {
	t.Helper()
	var rs *appsv1.ReplicaSet
	eventually(t, fmt.Sprintf("%s at %d replicas", name, n), func() (bool, string) {
		var err error
		rs, err = c.AppsV1().ReplicaSets("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods := ownedPods(t, c, "default", rs.UID)
		st := rs.Status
		ok := int32(len(pods)) == n && st.Replicas == n && st.ReadyReplicas == n && st.AvailableReplicas == n &&
			st.FullyLabeledReplicas == n && st.ObservedGeneration == rs.Generation
		return ok, fmt.Sprintf("%d pods, status %+v", len(pods), st)
	})
	return rs
}

func TestReplicaSetIntegration(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	runControllers(t, c.Config)
	fakeKubelet(t, c.Config)
	ctx := context.Background()
	api := c.Client

	// An orphan that matches is adopted and counts.
	orphan := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: "default", Labels: map[string]string{"app": "web", "pod-template-hash": "abc"}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx"}}}}
	if _, err := api.CoreV1().Pods("default").Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rs, err := api.AppsV1().ReplicaSets("default").Create(ctx, newRS("web", 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs = converged(t, api, "web", 3)
	pods := ownedPods(t, api, "default", rs.UID)
	adopted := false
	for _, p := range pods {
		ref := metav1.GetControllerOf(&p)
		if ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion || ref.Kind != "ReplicaSet" || ref.Name != "web" {
			t.Errorf("pod %s controller ref = %+v, want ReplicaSet web, blocking", p.Name, ref)
		}
		if p.Name == "stray" {
			adopted = true
		} else if len(p.Name) != len("web-")+5 || p.Labels["pod-template-hash"] != "abc" {
			t.Errorf("pod %s labels %v, want web-<5 chars> with the template's labels", p.Name, p.Labels)
		}
	}
	if !adopted {
		t.Error("orphan pod stray was not adopted")
	}

	// Scale up and down converge exactly.
	for _, n := range []int32{9, 2, 5} {
		scale, err := api.AppsV1().ReplicaSets("default").GetScale(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = n
		if _, err := api.AppsV1().ReplicaSets("default").UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		converged(t, api, "web", n)
	}

	// A deleted pod is replaced.
	pods = ownedPods(t, api, "default", rs.UID)
	gone := pods[0].Name
	if err := api.CoreV1().Pods("default").Delete(ctx, gone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	converged(t, api, "web", 5)
	for _, p := range ownedPods(t, api, "default", rs.UID) {
		if p.Name == gone {
			t.Errorf("deleted pod %s still owned", gone)
		}
	}

	// A relabelled pod is released and replaced.
	relabel := ownedPods(t, api, "default", rs.UID)[0].Name
	patch := []byte(`{"metadata":{"labels":{"app":"debug"}}}`)
	if _, err := api.CoreV1().Pods("default").Patch(ctx, relabel, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	converged(t, api, "web", 5)
	eventually(t, "relabelled pod released", func() (bool, string) {
		p, err := api.CoreV1().Pods("default").Get(ctx, relabel, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return metav1.GetControllerOf(p) == nil, fmt.Sprintf("owners %v", p.OwnerReferences)
	})

	// Events tell the story.
	eventually(t, "SuccessfulCreate event", func() (bool, string) {
		evs, err := api.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == "SuccessfulCreate" && e.Source.Component == "replicaset-controller" && e.InvolvedObject.Name == "web" &&
				len(e.Message) > len("Created pod: ") && e.Message[:len("Created pod: ")] == "Created pod: " {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
}

func TestReplicationControllerIntegration(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	runControllers(t, c.Config)
	fakeKubelet(t, c.Config)
	ctx := context.Background()
	n := int32(4)
	rc := &v1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "default"},
		Spec: v1.ReplicationControllerSpec{
			Replicas: &n,
			Selector: map[string]string{"app": "old"},
			Template: &v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "old"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
	rc, err := c.Client.CoreV1().ReplicationControllers("default").Create(ctx, rc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "rc at 4", func() (bool, string) {
		cur, err := c.Client.CoreV1().ReplicationControllers("default").Get(ctx, "old", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods := ownedPods(t, c.Client, "default", rc.UID)
		return len(pods) == 4 && cur.Status.Replicas == 4 && cur.Status.ReadyReplicas == 4 && cur.Status.AvailableReplicas == 4,
			fmt.Sprintf("%d pods, status %+v", len(pods), cur.Status)
	})
	for _, p := range ownedPods(t, c.Client, "default", rc.UID) {
		if ref := metav1.GetControllerOf(&p); ref.Kind != "ReplicationController" || ref.APIVersion != "v1" {
			t.Errorf("pod %s owner = %s %s, want v1 ReplicationController", p.Name, ref.APIVersion, ref.Kind)
		}
	}
}
