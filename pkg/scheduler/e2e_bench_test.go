package scheduler_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/hollow"
	"github.com/skiff-org/skiff/pkg/scheduler"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// scale returns the node and pod counts: 1,000 and 10,000 by default,
// 100 and 1,000 with -short, or SKIFF_BENCH_NODES / SKIFF_BENCH_PODS.
func scale() (nodes, pods int) {
	nodes, pods = 1000, 10000
	if testing.Short() {
		nodes, pods = 100, 1000
	}
	return envInt("SKIFF_BENCH_NODES", nodes), envInt("SKIFF_BENCH_PODS", pods)
}

// BenchmarkEndToEnd creates pods as fast as the API server takes them on a
// cluster of hollow nodes and measures how fast the scheduler binds them.
// It then checks that no node's placed requests exceed its allocatable.
func BenchmarkEndToEnd(b *testing.B) {
	nodes, pods := scale()
	for i := 0; i < b.N; i++ {
		runEndToEnd(b, nodes, pods)
	}
}

// TestSoak is the same run as a test, behind SKIFF_SOAK=1.
func TestSoak(t *testing.T) {
	if os.Getenv("SKIFF_SOAK") == "" {
		t.Skip("set SKIFF_SOAK=1 to place 10,000 pods on 1,000 hollow nodes")
	}
	nodes, pods := scale()
	runEndToEnd(t, nodes, pods)
}

// TestMixedSizesNeverOvercommit is the small default version of the soak.
func TestMixedSizesNeverOvercommit(t *testing.T) {
	runEndToEnd(t, 20, 300)
}

func runEndToEnd(tb testing.TB, nodes, pods int) {
	c := testcluster.Start(tb, testcluster.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	ready := make(chan struct{})
	wg.Go(func() {
		if err := hollow.Run(ctx, hollow.Config{Client: c.Config, Count: nodes, CPU: resource.MustParse("4"),
			Memory: resource.MustParse("16Gi"), OnReady: func() { close(ready) }}); err != nil {
			tb.Errorf("hollow.Run = %v", err)
		}
	})
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		tb.Fatalf("hollow nodes not ready")
	}

	// Count bindings as the watch shows them.
	var bound atomic.Int64
	var firstBind, lastBind atomic.Int64
	watchClient := kubernetes.NewForConfigOrDie(withQPS(c.Config, 1000))
	factory := informers.NewSharedInformerFactory(watchClient, 0)
	inf := factory.Core().V1().Pods().Informer()
	var seen sync.Map
	sawBound := func(obj any) {
		p := obj.(*v1.Pod)
		if p.Spec.NodeName == "" {
			return
		}
		if _, dup := seen.LoadOrStore(p.UID, true); dup {
			return
		}
		now := time.Now().UnixNano()
		firstBind.CompareAndSwap(0, now)
		lastBind.Store(now)
		bound.Add(1)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: sawBound, UpdateFunc: func(_, n any) { sawBound(n) }})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)

	const qps = 5000
	wg.Go(func() {
		if err := scheduler.Run(ctx, scheduler.Config{Client: c.Config, QPS: qps, Burst: 2 * qps}); err != nil {
			tb.Errorf("scheduler.Run = %v", err)
		}
	})

	creator := kubernetes.NewForConfigOrDie(withQPS(c.Config, 5000))
	// Mixed sizes averaging 200m, so the pods fill about half of the cpu.
	sizes := []string{"50m", "100m", "200m", "250m", "400m"}
	start := time.Now()
	var next atomic.Int64
	var cw sync.WaitGroup
	for w := 0; w < 32; w++ {
		cw.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= pods {
					return
				}
				cpu := sizes[i%len(sizes)]
				p := mkPod(fmt.Sprintf("bench-%d", i), cpu, map[string]string{"app": fmt.Sprintf("app-%d", i%10)}, func(p *v1.Pod) {
					p.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse(fmt.Sprintf("%dMi", 64<<(i%4)))
				})
				if _, err := creator.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					tb.Errorf("create %s: %v", p.Name, err)
					return
				}
			}
		})
	}
	cw.Wait()
	created := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	lastN, lastProgress := int64(-1), time.Now()
	for bound.Load() < int64(pods) && time.Now().Before(deadline) && !tb.Failed() {
		if n := bound.Load(); n != lastN {
			lastN, lastProgress = n, time.Now()
		} else if time.Since(lastProgress) > 30*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start)
	if n := bound.Load(); n < int64(pods) {
		tb.Fatalf("%d of %d pods bound after %v", n, pods, total)
	}
	bindSpan := time.Duration(lastBind.Load() - firstBind.Load())
	createRate := float64(pods) / created.Seconds()
	e2eRate := float64(pods) / total.Seconds()
	bindRate := float64(pods) / bindSpan.Seconds()
	if b, ok := tb.(*testing.B); ok {
		b.ReportMetric(e2eRate, "pods/s-end-to-end")
		b.ReportMetric(bindRate, "pods/s-bind")
		b.ReportMetric(createRate, "pods/s-create")
	}
	tb.Logf("%d nodes, %d pods: created in %v (%.0f/s), all bound after %v (%.0f/s end to end; binds spanned %v, %.0f/s), scheduler QPS %d",
		nodes, pods, created.Round(time.Millisecond), createRate, total.Round(time.Millisecond), e2eRate, bindSpan.Round(time.Millisecond), bindRate, qps)
	checkNoOvercommit(tb, ctx, creator)
}

