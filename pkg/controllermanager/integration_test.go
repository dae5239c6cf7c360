package controllermanager_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controllermanager"
)

func testLog() *slog.Logger {
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a cluster without controllers and our controller manager on it.
func start(t *testing.T, mutate func(*controllermanager.Config)) (*testcluster.Cluster, context.Context) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cfg := controllermanager.Config{Client: c.Config, Log: testLog(), NodeMonitorGracePeriod: 2 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	done := make(chan error, 1)
	go func() { done <- controllermanager.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	})
	return c, ctx
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < d {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v (last error %v)", what, d, last)
	return 0
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func runningPod(t *testing.T, cs kubernetes.Interface, ns, name, node, ip string, ready bool, mutate func(*v1.Pod)) *v1.Pod {
	t.Helper()
	ctx := context.Background()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "busybox",
			Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}
	if mutate != nil {
		mutate(p)
	}
	p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setPodStatus(t, cs, p, ip, ready)
	return p
}

func setPodStatus(t *testing.T, cs kubernetes.Interface, p *v1.Pod, ip string, ready bool) {
	t.Helper()
	ctx := context.Background()
	p, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	p.Status.Phase = v1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []v1.PodIP{{IP: ip}}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestEndpointsFollowReadiness(t *testing.T) {
	c, ctx := start(t, nil)
	cs := c.Client
	createNamespace(t, cs, "web")
	_, err := cs.CoreV1().Services("web").Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := runningPod(t, cs, "web", "a", "n1", "10.42.0.5", true, nil)
	runningPod(t, cs, "web", "b", "n1", "10.42.0.6", false, nil)

	addrs := func() (ready, notReady []string, err error) {
		ep, err := cs.CoreV1().Endpoints("web").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				ready = append(ready, a.IP)
			}
			for _, a := range s.NotReadyAddresses {
				notReady = append(notReady, a.IP)
			}
			if len(s.Ports) != 1 || s.Ports[0].Port != 8080 {
				return nil, nil, fmt.Errorf("ports %v, want the named port resolved to 8080", s.Ports)
			}
		}
		return ready, notReady, nil
	}
	eventually(t, 5*time.Second, "endpoints list a ready, b not ready", func() (bool, error) {
		r, nr, err := addrs()
		return len(r) == 1 && r[0] == "10.42.0.5" && len(nr) == 1 && nr[0] == "10.42.0.6", err
	})
	eventually(t, 5*time.Second, "one endpoint slice with both pods", func() (bool, error) {
		l, err := cs.DiscoveryV1().EndpointSlices("web").List(ctx, metav1.ListOptions{LabelSelector: discovery.LabelServiceName + "=web", ResourceVersion: "0"})
		if err != nil || len(l.Items) != 1 {
			return false, err
		}
		return len(l.Items[0].Endpoints) == 2 && l.Items[0].Labels[discovery.LabelManagedBy] == controllermanager.EndpointSliceManagedBy, nil
	})

	// Pod a turns not ready: the change must reach the Endpoints within 1 s.
	setPodStatus(t, cs, a, "10.42.0.5", false)
	took := eventually(t, time.Second, "a moves to notReadyAddresses", func() (bool, error) {
		r, nr, err := addrs()
		return len(r) == 0 && len(nr) == 2, err
	})
	t.Logf("readiness change reached Endpoints in %v", took)
}

func TestNodeLeaseStopsTaintsAndEvicts(t *testing.T) {
	c, ctx := start(t, func(cfg *controllermanager.Config) { cfg.NodeMonitorGracePeriod = 2 * time.Second })
	cs := c.Client
	createNamespace(t, cs, "kube-node-lease")
	createNamespace(t, cs, "apps")
	node, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = node
	reportReady(t, cs, "n1")
	now := metav1.NewMicroTime(time.Now())
	holder, dur := "n1", int32(40)
	if _, err := cs.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec:       coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The node gets a pod CIDR meanwhile.
	eventually(t, 5*time.Second, "node gets a pod CIDR", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && n.Spec.PodCIDR == "10.42.0.0/24" && len(n.Spec.PodCIDRs) == 1, err
	})
	// The API server gives pods without their own unreachable toleration
	// the 300 s default, so "plain" says 0 s to be evicted at once.
	tolerate := func(secs int64) func(p *v1.Pod) {
		return func(p *v1.Pod) {
			p.Spec.Tolerations = []v1.Toleration{{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: &secs}}
		}
	}
	runningPod(t, cs, "apps", "tolerates", "n1", "10.42.0.7", true, tolerate(2))
	runningPod(t, cs, "apps", "plain", "n1", "10.42.0.8", true, tolerate(0))
	runningPod(t, cs, "apps", "defaults", "n1", "10.42.0.9", true, nil)
	stopped := time.Now() // no more renewals from here

	eventually(t, 6*time.Second, "node tainted unreachable", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, ta := range n.Spec.Taints {
			if ta.Key == v1.TaintNodeUnreachable && ta.Effect == v1.TaintEffectNoExecute {
				return true, nil
			}
		}
		return false, nil
	})
	n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	for _, cond := range n.Status.Conditions {
		if cond.Type == v1.NodeReady && (cond.Status != v1.ConditionUnknown || cond.Message != "Kubelet stopped posting node status.") {
			t.Errorf("Ready condition = %+v, want Unknown with the kubelet message", cond)
		}
	}
	gone := func(name string) func() (bool, error) {
		return func() (bool, error) {
			p, err := cs.CoreV1().Pods("apps").Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return err == nil && p.DeletionTimestamp != nil, err
		}
	}
	eventually(t, 2*time.Second, "untolerating pod evicted at once", gone("plain"))
	if p, err := cs.CoreV1().Pods("apps").Get(ctx, "tolerates", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("tolerating pod evicted before its 2 s ran out (err %v)", err)
	}
	eventually(t, 6*time.Second, "tolerating pod evicted after its 2 s", gone("tolerates"))
	if p, err := cs.CoreV1().Pods("apps").Get(ctx, "defaults", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("pod with the 300 s default toleration evicted early (err %v)", err)
	} else {
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodReady && c.Status != v1.ConditionFalse {
				t.Errorf("pod on unreachable node Ready = %s, want False", c.Status)
			}
		}
	}
	t.Logf("tolerating pod evicted %v after the last renewal (grace 2 s + toleration 2 s)", time.Since(stopped).Round(100*time.Millisecond))

	// The node comes back: renew the lease and report Ready; taints go.
	l, _ := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "n1", metav1.GetOptions{})
	now = metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	if _, err := cs.CoordinationV1().Leases("kube-node-lease").Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	reportReady(t, cs, "n1")
	eventually(t, 2*time.Second, "node untainted", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		return err == nil && len(n.Spec.Taints) == 0, err
	})
}

