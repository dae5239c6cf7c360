package apiserver_test

// Benchmarks for issue 2's speed targets, against a real in-process control
// plane (embedded etcd, the HTTPS API server) driven by client-go. Each
// iteration runs a whole scenario and reports its figures with ReportMetric,
// so `-benchtime=1x` is a complete, quick run. Sizes are small by default;
// SKIFF_BENCH_FULL=1 runs the sizes (10,000 pods), and
// SKIFF_BENCH_PODS / SKIFF_BENCH_WATCHERS / SKIFF_BENCH_CLIENTS override them.
//
//	go test -run XXX -bench . -benchtime 1x ./pkg/apiserver/
//	SKIFF_BENCH_FULL=1 go test -run XXX -bench . -benchtime 1x -timeout 30m ./pkg/apiserver/

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// size returns def, or full with SKIFF_BENCH_FULL=1, or the env override.
func size(env string, def, full int) int {
	if v, err := strconv.Atoi(os.Getenv(env)); err == nil && v > 0 {
		return v
	}
	if os.Getenv("SKIFF_BENCH_FULL") != "" {
		return full
	}
	return def
}

// contentTypes are the wire formats a benchmark runs with: protobuf is what
// client-go's typed clients use by default; kubectl speaks JSON.
var contentTypes = []struct {
	name, contentType, accept string
}{
	{"protobuf", "application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf,application/json"},
	{"json", "application/json", "application/json"},
}

// client returns a clientset with its own connection (client-go otherwise
// shares one transport between equal configs), as a separate process has,
// and with limits high enough never to throttle.
func client(tb testing.TB, base *rest.Config, contentType, accept string) kubernetes.Interface {
	tb.Helper()
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = 10000, 20000
	cfg.ContentType, cfg.AcceptContentTypes = contentType, accept
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	cfg.Dial = d.DialContext
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatalf("kubernetes.NewForConfig() = %v", err)
	}
	return c
}

// smallPod is what a small workload's pod looks like before defaulting.
func smallPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "registry.k8s.io/pause:3.10",
		}}},
	}
}

// createPods creates n pods named prefix-0 … prefix-(n-1) in namespace ns
// from the clients, which share the work, and returns for each pod when its
// create was sent and when it returned.
func createPods(tb testing.TB, clients []kubernetes.Interface, ns, prefix string, n int) (sent, done []time.Time) {
	tb.Helper()
	sent, done = make([]time.Time, n), make([]time.Time, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for _, c := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil {
					return
				}
				sent[i] = time.Now()
				_, err := c.CoreV1().Pods(ns).Create(context.Background(), smallPod(prefix+"-"+strconv.Itoa(i)), metav1.CreateOptions{})
				done[i] = time.Now()
				if err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatalf("create pod: %v", err)
	}
	return sent, done
}

// cpuTime is the CPU this process (client and server alike) has used. Per
// operation it is a figure the machine's load does not distort as much as
// wall time: the shared test machine often gives a process a fraction of a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentiles reports p50, p99 and max of ds in milliseconds under name.
func percentiles(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	b.ReportMetric(ms(at(0.50)), name+"-p50-ms")
	b.ReportMetric(ms(at(0.99)), name+"-p99-ms")
	b.ReportMetric(ms(ds[len(ds)-1]), name+"-max-ms")
}

// benchRuns makes names unique when -count runs a sub-benchmark again on the
// same cluster.
var benchRuns atomic.Int64

// BenchmarkCreatePods creates small pods from 16 concurrent client-go
// clients, each on its own connection. Target: ≥ 2,000 pods/s, p99 < 50 ms.
func BenchmarkCreatePods(b *testing.B) {
	n := size("SKIFF_BENCH_PODS", 1000, 10000)
	nClients := size("SKIFF_BENCH_CLIENTS", 16, 16)
	c := testcluster.Start(b, testcluster.Options{})
	// As in every real cluster, the namespace has its default service
	// account, so each pod is admitted with its token volume.
	if _, err := c.Client.CoreV1().ServiceAccounts("default").Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, ct := range contentTypes {
		b.Run(ct.name, func(b *testing.B) {
			clients := make([]kubernetes.Interface, nClients)
			for i := range clients {
				clients[i] = client(b, c.Config, ct.contentType, ct.accept)
			}
			warmUp(b, clients)
			var lat []time.Duration
			var elapsed, cpu time.Duration
			b.ResetTimer()
			for iter := 0; iter < b.N; iter++ {
				start, cpu0 := time.Now(), cpuTime()
				sent, done := createPods(b, clients, "default", fmt.Sprintf("%s-%d-%d", ct.name, benchRuns.Add(1), iter), n)
				elapsed, cpu = elapsed+time.Since(start), cpu+cpuTime()-cpu0
				for i := range sent {
					lat = append(lat, done[i].Sub(sent[i]))
				}
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "pods/s")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n*b.N), "cpu-ms/pod")
			percentiles(b, "create", lat)
		})
	}
}

