package apiserver_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/skiff-org/skiff/internal/testcluster"
)

func pod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}}},
	}
}

func TestCRUDAndConcurrency(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	pods := c.Client.CoreV1().Pods("default")

	created, err := pods.Create(ctx, pod("a", map[string]string{"app": "x"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if created.UID == "" || created.ResourceVersion == "" || created.CreationTimestamp.IsZero() {
		t.Fatalf("Create did not fill uid/resourceVersion/creationTimestamp: %+v", created.ObjectMeta)
	}
	if created.Spec.RestartPolicy != corev1.RestartPolicyAlways || created.Status.Phase != corev1.PodPending {
		t.Errorf("defaults: restartPolicy %q phase %q, want Always Pending", created.Spec.RestartPolicy, created.Status.Phase)
	}
	if _, err := pods.Create(ctx, pod("a", nil), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second Create = %v, want AlreadyExists", err)
	}
	gen, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-"}, Spec: pod("", nil).Spec}, metav1.CreateOptions{})
	if err != nil || !strings.HasPrefix(gen.Name, "web-") || len(gen.Name) != len("web-")+5 {
		t.Errorf("generateName: %v %q", err, gen.Name)
	}

	// A stale update is a 409 Conflict.
	upd := created.DeepCopy()
	upd.Labels["v"] = "1"
	if _, err := pods.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("Update = %v", err)
	}
	upd.Labels["v"] = "2"
	_, err = pods.Update(ctx, upd, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("stale Update = %v, want Conflict", err)
	}
	if !strings.Contains(err.Error(), "the object has been modified") {
		t.Errorf("conflict message = %q", err)
	}

	// Label and field selectors, paging.
	for i := 0; i < 7; i++ {
		if _, err := pods.Create(ctx, pod(fmt.Sprintf("p%d", i), map[string]string{"app": "y"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=y"})
	if err != nil || len(l.Items) != 7 {
		t.Fatalf("List(app=y) = %d items, %v; want 7", len(l.Items), err)
	}
	l, err = pods.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=p3"})
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "p3" {
		t.Fatalf("List(name=p3) = %v, %v", l, err)
	}
	var names []string
	opts := metav1.ListOptions{Limit: 3, LabelSelector: "app=y"}
	for pages := 0; ; pages++ {
		l, err := pods.List(ctx, opts)
		if err != nil {
			t.Fatalf("paged List = %v", err)
		}
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		if l.Continue == "" {
			if pages != 2 {
				t.Errorf("pages = %d, want 3", pages+1)
			}
			break
		}
		opts.Continue = l.Continue
	}
	if len(names) != 7 {
		t.Errorf("paged names = %v, want 7", names)
	}
	if _, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Errorf("unknown field selector = %v, want BadRequest", err)
	}

	// Namespaces must exist.
	if _, err := c.Client.CoreV1().ConfigMaps("nope").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("create in missing namespace = %v, want NotFound", err)
	}

	// Delete of an unscheduled pod is immediate.
	if err := pods.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Get after delete = %v, want NotFound", err)
	}
}

func TestStatusScaleAndPatch(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	deps := c.Client.AppsV1().Deployments("default")
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: pod("", nil).Spec},
		},
		Status: appsv1.DeploymentStatus{Replicas: 99},
	}
	got, err := deps.Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Replicas != 0 || *got.Spec.Replicas != 1 || got.Generation != 1 {
		t.Errorf("create: status.replicas %d spec.replicas %d generation %d, want 0 1 1", got.Status.Replicas, *got.Spec.Replicas, got.Generation)
	}
	if got.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || got.Spec.Strategy.RollingUpdate.MaxSurge.String() != "25%" {
		t.Errorf("strategy defaults = %+v", got.Spec.Strategy)
	}
	// Status writes change only status.
	got.Status.Replicas = 3
	got.Spec.Paused = true
	st, err := deps.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Replicas != 3 || st.Spec.Paused || st.Generation != 1 {
		t.Errorf("UpdateStatus: replicas %d paused %v generation %d, want 3 false 1", st.Status.Replicas, st.Spec.Paused, st.Generation)
	}
	// Scale changes spec.replicas and the generation.
	sc, err := deps.GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 1 || sc.Status.Replicas != 3 {
		t.Fatalf("GetScale = %+v, %v", sc, err)
	}
	sc.Spec.Replicas = 5
	if _, err := deps.UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = deps.Get(ctx, "web", metav1.GetOptions{})
	if *got.Spec.Replicas != 5 || got.Generation != 2 || got.Status.Replicas != 3 {
		t.Errorf("after scale: replicas %d generation %d status %d", *got.Spec.Replicas, got.Generation, got.Status.Replicas)
	}
	// Strategic merge patch of a container list by name, JSON patch, merge patch.
	got, err = deps.Patch(ctx, "web", types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"busybox:2"}]}}}}`), metav1.PatchOptions{})
	if err != nil || got.Spec.Template.Spec.Containers[0].Image != "busybox:2" || len(got.Spec.Template.Spec.Containers[0].Command) != 2 {
		t.Fatalf("strategic patch = %v, %v", err, got.Spec.Template.Spec.Containers)
	}
	got, err = deps.Patch(ctx, "web", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/replicas","value":2}]`), metav1.PatchOptions{})
	if err != nil || *got.Spec.Replicas != 2 {
		t.Fatalf("json patch = %v", err)
	}
	got, err = deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"labels":{"tier":"fe"}}}`), metav1.PatchOptions{})
	if err != nil || got.Labels["tier"] != "fe" {
		t.Fatalf("merge patch = %v", err)
	}
	// Invalid objects are 422 with the field named.
	_, err = deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":-1}}`), metav1.PatchOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.replicas") {
		t.Errorf("invalid patch = %v, want Invalid naming spec.replicas", err)
	}
	// Server-side apply creates and then updates, tracking managers.
	cms := c.Client.CoreV1().ConfigMaps("default")
	apply := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1"}}`)
	cm, err := cms.Patch(ctx, "cfg", types.ApplyPatchType, apply, metav1.PatchOptions{FieldManager: "me"})
	if err != nil || cm.Data["a"] != "1" || len(cm.ManagedFields) == 0 {
		t.Fatalf("apply create = %v, %+v", err, cm)
	}
	apply = []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"b":"2"}}`)
	cm, err = cms.Patch(ctx, "cfg", types.ApplyPatchType, apply, metav1.PatchOptions{FieldManager: "me"})
	if err != nil || cm.Data["b"] != "2" || cm.Data["a"] != "" {
		t.Fatalf("apply update = %v, %v (field a should be removed: it is no longer applied)", err, cm.Data)
	}
	_, err = cms.Patch(ctx, "cfg", types.ApplyPatchType, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"b":"3"}}`), metav1.PatchOptions{FieldManager: "other"})
	if !apierrors.IsConflict(err) {
		t.Errorf("conflicting apply = %v, want Conflict", err)
	}
}

