package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// shims are the two ways to run a shim: re-executing a big binary (here
// the test binary, which links grpc and the CRI types) and the dedicated
// skiff-shim binary.
func shims(b *testing.B) map[string]string {
	lean := filepath.Join(b.TempDir(), "skiff-shim")
	out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", lean, "github.com/skiff-org/skiff/cmd/skiff-shim").CombinedOutput()
	if err != nil {
		b.Fatalf("build skiff-shim: %v: %s", err, out)
	}
	return map[string]string{"reexec": "", "skiff-shim": lean}
}

// BenchmarkPodStart measures what the runtime adds to a pod's start: one
// RunPodSandbox (netns, veth, address) plus CreateContainer and
// StartContainer of `sleep`, through the CRI socket. It reports p50/p99.
func BenchmarkPodStart(b *testing.B) {
	for name, shimPath := range shims(b) {
		b.Run(name, func(b *testing.B) {
			e := newEnvShim(b, shimPath)
			ctx := context.Background()
			var lat []time.Duration
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				sb := e.sandbox(fmt.Sprintf("bench-%d", i), nil)
				id := e.create(sb, "c", []string{"sleep", "1000"}, nil)
				if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				b.StopTimer()
				if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkShimMemory starts containers and reports the shim's resident
// and private memory: what each running container costs beyond its own
// process.
func BenchmarkShimMemory(b *testing.B) {
	for name, shimPath := range shims(b) {
		b.Run(name, func(b *testing.B) {
			e := newEnvShim(b, shimPath)
			sb := e.sandbox("rss", nil)
			var rss, priv, n float64
			for i := 0; b.Loop(); i++ {
				id := e.container(sb, fmt.Sprintf("c%d", i), []string{"sleep", "1000"}, nil)
				e.waitState(id, running, 5*time.Second)
				shimPid, _ := strconv.Atoi(e.status(id).Info["shimPid"])
				time.Sleep(50 * time.Millisecond) // let the shim settle after start
				rss += float64(memKB(b, shimPid, "status", "VmRSS:"))
				priv += float64(memKB(b, shimPid, "smaps_rollup", "Private_Clean:") + memKB(b, shimPid, "smaps_rollup", "Private_Dirty:"))
				n++
			}
			b.ReportMetric(rss/n/1024, "rss-MB")
			b.ReportMetric(priv/n/1024, "private-MB")
		})
	}
}

func memKB(b testing.TB, pid int, file, key string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	b.Fatalf("no %s in /proc/%d/%s", key, pid, file)
	return 0
}