// reportReady does what a kubelet does when it (re)starts: posts Ready=True.
func reportReady(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func kubectl(t *testing.T, c *testcluster.Cluster, args ...string) string {
	t.Helper()
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// family creates a ConfigMap owner, a ConfigMap child owned by it and a
// Secret grandchild owned by the child, all blocking owner deletion.
func family(t *testing.T, cs kubernetes.Interface, ns, prefix string) {
	t.Helper()
	ctx := context.Background()
	yes := true
	ref := func(name string, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: name, UID: typesUID(uid), BlockOwnerDeletion: &yes}}
	}
	owner, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-child", OwnerReferences: ref(owner.Name, string(owner.UID))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-grandchild", OwnerReferences: ref(child.Name, string(child.UID))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCascadingDeletes(t *testing.T) {
	c, ctx := start(t, nil)
	cs := c.Client
	createNamespace(t, cs, "gc")
	exists := func(name string) bool {
		_, err := cs.CoreV1().ConfigMaps("gc").Get(ctx, name, metav1.GetOptions{})
		return err == nil
	}
	for _, mode := range []string{"background", "foreground"} {
		family(t, cs, "gc", mode)
		kubectl(t, c, "-n", "gc", "delete", "configmap", mode+"-owner", "--cascade="+mode, "--wait=false")
		eventually(t, 10*time.Second, mode+": owner, child and grandchild deleted", func() (bool, error) {
			return !exists(mode+"-owner") && !exists(mode+"-child") && !exists(mode+"-grandchild"), nil
		})
	}
	family(t, cs, "gc", "orphan")
	kubectl(t, c, "-n", "gc", "delete", "configmap", "orphan-owner", "--cascade=orphan", "--wait=false")
	eventually(t, 10*time.Second, "orphan: owner deleted", func() (bool, error) { return !exists("orphan-owner"), nil })
	child, err := cs.CoreV1().ConfigMaps("gc").Get(ctx, "orphan-child", metav1.GetOptions{})
	if err != nil || len(child.OwnerReferences) != 0 {
		t.Fatalf("orphan: child = %v, %v; want it kept without ownerReferences", child, err)
	}
	if !exists("orphan-grandchild") {
		t.Errorf("orphan: grandchild deleted, want kept")
	}
}

func TestNamespaceDeletion(t *testing.T) {
	c, ctx := start(t, nil)
	cs := c.Client
	createNamespace(t, cs, "doomed")
	eventually(t, 5*time.Second, "default service account created", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("doomed").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	for i := range 3 {
		if _, err := cs.CoreV1().ConfigMaps("doomed").Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	runningPod(t, cs, "doomed", "p", "", "", false, nil)
	kubectl(t, c, "delete", "namespace", "doomed", "--wait=false")
	took := eventually(t, 15*time.Second, "namespace removed", func() (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	t.Logf("namespace with 5 objects removed in %v", took)
}

func TestLeaderElection(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cs := c.Client
	createNamespace(t, cs, controllermanager.LeaseNamespace)
	run := func(id string) (cancel func(), done chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done = make(chan error, 1)
		cfg := controllermanager.Config{Client: c.Config, Log: testLog(), LeaderElect: true, Identity: id,
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond}
		go func() { done <- controllermanager.Run(ctx, cfg) }()
		return cancel, done
	}
	holder := func() string {
		l, err := cs.CoordinationV1().Leases(controllermanager.LeaseNamespace).Get(context.Background(), controllermanager.LeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	stopA, doneA := run("a")
	eventually(t, 10*time.Second, "a holds the lease", func() (bool, error) { return holder() == "a", nil })
	stopB, doneB := run("b")
	defer func() { stopB(); <-doneB }()
	time.Sleep(3 * time.Second) // b must not take over while a renews
	if h := holder(); h != "a" {
		t.Fatalf("holder = %q while a runs, want a", h)
	}
	stopA()
	if err := <-doneA; err != nil {
		t.Errorf("a: Run() = %v", err)
	}
	took := eventually(t, 10*time.Second, "b takes over", func() (bool, error) { return holder() == "b", nil })
	t.Logf("b took over %v after a stopped", took)
	createNamespace(t, cs, "after-takeover")
	eventually(t, 5*time.Second, "b acts (default service account)", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("after-takeover").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func typesUID(s string) types.UID { return types.UID(s) }
