package deployment_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/deployment"
	"github.com/skiff-org/skiff/pkg/controller/internal/controllertest"
	"github.com/skiff-org/skiff/pkg/controller/replicaset"
)

// controllers runs the ReplicaSet and Deployment controllers; the returned
// stop waits for them to end.
func controllers(cfg *rest.Config) (stop func()) {
	client := controllertest.Client(cfg)
	f := informers.NewSharedInformerFactory(client, 0)
	log := controllertest.Log()
	return controllertest.Run(f, 5, replicaset.NewReplicaSet(client, f, log), deployment.New(client, f, log))
}

func newDeployment(name string, replicas int32, labels map[string]string, image string) *appsv1.Deployment {
	surge, unavail := intstr.FromInt32(2), intstr.FromInt32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: image}}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}},
		},
	}
}

// rolledOut waits until the deployment is complete by kubectl's rules and
// returns it with its ReplicaSets.
func rolledOut(t *testing.T, c kubernetes.Interface, name string) (*appsv1.Deployment, []appsv1.ReplicaSet) {
	t.Helper()
	var d *appsv1.Deployment
	var rss []appsv1.ReplicaSet
	controllertest.Eventually(t, name+" rolled out", func() (bool, string) {
		var err error
		d, err = c.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		st, n := d.Status, *d.Spec.Replicas
		prog := deployment.GetCondition(&st, appsv1.DeploymentProgressing)
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != n || st.Replicas != n || st.AvailableReplicas != n ||
			prog == nil || prog.Reason != deployment.ReasonNewRSAvailable {
			return false, fmt.Sprintf("status %+v", st)
		}
		rss = owned(t, c, d.UID)
		pods := 0
		for _, rs := range rss {
			pods += len(controllertest.OwnedPods(t, c, "default", rs.UID))
		}
		return int32(pods) == n, fmt.Sprintf("%d pods", pods)
	})
	return d, rss
}

func owned(t *testing.T, c kubernetes.Interface, uid types.UID) []appsv1.ReplicaSet {
	list, err := c.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Logf("list replicasets: %v", err)
		return nil
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == uid {
			out = append(out, rs)
		}
	}
	return out
}

func setImage(t testing.TB, c kubernetes.Interface, name, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":%q}]}}}}`, image)
	if _, err := c.AppsV1().Deployments("default").Patch(context.Background(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("set image: %v", err)
	}
}

// watchBounds counts, at every pod event, the live and the ready pods with
// the given label and records the extremes.
type bounds struct {
	mu                sync.Mutex
	live, ready       map[string]bool
	maxLive, minReady int
}

func watchBounds(t *testing.T, cfg *rest.Config, app string) *bounds {
	b := &bounds{live: map[string]bool{}, ready: map[string]bool{}, minReady: 1 << 30}
	client := controllertest.Client(cfg)
	f := informers.NewSharedInformerFactory(client, 0)
	ctx, cancel := context.WithCancel(context.Background())
	on := func(obj any) {
		p, ok := obj.(*v1.Pod)
		if !ok {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				p, _ = tomb.Obj.(*v1.Pod)
			}
		}
		if p == nil || p.Labels["app"] != app {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		alive := p.DeletionTimestamp == nil
		key := p.Name
		delete(b.live, key)
		delete(b.ready, key)
		if alive {
			b.live[key] = true
			for _, c := range p.Status.Conditions {
				if c.Type == v1.PodReady && c.Status == v1.ConditionTrue {
					b.ready[key] = true
				}
			}
		}
		b.maxLive = max(b.maxLive, len(b.live))
		if len(b.live) > 0 {
			b.minReady = min(b.minReady, len(b.ready))
		}
	}
	inf := f.Core().V1().Pods().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    on,
		UpdateFunc: func(_, obj any) { on(obj) },
		DeleteFunc: func(obj any) {
			p, ok := obj.(*v1.Pod)
			if !ok {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					p, _ = tomb.Obj.(*v1.Pod)
				}
			}
			if p == nil {
				return
			}
			b.mu.Lock()
			delete(b.live, p.Name)
			delete(b.ready, p.Name)
			b.minReady = min(b.minReady, len(b.ready))
			b.mu.Unlock()
		},
	})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	t.Cleanup(func() {
		cancel()
		f.Shutdown()
	})
	return b
}

func (b *bounds) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.maxLive, b.minReady = len(b.live), len(b.ready)
}

func (b *bounds) get() (maxLive, minReady int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxLive, b.minReady
}

