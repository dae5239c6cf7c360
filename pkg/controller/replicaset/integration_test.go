package replicaset_test

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/internal/controllertest"
	"github.com/skiff-org/skiff/pkg/controller/replicaset"
)

// runControllers runs both replica controllers until the test ends.
func runControllers(t *testing.T, cfg *rest.Config) {
	client := controllertest.Client(cfg)
	f := informers.NewSharedInformerFactory(client, 0)
	log := controllertest.Log()
	t.Cleanup(controllertest.Run(f, 5, replicaset.NewReplicaSet(client, f, log), replicaset.NewReplicationController(client, f, log)))
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
	controllertest.Eventually(t, fmt.Sprintf("%s at %d replicas", name, n), func() (bool, string) {
		var err error
		rs, err = c.AppsV1().ReplicaSets("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods := controllertest.OwnedPods(t, c, "default", rs.UID)
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
	controllertest.FakeKubelet(t, c.Config, 0)
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
	pods := controllertest.OwnedPods(t, api, "default", rs.UID)
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
	pods = controllertest.OwnedPods(t, api, "default", rs.UID)
	gone := pods[0].Name
	if err := api.CoreV1().Pods("default").Delete(ctx, gone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	converged(t, api, "web", 5)
	for _, p := range controllertest.OwnedPods(t, api, "default", rs.UID) {
		if p.Name == gone {
			t.Errorf("deleted pod %s still owned", gone)
		}
	}

	// A relabelled pod is released and replaced.
	relabel := controllertest.OwnedPods(t, api, "default", rs.UID)[0].Name
	patch := []byte(`{"metadata":{"labels":{"app":"debug"}}}`)
	if _, err := api.CoreV1().Pods("default").Patch(ctx, relabel, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	converged(t, api, "web", 5)
	controllertest.Eventually(t, "relabelled pod released", func() (bool, string) {
		p, err := api.CoreV1().Pods("default").Get(ctx, relabel, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return metav1.GetControllerOf(p) == nil, fmt.Sprintf("owners %v", p.OwnerReferences)
	})

	// Events tell the story.
	controllertest.Eventually(t, "SuccessfulCreate event", func() (bool, string) {
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
	controllertest.FakeKubelet(t, c.Config, 0)
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
	controllertest.Eventually(t, "rc at 4", func() (bool, string) {
		cur, err := c.Client.CoreV1().ReplicationControllers("default").Get(ctx, "old", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods := controllertest.OwnedPods(t, c.Client, "default", rc.UID)
		return len(pods) == 4 && cur.Status.Replicas == 4 && cur.Status.ReadyReplicas == 4 && cur.Status.AvailableReplicas == 4,
			fmt.Sprintf("%d pods, status %+v", len(pods), cur.Status)
	})
	for _, p := range controllertest.OwnedPods(t, c.Client, "default", rc.UID) {
		if ref := metav1.GetControllerOf(&p); ref.Kind != "ReplicationController" || ref.APIVersion != "v1" {
			t.Errorf("pod %s owner = %s %s, want v1 ReplicationController", p.Name, ref.APIVersion, ref.Kind)
		}
	}
}
