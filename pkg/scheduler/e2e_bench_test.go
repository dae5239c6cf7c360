package scheduler_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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

// full says whether to run at the target scale (SKIFF_BENCH_FULL=1 or
// SKIFF_SOAK=1) rather than the size CI runs once.
func full() bool { return os.Getenv("SKIFF_BENCH_FULL") != "" || os.Getenv("SKIFF_SOAK") != "" }

// scale returns the node and pod counts: 100 and 1,000 by default (seconds,
// for CI's -benchtime=1x), 1,000 and 10,000 when full, either overridden by
// SKIFF_BENCH_NODES / SKIFF_BENCH_PODS.
func scale() (nodes, pods int) {
	nodes, pods = 100, 1000
	if full() {
		nodes, pods = 1000, 10000
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

// TestSoak is the full-size run as a test, behind SKIFF_SOAK=1.
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

// cpuTime is the CPU this process has used, user plus system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ownConnection gives a client its own HTTP/2 connection (client-go shares
// one transport between configs with equal TLS settings unless they dial
// themselves) and protobuf, as a controller creating pods would use.
func ownConnection(c *rest.Config, qps float32) *rest.Config {
	rc := withQPS(c, qps)
	rc.Dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	if os.Getenv("SKIFF_BENCH_JSON") == "" {
		rc.ContentType = "application/vnd.kubernetes.protobuf"
		rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	}
	return rc
}

// runEndToEnd starts a control plane with hollow nodes and the scheduler
// (everything in this process, so the CPU it reports covers API server,
// etcd, scheduler, hollow nodes and the creators), creates pods of mixed
// sizes from many concurrent creators, and waits until every one is bound.
// It logs a timeline each second so a stall shows where pods wait.
func runEndToEnd(tb testing.TB, nodes, pods int) {
	c := testcluster.Start(tb, testcluster.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	ready := make(chan struct{})
	var hs hollow.Stats
	wg.Go(func() {
		if err := hollow.Run(ctx, hollow.Config{Client: c.Config, Count: nodes, CPU: resource.MustParse("4"),
			Memory: resource.MustParse("16Gi"), Workers: envInt("SKIFF_BENCH_HOLLOW_WORKERS", 0), Stats: &hs, OnReady: func() { close(ready) }}); err != nil && ctx.Err() == nil {
			tb.Errorf("hollow.Run = %v", err)
		}
	})
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		tb.Fatalf("hollow nodes not ready")
	}

	const qps = 5000
	var ss scheduler.Stats
	binders := envInt("SKIFF_BENCH_BINDERS", 256)
	wg.Go(func() {
		if err := scheduler.Run(ctx, scheduler.Config{Client: c.Config, QPS: qps, Burst: 2 * qps, Stats: &ss, Binders: binders}); err != nil {
			tb.Errorf("scheduler.Run = %v", err)
		}
	})

	// Many creators over several connections, so that the test's own
	// creation rate is limited by the API server, not by the client.
	creators := envInt("SKIFF_BENCH_CREATORS", 64)
	clients := make([]kubernetes.Interface, 8)
	for i := range clients {
		clients[i] = kubernetes.NewForConfigOrDie(ownConnection(c.Config, qps))
	}
	// Mixed sizes averaging 200m, so the pods fill about half of the cpu
	// when there are 10 pods per node.
	sizes := []string{"50m", "100m", "200m", "250m", "400m"}
	start, cpu0 := time.Now(), cpuTime()
	var next, created atomic.Int64
	var createdAt atomic.Int64
	var cw sync.WaitGroup
	for w := 0; w < creators; w++ {
		client := clients[w%len(clients)]
		cw.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= pods {
					return
				}
				cpu := sizes[i%len(sizes)]
				p := mkPod(fmt.Sprintf("bench-%d", i), cpu, map[string]string{"app": fmt.Sprintf("app-%d", i%10)}, func(p *v1.Pod) {
					p.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse(fmt.Sprintf("%dMi", 64<<(i%4)))
				})
				if _, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					tb.Errorf("create %s: %v", p.Name, err)
					return
				}
				if created.Add(1) == int64(pods) {
					createdAt.Store(int64(time.Since(start)))
				}
			}
		})
	}

	// Wait for every bind (polling the scheduler's count every 5 ms),
	// logging the timeline each second; give up after 30 s without progress.
	lastN, lastProgress, lastLog := int64(0), time.Now(), time.Now()
	for ss.Bound.Load() < int64(pods) && !tb.Failed() {
		time.Sleep(5 * time.Millisecond)
		if time.Since(lastLog) < time.Second {
			continue
		}
		lastLog = time.Now()
		n := ss.Bound.Load()
		tb.Logf("t=%4.1fs created=%d bound=%d running=%d queued=%d in-flight=%d unschedulable=%d bind-errors=%d bind-latency=%v load=%s",
			time.Since(start).Seconds(), created.Load(), n, hs.Running.Load(), ss.Queued.Load(), ss.InFlight.Load(),
			ss.Unschedulable.Load(), ss.BindErrors.Load(), ss.BindLatency().Round(time.Microsecond), loadAvg())
		if n != lastN {
			lastN, lastProgress = n, time.Now()
		} else if time.Since(lastProgress) > 30*time.Second {
			break
		}
	}
	total, cpuBound := time.Since(start), cpuTime()-cpu0
	cw.Wait()
	if n := ss.Bound.Load(); n < int64(pods) {
		tb.Fatalf("%d of %d pods bound after %v (%d created, %d found no node)", n, pods, time.Since(start), created.Load(), ss.Queued.Load())
	}
	// The hollow nodes' status writes trail the binds; wait for them so
	// that the CPU per pod covers create, bind and status.
	lastN, lastProgress = hs.Running.Load(), time.Now()
	for hs.Running.Load() < int64(pods) && time.Since(lastProgress) < 30*time.Second {
		time.Sleep(5 * time.Millisecond)
		if n := hs.Running.Load(); n != lastN {
			lastN, lastProgress = n, time.Now()
		}
	}
	running, cpu := time.Since(start), cpuTime()-cpu0
	if n := hs.Running.Load(); n < int64(pods) {
		tb.Errorf("%d of %d pods reported Running (%d status errors)", n, pods, hs.StatusErrors.Load())
	}
	createdIn := time.Duration(createdAt.Load())
	e2eRate := float64(pods) / total.Seconds()
	createRate := float64(pods) / createdIn.Seconds()
	cpuPerPod := float64(cpu.Microseconds()) / 1000 / float64(pods)
	if b, ok := tb.(*testing.B); ok {
		b.ReportMetric(e2eRate, "pods/s-end-to-end")
		b.ReportMetric(createRate, "pods/s-create")
		b.ReportMetric(float64(pods)/running.Seconds(), "pods/s-running")
		b.ReportMetric(cpuPerPod, "cpu-ms/pod")
	}
	tb.Logf("%d nodes, %d pods, %d creators, %d binders: created in %v (%.0f/s), all bound after %v (%.0f/s end to end, CPU %.2f ms/pod), all Running after %v (CPU %.2f ms/pod), mean bind %v, load %s",
		nodes, pods, creators, binders, createdIn.Round(time.Millisecond), createRate, total.Round(time.Millisecond), e2eRate,
		float64(cpuBound.Microseconds())/1000/float64(pods), running.Round(time.Millisecond), cpuPerPod,
		ss.BindLatency().Round(time.Microsecond), loadAvg())
	checkNoOvercommit(tb, ctx, clients[0])
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
// child process and reports its peak resident memory; at about 6 s it runs
// at full size even in CI.
func BenchmarkHollowMemory(b *testing.B) {
	nodes := envInt("SKIFF_BENCH_NODES", 1000)
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
	nodes := envInt("SKIFF_BENCH_NODES", 1000)
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