// warmUp makes every client open its connection before the clock starts.
func warmUp(tb testing.TB, clients []kubernetes.Interface) {
	tb.Helper()
	for _, c := range clients {
		if _, err := c.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
			tb.Fatalf("get namespace default: %v", err)
		}
	}
}

// BenchmarkWatchFanout runs 100 watchers on all pods while 16 clients create
// pods, checks that every watcher sees every create exactly once, and reports
// the delay from a create's response to each watcher's delivery of it
// (negative delays, events delivered before the response, count as zero).
// Target: p99 < 100 ms.
func BenchmarkWatchFanout(b *testing.B) {
	n := size("SKIFF_BENCH_PODS", 300, 10000) // 100 watchers × n events: keep CI short
	nWatchers := size("SKIFF_BENCH_WATCHERS", 100, 100)
	c := testcluster.Start(b, testcluster.Options{})
	ct := contentTypes[0] // watchers decode every event; protobuf is what client-go uses
	writers := make([]kubernetes.Interface, 16)
	for i := range writers {
		writers[i] = client(b, c.Config, ct.contentType, ct.accept)
	}
	warmUp(b, writers)
	var delay, sinceSent []time.Duration
	var early int
	var cpu time.Duration
	for iter := 0; iter < b.N; iter++ {
		ns := fmt.Sprintf("watch-%d", iter)
		if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatalf("create namespace: %v", err)
		}
		list, err := c.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			b.Fatalf("list pods: %v", err)
		}
		// seen[w][i] is when watcher w got pod i; watchers watch their
		// namespace from the list's resourceVersion, so they see only creates.
		seen := make([][]time.Time, nWatchers)
		counts := make([]int, nWatchers)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var watchErr atomic.Value
		started := make(chan struct{}, nWatchers)
		for w := range nWatchers {
			seen[w] = make([]time.Time, n)
			wc := client(b, c.Config, ct.contentType, ct.accept)
			wg.Go(func() {
				wi, err := wc.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
				started <- struct{}{}
				if err != nil {
					watchErr.Store(err)
					return
				}
				defer wi.Stop()
				for counts[w] < n {
					select {
					case ev, ok := <-wi.ResultChan():
						if !ok {
							watchErr.Store(fmt.Errorf("watcher %d: stream ended after %d of %d events", w, counts[w], n))
							return
						}
						now := time.Now()
						pod, isPod := ev.Object.(*corev1.Pod)
						if ev.Type != watch.Added || !isPod {
							watchErr.Store(fmt.Errorf("watcher %d: unexpected %s event %T", w, ev.Type, ev.Object))
							return
						}
						_, idx, _ := strings.Cut(pod.Name, "-")
						i, err := strconv.Atoi(idx)
						if err != nil || i >= n || !seen[w][i].IsZero() {
							watchErr.Store(fmt.Errorf("watcher %d: unexpected or repeated pod %s", w, pod.Name))
							return
						}
						seen[w][i] = now
						counts[w]++
					case <-ctx.Done():
						return
					}
				}
			})
		}
		for range nWatchers {
			<-started
		}
		cpu0 := cpuTime()
		sent, done := createPods(b, writers, ns, "p", n)
		all := make(chan struct{})
		go func() { wg.Wait(); close(all) }()
		select {
		case <-all:
		case <-time.After(60 * time.Second):
			cancel()
			<-all
		}
		cancel()
		cpu += cpuTime() - cpu0
		if err := watchErr.Load(); err != nil {
			b.Fatalf("watch: %v", err)
		}
		for w, got := range counts {
			if got != n {
				b.Fatalf("watcher %d got %d of %d pod events", w, got, n)
			}
		}
		for w := range seen {
			for i, t := range seen[w] {
				d := t.Sub(done[i])
				if d < 0 {
					d, early = 0, early+1
				}
				delay = append(delay, d)
				sinceSent = append(sinceSent, t.Sub(sent[i]))
			}
		}
	}
	percentiles(b, "delivery", delay)
	percentiles(b, "sent-to-delivery", sinceSent)
	b.ReportMetric(float64(early)/float64(len(delay)), "early-frac")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n*b.N), "cpu-ms/pod")
}