func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDeploymentRollout(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	stop := controllers(c.Config)
	defer func() { stop() }()
	controllertest.FakeKubelet(t, c.Config, 150*time.Millisecond)
	b := watchBounds(t, c.Config, "web")
	ctx := context.Background()
	api := c.Client

	const n = 6 // maxSurge 2, maxUnavailable 1
	d := newDeployment("web", n, map[string]string{"app": "web"}, "nginx:1")
	d.Annotations = map[string]string{deployment.ChangeCauseAnnotation: "first"}
	if _, err := api.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, rss := rolledOut(t, api, "web")
	if len(rss) != 1 {
		t.Fatalf("after create: %d replica sets, want 1", len(rss))
	}
	first := rss[0]
	hash := deployment.ComputeHash(&d.Spec.Template, nil)
	if first.Name != "web-"+hash || first.Labels[deployment.HashLabel] != hash || first.Annotations[deployment.RevisionAnnotation] != "1" ||
		first.Annotations[deployment.ChangeCauseAnnotation] != "first" || first.Annotations[deployment.DesiredReplicasAnnotation] != "6" ||
		first.Annotations[deployment.MaxReplicasAnnotation] != "8" {
		t.Errorf("first replica set %s labels %v annotations %v, want web-%s revision 1", first.Name, first.Labels, first.Annotations, hash)
	}
	if d.Annotations[deployment.RevisionAnnotation] != "1" {
		t.Errorf("deployment revision = %q, want 1", d.Annotations[deployment.RevisionAnnotation])
	}
	if a := deployment.GetCondition(&d.Status, appsv1.DeploymentAvailable); a == nil || a.Status != v1.ConditionTrue || a.Reason != deployment.ReasonMinimumAvailable {
		t.Errorf("Available = %+v, want True MinimumReplicasAvailable", a)
	}
	if out := kubectl(t, c.Kubeconfig, "rollout", "status", "deployment/web", "--timeout=30s"); !strings.Contains(out, `deployment "web" successfully rolled out`) {
		t.Errorf("kubectl rollout status = %q", out)
	}

	// A rolling update stays within the bounds at every pod event.
	b.reset()
	kubectl(t, c.Kubeconfig, "set", "image", "deployment/web", "c=nginx:2")
	d, rss = rolledOut(t, api, "web")
	maxLive, minReady := b.get()
	if maxLive > n+2 || minReady < n-1 {
		t.Errorf("rolling update: up to %d live pods and down to %d ready, want at most %d and at least %d", maxLive, minReady, n+2, n-1)
	}
	t.Logf("rolling update of %d: at most %d live pods, at least %d ready", n, maxLive, minReady)
	if len(rss) != 2 || d.Annotations[deployment.RevisionAnnotation] != "2" {
		t.Fatalf("after set image: %d replica sets, revision %q; want 2 and 2", len(rss), d.Annotations[deployment.RevisionAnnotation])
	}
	for _, rs := range rss {
		if rs.Name == first.Name && *rs.Spec.Replicas != 0 {
			t.Errorf("old replica set %s has %d replicas, want 0", rs.Name, *rs.Spec.Replicas)
		}
	}

	// kubectl rollout undo brings the first template back on the first
	// replica set, now revision 3.
	kubectl(t, c.Kubeconfig, "rollout", "undo", "deployment/web")
	d, rss = rolledOut(t, api, "web")
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "nginx:1" {
		t.Errorf("after undo image = %s, want nginx:1", img)
	}
	if len(rss) != 2 {
		t.Errorf("after undo %d replica sets, want 2 (the first one reused)", len(rss))
	}
	for _, rs := range rss {
		if rs.Name == first.Name && (rs.Annotations[deployment.RevisionAnnotation] != "3" || *rs.Spec.Replicas != n ||
			rs.Annotations[deployment.RevisionHistoryAnnotation] != "1") {
			t.Errorf("first replica set after undo: replicas %d annotations %v, want %d, revision 3, history 1", *rs.Spec.Replicas, rs.Annotations, n)
		}
	}
	if d.Annotations[deployment.RevisionAnnotation] != "3" {
		t.Errorf("deployment revision after undo = %q, want 3", d.Annotations[deployment.RevisionAnnotation])
	}

	// Pause: template changes wait; resume rolls them out.
	kubectl(t, c.Kubeconfig, "rollout", "pause", "deployment/web")
	kubectl(t, c.Kubeconfig, "set", "image", "deployment/web", "c=nginx:3")
	controllertest.Eventually(t, "paused condition", func() (bool, string) {
		d, _ = api.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		p := deployment.GetCondition(&d.Status, appsv1.DeploymentProgressing)
		return p != nil && p.Reason == deployment.ReasonPaused && d.Status.ObservedGeneration == d.Generation, fmt.Sprintf("%+v", d.Status)
	})
	if got := len(owned(t, api, d.UID)); got != 2 {
		t.Errorf("paused deployment has %d replica sets after set image, want 2", got)
	}
	kubectl(t, c.Kubeconfig, "rollout", "resume", "deployment/web")
	kubectl(t, c.Kubeconfig, "rollout", "restart", "deployment/web")
	d, rss = rolledOut(t, api, "web")
	if len(rss) != 4 {
		t.Errorf("after resume and restart %d replica sets, want 4", len(rss))
	}
	if out := kubectl(t, c.Kubeconfig, "rollout", "history", "deployment/web"); !strings.Contains(out, "first") {
		t.Errorf("kubectl rollout history does not show the change cause:\n%s", out)
	}

	// revisionHistoryLimit trims old, empty replica sets.
	patch := []byte(`{"spec":{"revisionHistoryLimit":1}}`)
	if _, err := api.AppsV1().Deployments("default").Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "history trimmed to 1", func() (bool, string) {
		got := len(owned(t, api, d.UID))
		return got == 2, fmt.Sprintf("%d replica sets", got)
	})

	// Scaling while complete resizes the one active replica set.
	kubectl(t, c.Kubeconfig, "scale", "deployment/web", "--replicas=9")
	d, _ = rolledOut(t, api, "web")
	if d.Status.Replicas != 9 {
		t.Errorf("after scale status.replicas = %d, want 9", d.Status.Replicas)
	}

	// Events.
	controllertest.Eventually(t, "ScalingReplicaSet event", func() (bool, string) {
		evs, err := api.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		want := fmt.Sprintf("Scaled up replica set %s from 0 to 6", first.Name)
		for _, e := range evs.Items {
			if e.Reason == "ScalingReplicaSet" && e.Source.Component == "deployment-controller" && e.Message == want {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no %q among %d events", want, len(evs.Items))
	})
}

// TestDeploymentControllerRestart kills the controllers in the middle of a
// rollout and starts new ones: the rollout finishes with exactly the wanted
// pods and no extra replica sets.
func TestDeploymentControllerRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	controllertest.FakeKubelet(t, c.Config, 300*time.Millisecond)
	api := c.Client
	ctx := context.Background()
	stop := controllers(c.Config)
	const n = 20
	if _, err := api.AppsV1().Deployments("default").Create(ctx, newDeployment("web", n, map[string]string{"app": "web"}, "nginx:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, _ := rolledOut(t, api, "web")
	setImage(t, api, "web", "nginx:2")
	controllertest.Eventually(t, "rollout under way", func() (bool, string) {
		rss := owned(t, api, d.UID)
		for _, rs := range rss {
			if rs.Spec.Template.Spec.Containers[0].Image == "nginx:2" && rs.Status.Replicas > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d replica sets", len(rss))
	})
	stop()
	stop = controllers(c.Config)
	defer func() { stop() }()
	d, rss := rolledOut(t, api, "web")
	if len(rss) != 2 {
		t.Errorf("after restart mid-rollout %d replica sets, want 2", len(rss))
	}
	all, err := api.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, p := range all.Items {
		if p.DeletionTimestamp == nil {
			live++
			if p.Spec.Containers[0].Image != "nginx:2" {
				t.Errorf("pod %s still runs %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
	}
	if live != n {
		t.Errorf("after restart mid-rollout %d pods, want %d", live, n)
	}
}

// TestDeploymentsShareService runs two tracks with different labels under
// one app label: each keeps to its own replica sets and pods.
func TestDeploymentsShareService(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	stop := controllers(c.Config)
	defer stop()
	controllertest.FakeKubelet(t, c.Config, 0)
	api := c.Client
	ctx := context.Background()
	stable := newDeployment("web-stable", 4, map[string]string{"app": "web", "track": "stable"}, "nginx:1")
	canary := newDeployment("web-canary", 1, map[string]string{"app": "web", "track": "canary"}, "nginx:2")
	recreate := newDeployment("web-batch", 3, map[string]string{"app": "web", "track": "batch"}, "nginx:1")
	recreate.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	for _, d := range []*appsv1.Deployment{stable, canary, recreate} {
		if _, err := api.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]int{"web-stable": 4, "web-canary": 1, "web-batch": 3} {
		d, rss := rolledOut(t, api, name)
		if len(rss) != 1 || !strings.HasPrefix(rss[0].Name, name+"-") {
			t.Errorf("%s owns %d replica sets, want its own one", name, len(rss))
		}
		if got := len(controllertest.OwnedPods(t, api, "default", rss[0].UID)); got != want {
			t.Errorf("%s has %d pods, want %d", d.Name, got, want)
		}
	}
	setImage(t, api, "web-batch", "nginx:2")
	_, rss := rolledOut(t, api, "web-batch")
	if len(rss) != 2 {
		t.Errorf("web-batch after Recreate update has %d replica sets, want 2", len(rss))
	}
}
