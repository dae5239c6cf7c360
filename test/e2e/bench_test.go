package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The client of these benchmarks runs inside the node's network namespace,
// because the API server listens there: the benchmark re-executes itself
// under nsenter and measures from inside.

func nodeClient(b *testing.B, s *server) kubernetes.Interface {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	return kubernetes.NewForConfigOrDie(cfg)
}

func sleeper(name string) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "podstart"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}},
		},
	}
}

// runningTimes creates pods and returns, per pod, the time from the create
// call to the watch showing it Running.
func runningTimes(b *testing.B, cs kubernetes.Interface, names []string, parallel bool) []time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "bench=podstart"})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	created := map[string]time.Time{}
	running := map[string]time.Duration{}
	create := func(n string) {
		created[n] = time.Now()
		if _, err := cs.CoreV1().Pods("default").Create(ctx, sleeper(n), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	wait := func(want int) {
		for len(running) < want {
			select {
			case ev := <-w.ResultChan():
				if ev.Type == watch.Error {
					b.Fatalf("watch: %v", ev.Object)
				}
				p, ok := ev.Object.(*corev1.Pod)
				if ok && p.Status.Phase == corev1.PodRunning {
					if _, seen := running[p.Name]; !seen {
						running[p.Name] = time.Since(created[p.Name])
					}
				}
			case <-ctx.Done():
				b.Fatalf("only %d of %d pods Running", len(running), want)
			}
		}
	}
	for i, n := range names {
		create(n)
		if !parallel {
			wait(i + 1)
		}
	}
	wait(len(names))
	out := make([]time.Duration, 0, len(running))
	for _, d := range running {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// BenchmarkPodStart reports one pod from create to Running (p50/p99 over
// sequential pods) and 100 pods created at once until all are Running, on
// a one-node cluster with the process runtime.
func BenchmarkPodStart(b *testing.B) {
	if os.Getenv("SKIFF_IN_NODE") == "" {
		// Start the node, then re-run this benchmark inside its namespace.
		s := startNodeB(b)
		n := 20
		if os.Getenv("SKIFF_BENCH_FULL") != "" {
			n = 100
		}
		cmd := exec.Command("nsenter", "--net="+s.netns, os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkPodStart$", "-test.benchtime=1x")
		cmd.Env = append(os.Environ(), "SKIFF_IN_NODE="+s.kubeconfig, "SKIFF_BENCH_PODS="+strconv.Itoa(n))
		out, err := cmd.CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "podstart:") {
				b.Log(strings.TrimSpace(line))
				fmt.Println(strings.TrimSpace(line))
			}
		}
		if err != nil {
			b.Fatalf("benchmark in node: %v\n%s", err, out)
		}
		return
	}
	s := &server{kubeconfig: os.Getenv("SKIFF_IN_NODE")}
	cs := nodeClient(b, s)
	n, _ := strconv.Atoi(os.Getenv("SKIFF_BENCH_PODS"))
	var seq []string
	for i := 0; i < n; i++ {
		seq = append(seq, fmt.Sprintf("seq-%d", i))
	}
	d := runningTimes(b, cs, seq, false)
	fmt.Printf("podstart: one pod create->Running over %d sequential pods: p50 %v p99 %v max %v\n", n, d[len(d)/2].Round(time.Millisecond), d[len(d)*99/100].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	var par []string
	for i := 0; i < 100; i++ {
		par = append(par, fmt.Sprintf("par-%d", i))
	}
	start := time.Now()
	runningTimes(b, cs, par, true)
	fmt.Printf("podstart: 100 pods created at once, all Running after %v\n", time.Since(start).Round(time.Millisecond))
}
