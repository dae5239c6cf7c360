package deployment_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/internal/controllertest"
	"github.com/skiff-org/skiff/pkg/hollow"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkDeployment10k applies a Deployment of 10,000 replicas to 1,000
// hollow nodes (scheduler and controller manager in the server) and reports
// the seconds until it is complete (every pod Running and Available), then
// the seconds a rolling update with the default 25% surge and unavailable
// takes. SKIFF_BENCH_NODES and
// SKIFF_BENCH_REPLICAS override the size.
func BenchmarkDeployment10k(b *testing.B) {
	// The size (1,000 nodes, 10,000 replicas) takes minutes: it runs
	// with SKIFF_BENCH_FULL=1; by default (CI runs every benchmark once) a
	// small one keeps the benchmark from rotting.
	nodes, replicas := 20, 200
	if os.Getenv("SKIFF_BENCH_FULL") != "" {
		nodes, replicas = 1000, 10000
	}
	nodes, replicas = envInt("SKIFF_BENCH_NODES", nodes), envInt("SKIFF_BENCH_REPLICAS", replicas)
	for range b.N {
		runDeploymentBench(b, nodes, int32(replicas))
	}
}

func runDeploymentBench(b *testing.B, nodes int, replicas int32) {
	// The server's own scheduler and controller manager, as `skiff server`
	// runs them (all controllers, protobuf, QPS 5000 / burst 10000).
	c := testcluster.Start(b, testcluster.Options{Scheduler: true, Controllers: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	ready := make(chan struct{})
	wg.Go(func() {
		err := hollow.Run(ctx, hollow.Config{Client: c.Config, Count: nodes, Pods: 110,
			CPU: resource.MustParse("32"), Memory: resource.MustParse("128Gi"), OnReady: func() { close(ready) }})
		if err != nil && ctx.Err() == nil {
			b.Errorf("hollow.Run = %v", err)
		}
	})
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		b.Fatal("hollow nodes not ready in 5 minutes")
	}
	api := controllertest.Client(c.Config)
	d := newDeployment("big", replicas, map[string]string{"app": "big"}, "nginx:1")
	quarter := intstr.FromString("25%")
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &quarter, MaxUnavailable: &quarter}
	d.Spec.Template.Spec.Containers[0].Resources.Requests = v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("10m"), v1.ResourceMemory: resource.MustParse("16Mi")}

	b.ResetTimer()
	start := time.Now()
	if _, err := api.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitComplete(b, api.AppsV1().Deployments("default"), "big", replicas, 10*time.Minute)
	created := time.Since(start)

	start = time.Now()
	setImage(b, api, "big", "nginx:2")
	waitComplete(b, api.AppsV1().Deployments("default"), "big", replicas, 10*time.Minute)
	rolled := time.Since(start)
	b.StopTimer()
	b.ReportMetric(created.Seconds(), "s-available")
	b.ReportMetric(rolled.Seconds(), "s-rollout")
	b.Logf("%d replicas on %d hollow nodes: available after %.1fs, rolling update %.1fs", replicas, nodes, created.Seconds(), rolled.Seconds())
}

type deploymentGetter interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*appsv1.Deployment, error)
}

// waitComplete polls until the Deployment's status says kubectl rollout
// status would report success.
func waitComplete(b *testing.B, ds deploymentGetter, name string, n int32, limit time.Duration) {
	deadline := time.Now().Add(limit)
	var last appsv1.DeploymentStatus
	start, logged := time.Now(), time.Now()
	for time.Now().Before(deadline) {
		if time.Since(logged) > 2*time.Second {
			logged = time.Now()
			fmt.Fprintf(os.Stderr, "%5.1fs %s: replicas %d updated %d ready %d available %d", time.Since(start).Seconds(), name,
				last.Replicas, last.UpdatedReplicas, last.ReadyReplicas, last.AvailableReplicas)
			fmt.Fprintln(os.Stderr)
		}
		d, err := ds.Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = d.Status
			if d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == n && d.Status.Replicas == n &&
				d.Status.AvailableReplicas == n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("%s not complete after %v: %+v", name, limit, last)
}