func TestServicesAllocation(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	svcs := c.Client.CoreV1().Services("default")
	mk := func(name string, typ corev1.ServiceType, nodePort int32, ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
			Type: typ, ClusterIP: ip, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: nodePort}}}}
	}
	a, err := svcs.Create(ctx, mk("a", corev1.ServiceTypeNodePort, 0, ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.Spec.ClusterIP, "10.43.") || a.Spec.Ports[0].NodePort < 30000 || a.Spec.Ports[0].NodePort > 32767 {
		t.Fatalf("allocated %s:%d, want 10.43.x.x and a port in 30000-32767", a.Spec.ClusterIP, a.Spec.Ports[0].NodePort)
	}
	if _, err := svcs.Create(ctx, mk("b", corev1.ServiceTypeNodePort, a.Spec.Ports[0].NodePort, ""), metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "already allocated") {
		t.Errorf("duplicate nodePort = %v, want Invalid ... already allocated", err)
	}
	if _, err := svcs.Create(ctx, mk("b", corev1.ServiceTypeClusterIP, 0, a.Spec.ClusterIP), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("duplicate clusterIP = %v, want Invalid", err)
	}
	if _, err := svcs.Create(ctx, mk("b", corev1.ServiceTypeClusterIP, 0, "10.99.0.1"), metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "not in the valid range") {
		t.Errorf("out-of-range clusterIP = %v", err)
	}
	if _, err := svcs.Create(ctx, mk("b", corev1.ServiceTypeNodePort, 80, ""), metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "valid range") {
		t.Errorf("out-of-range nodePort = %v", err)
	}
	// Freed on delete: the same IP and port can be taken again.
	if err := svcs.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := svcs.Create(ctx, mk("b", corev1.ServiceTypeNodePort, a.Spec.Ports[0].NodePort, a.Spec.ClusterIP), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("reuse after delete = %v", err)
	}
	if b.Spec.ClusterIP != a.Spec.ClusterIP {
		t.Errorf("clusterIP = %s, want %s", b.Spec.ClusterIP, a.Spec.ClusterIP)
	}
	// Creating an existing Service again is AlreadyExists, not "IP taken".
	again := mk("b", corev1.ServiceTypeNodePort, b.Spec.Ports[0].NodePort, b.Spec.ClusterIP)
	if _, err := svcs.Create(ctx, again, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("create existing service = %v, want AlreadyExists", err)
	}
	k, err := svcs.Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || k.Spec.ClusterIP != "10.43.0.1" {
		t.Errorf("kubernetes service = %v, %v", k, err)
	}
}

func TestWatchResumeAndInformerAcrossRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	cms := c.Client.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w0"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w%d", i)}}, metav1.CreateOptions{})
	}
	// Resume from the first create's version: exactly the three later adds.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != fmt.Sprintf("w%d", i) {
				t.Fatalf("event %d = %s %v", i, ev.Type, ev.Object)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no watch event")
		}
	}
	w.Stop()
	// A shared informer sees adds, updates and deletes, and recovers after
	// the server restarts.
	cfg := rest.CopyConfig(c.Config)
	client := kubernetes.NewForConfigOrDie(cfg)
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	inf := f.Core().V1().ConfigMaps().Informer()
	events := make(chan string, 100)
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { events <- "add " + o.(*corev1.ConfigMap).Name },
		UpdateFunc: func(_, o interface{}) { events <- "update " + o.(*corev1.ConfigMap).Name },
		DeleteFunc: func(o interface{}) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			events <- "delete " + o.(*corev1.ConfigMap).Name
		},
	})
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.Start(ictx.Done())
	if !cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	expect := func(want string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case got := <-events:
				if got == want {
					return
				}
			case <-deadline:
				t.Fatalf("informer never saw %q", want)
			}
		}
	}
	expect("add w3")
	cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	expect("add x")
	cms.Patch(ctx, "x", types.MergePatchType, []byte(`{"data":{"k":"v"}}`), metav1.PatchOptions{})
	expect("update x")
	cms.Delete(ctx, "x", metav1.DeleteOptions{})
	expect("delete x")

	before, _ := cms.Get(ctx, "w2", metav1.GetOptions{})
	c.Restart(t)
	after, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().ConfigMaps("default").Get(ctx, "w2", metav1.GetOptions{})
	if err != nil || after.UID != before.UID || after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("after restart: %v uid %s rv %s, want uid %s rv %s", err, after.UID, after.ResourceVersion, before.UID, before.ResourceVersion)
	}
	cms2 := kubernetes.NewForConfigOrDie(c.Config).CoreV1().ConfigMaps("default")
	// After the restart the cache starts afresh: a version older than its
	// window is 410 Gone.
	w, err = cms2.Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err == nil {
		ev := <-w.ResultChan()
		if st, ok := ev.Object.(*metav1.Status); !ok || st.Code != http.StatusGone {
			t.Errorf("watch from 1 = %v, want 410 Gone", ev.Object)
		}
	} else if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Errorf("watch from 1 = %v, want 410", err)
	}

	cms2.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-restart"}}, metav1.CreateOptions{})
	expect("add after-restart")
	_ = ptr.To(1)
}

func TestKubernetesServiceEndpoints(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	ep, err := c.Client.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || len(ep.Subsets) != 1 || ep.Subsets[0].Addresses[0].IP != "127.0.0.1" {
		t.Fatalf("kubernetes Endpoints = %v, %v", ep, err)
	}
	sl, err := c.Client.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || sl.Labels["kubernetes.io/service-name"] != "kubernetes" || len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "127.0.0.1" {
		t.Fatalf("kubernetes EndpointSlice = %v, %v", sl, err)
	}
	rv := sl.ResourceVersion
	c.Restart(t)
	sl, err = kubernetes.NewForConfigOrDie(c.Config).DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || sl.ResourceVersion != rv {
		t.Errorf("restart rewrote an unchanged EndpointSlice: rv %s -> %s (%v)", rv, sl.ResourceVersion, err)
	}
}