// BenchmarkListPods lists all pods from the watch cache (resourceVersion
// "0") and consistently (resourceVersion "", which waits for the cache to
// reach etcd's revision), in protobuf and JSON; "raw" times the response as
// bytes, "decoded" includes client-go decoding it. Target: < 300 ms.
func BenchmarkListPods(b *testing.B) {
	n := size("SKIFF_BENCH_PODS", 1000, 10000)
	c := testcluster.Start(b, testcluster.Options{})
	writers := make([]kubernetes.Interface, 16)
	for i := range writers {
		writers[i] = client(b, c.Config, contentTypes[0].contentType, contentTypes[0].accept)
	}
	createPods(b, writers, "default", "p", n)
	// Steady state: the cache has caught up with etcd and memoized encodings.
	if _, err := c.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{}); err != nil {
		b.Fatalf("list pods: %v", err)
	}
	for _, rv := range []struct{ name, rv string }{{"cache", "0"}, {"consistent", ""}} {
		for _, ct := range contentTypes {
			cl := client(b, c.Config, ct.contentType, ct.accept)
			b.Run(rv.name+"/"+ct.name+"/raw", func(b *testing.B) {
				var bytes int
				cpu0 := cpuTime()
				for b.Loop() {
					raw, err := cl.CoreV1().RESTClient().Get().Namespace("default").Resource("pods").
						Param("resourceVersion", rv.rv).SetHeader("Accept", ct.accept).DoRaw(context.Background())
					if err != nil {
						b.Fatalf("list pods: %v", err)
					}
					bytes = len(raw)
				}
				b.ReportMetric(float64(bytes)/float64(n), "bytes/pod")
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/list")
			})
			b.Run(rv.name+"/"+ct.name+"/decoded", func(b *testing.B) {
				cpu0 := cpuTime()
				for b.Loop() {
					l, err := cl.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{ResourceVersion: rv.rv})
					if err != nil {
						b.Fatalf("list pods: %v", err)
					}
					if len(l.Items) != n {
						b.Fatalf("list has %d pods, want %d", len(l.Items), n)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/list")
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/list")
			})
		}
	}
}

// BenchmarkIdleHeap reports the live heap of an idle control plane running
// in this process, after a GC: etcd and the API server alone ("apiserver"),
// and with the scheduler and controllers ("components"). It is the Go heap
// part of the server's resident memory (serverbench prints the RSS of the
// real binary). SKIFF_BENCH_HEAPPROFILE=DIR writes DIR/heap-NAME.pprof for
// `go tool pprof -sample_index=inuse_space -top`.
func BenchmarkIdleHeap(b *testing.B) {
	for _, cfg := range []struct {
		name       string
		components bool
	}{{"apiserver", false}, {"components", true}} {
		b.Run(cfg.name, func(b *testing.B) {
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for b.Loop() {
				c := testcluster.Start(b, testcluster.Options{Scheduler: cfg.components, Controllers: cfg.components})
				// Let the components sync their informers and settle.
				time.Sleep(2 * time.Second)
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MB")
				b.ReportMetric(float64(after.HeapInuse)/(1<<20), "process-heap-MB")
				if dir := os.Getenv("SKIFF_BENCH_HEAPPROFILE"); dir != "" {
					f, err := os.Create(filepath.Join(dir, "heap-"+cfg.name+".pprof"))
					if err != nil {
						b.Fatalf("create heap profile: %v", err)
					}
					if err := pprof.WriteHeapProfile(f); err != nil {
						b.Fatalf("write heap profile: %v", err)
					}
					f.Close()
				}
				c.Stop()
			}
		})
	}
}