func withQPS(c *rest.Config, qps float32) *rest.Config {
	rc := rest.CopyConfig(c)
	rc.QPS, rc.Burst = qps, 2*int(qps)
	return rc
}

// checkNoOvercommit lists nodes and pods from the API server and checks
// every node's summed requests against its allocatable.
func checkNoOvercommit(tb testing.TB, ctx context.Context, client kubernetes.Interface) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	type sum struct{ cpu, mem, n int64 }
	used := map[string]*sum{}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" {
			continue
		}
		s := used[p.Spec.NodeName]
		if s == nil {
			s = &sum{}
			used[p.Spec.NodeName] = s
		}
		for _, ctr := range p.Spec.Containers {
			s.cpu += ctr.Resources.Requests.Cpu().MilliValue()
			s.mem += ctr.Resources.Requests.Memory().Value()
		}
		s.n++
	}
	for _, n := range nodes.Items {
		s := used[n.Name]
		if s == nil {
			continue
		}
		a := n.Status.Allocatable
		if s.cpu > a.Cpu().MilliValue() || s.mem > a.Memory().Value() || s.n > a.Pods().Value() {
			tb.Errorf("node %s overcommitted: cpu %dm/%dm memory %d/%d pods %d/%d", n.Name,
				s.cpu, a.Cpu().MilliValue(), s.mem, a.Memory().Value(), s.n, a.Pods().Value())
		}
	}
}

// BenchmarkHollowMemory runs 1,000 hollow nodes (SKIFF_BENCH_NODES) in a
// child process and reports its peak resident memory.
func BenchmarkHollowMemory(b *testing.B) {
	nodes, _ := scale()
	c := testcluster.Start(b, testcluster.Options{})
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHollowChild$", "-test.v")
		cmd.Env = append(os.Environ(), "SKIFF_HOLLOW_CHILD="+c.Kubeconfig, "SKIFF_BENCH_NODES="+strconv.Itoa(nodes))
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var hwm int64
		for _, line := range strings.Split(string(out), "\n") {
			if _, v, ok := strings.Cut(line, "hollow-peak-rss-kb="); ok {
				hwm, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
		}
		if hwm == 0 {
			b.Fatalf("child reported no memory:\n%s", out)
		}
		b.ReportMetric(float64(hwm)/1024, "MB-peak-rss")
		b.Logf("%d hollow nodes: peak RSS %d MB", nodes, hwm/1024)
	}
}

// TestHollowChild is the child of BenchmarkHollowMemory: it registers the
// nodes, lets them idle through a lease round, and prints its peak RSS.
func TestHollowChild(t *testing.T) {
	kc := os.Getenv("SKIFF_HOLLOW_CHILD")
	if kc == "" {
		t.Skip("run by BenchmarkHollowMemory")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	nodes, _ := scale()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- hollow.Run(ctx, hollow.Config{Client: rc, Count: nodes, LeaseInterval: 2 * time.Second,
			OnReady: func() { time.AfterFunc(5*time.Second, cancel) }})
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Printf("hollow-peak-rss-kb=%s\n", strings.Fields(v)[0])
		}
	}
}
