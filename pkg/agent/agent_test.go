package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/agent"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// inNetnsEnv marks the re-executed test binary that runs inside a network
// namespace of its own, so the agent's bridge never touches the host.
const inNetnsEnv = "SKIFF_AGENT_TEST_NETNS"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "runtime-shim" {
		os.Exit(shim.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// inNetns runs the calling test again in a child process inside a fresh
// network namespace and reports its result; it returns true in the child,
// where the test body should proceed.
func inNetns(t *testing.T) bool {
	if os.Getenv(inNetnsEnv) != "" {
		// Mounts the runtime makes (pinned namespaces, tmpfs) stay in the
		// child's own mount namespace.
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			t.Fatal(err)
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "BENCH ") || strings.Contains(line, "--- FAIL") || strings.Contains(line, "_test.go:") {
			t.Log(line)
		}
	}
	if err != nil {
		t.Fatalf("test in network namespace failed: %v\n%s", err, out.String())
	}
	return false
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// kubeletPort is the HTTPS port of the agent startAgent started last.
var kubeletPort int

// startAgent runs a whole agent (built-in runtime and kubelet) against the
// cluster and gives the node its pod CIDR, as the controller manager would.
func startAgent(t *testing.T, c *testcluster.Cluster, dataDir string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	kubeletPort = freePort(t)
	go func() {
		done <- agent.Run(ctx, agent.Config{RestConfig: c.Config, NodeName: "n1", DataDir: dataDir, KubeletPort: kubeletPort,
			NodeIP: "127.0.0.1", PodSyncPeriod: 500 * time.Millisecond})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err == nil {
			if n.Spec.PodCIDR == "" {
				n.Spec.PodCIDR = "10.42.0.0/24"
				_, err = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			}
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never registered: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("agent stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent Run() = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("agent did not stop")
		}
	}
}

func waitPod(t *testing.T, client kubernetes.Interface, name, what string, cond func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *v1.Pod
	for time.Now().Before(deadline) {
		p, err := client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("pod %s: %s not reached within 30s; status: %s", name, what, last.Status.String())
	}
	t.Fatalf("pod %s: %s not reached within 30s; pod missing", name, what)
	return nil
}

func pod(name string, policy v1.RestartPolicy, script string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.PodSpec{NodeName: "n1", RestartPolicy: policy, TerminationGracePeriodSeconds: new(int64),
			Containers: []v1.Container{{Name: "app", Image: "busybox", Command: []string{"sh", "-c", script}}}}}
}

func first(p *v1.Pod) v1.ContainerStatus {
	if len(p.Status.ContainerStatuses) == 0 {
		return v1.ContainerStatus{}
	}
	return p.Status.ContainerStatuses[0]
}

func TestAgentIntegration(t *testing.T) {
	if !inNetns(t) {
		return
	}
	c := testcluster.Start(t, testcluster.Options{})
	dataDir := t.TempDir()
	stop := startAgent(t, c, dataDir)
	ctx := context.Background()
	client := c.Client
	defer func() {
		// Containers outlive agents by design: delete every pod so the
		// kubelet stops their processes before the test ends.
		_ = client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			entries, _ := os.ReadDir(filepath.Join(dataDir, "pods"))
			sandboxes, _ := os.ReadDir(filepath.Join(dataDir, "runtime", "sandboxes"))
			pods, _ := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			if len(entries) == 0 && len(sandboxes) == 0 && pods != nil && len(pods.Items) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
	}()
	create := func(p *v1.Pod) *v1.Pod {
		t.Helper()
		got, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("running with IP, restart after kill, logs", func(t *testing.T) {
		p := pod("web", v1.RestartPolicyAlways, "echo hello from $(POD); echo $$ > /work/pid; exec sleep 1000")
		p.Spec.Containers[0].Env = []v1.EnvVar{{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		// $$ is Kubernetes' escape for $: the shell sees $$, its pid.
		p.Spec.Containers[0].Command[2] = "echo hello from $(POD); echo $$$$ > /work/pid; exec sleep 1000"
		p.Spec.Volumes = []v1.Volume{{Name: "work", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}
		p.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{{Name: "work", MountPath: "/work"}}
		created := create(p)
		got := waitPod(t, client, "web", "Running with an IP", func(p *v1.Pod) bool {
			return p.Status.Phase == v1.PodRunning && strings.HasPrefix(p.Status.PodIP, "10.42.0.")
		})
		pidFile := filepath.Join(dataDir, "pods", string(created.UID), "volumes", "kubernetes.io~empty-dir", "work", "pid")
		var pid int
		deadline := time.Now().Add(10 * time.Second)
		for pid == 0 && time.Now().Before(deadline) {
			b, _ := os.ReadFile(pidFile)
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			time.Sleep(20 * time.Millisecond)
		}
		if pid == 0 {
			t.Fatalf("container never wrote its pid to %s", pidFile)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitPod(t, client, "web", "restartCount 1", func(p *v1.Pod) bool {
			cs := first(p)
			return cs.RestartCount == 1 && cs.State.Running != nil && cs.LastTerminationState.Terminated != nil
		})
		_ = got
		// The kubelet serves the CRI log files to callers holding a
		// certificate from the cluster CA (the API server's admin one).
		cert, err := tls.X509KeyPair(c.Config.CertData, c.Config.KeyData)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}} //nolint:gosec // self-signed kubelet cert
		get := func(path string) (int, string) {
			resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", kubeletPort, path))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/containerLogs/default/web/app"); code != 200 || body != "hello from web\n" {
			t.Errorf("containerLogs web = %d %q, want 200 hello from web", code, body)
		}
		if code, body := get("/containerLogs/default/web/app?previous=true&timestamps=true"); code != 200 || !strings.HasSuffix(body, "Z hello from web\n") {
			t.Errorf("containerLogs previous timestamps = %d %q, want a timestamped hello", code, body)
		}
		if resp, err := http.Get(fmt.Sprintf("https://127.0.0.1:%d/containerLogs/default/web/app", kubeletPort)); err == nil {
			resp.Body.Close()
			t.Errorf("containerLogs without a client certificate answered %d, want TLS failure or 401", resp.StatusCode)
		}
		// Through the API server (pods/log), as kubectl logs does.
		logs, err := client.CoreV1().Pods("default").GetLogs("web", &v1.PodLogOptions{}).DoRaw(ctx)
		t.Logf("pods/log via the API server: %q %v", logs, err)
	})

	t.Run("Never and exit 1 is Failed", func(t *testing.T) {
		create(pod("fail", v1.RestartPolicyNever, "exit 1"))
		p := waitPod(t, client, "fail", "Failed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed })
		if cs := first(p); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 1 || cs.RestartCount != 0 {
			t.Errorf("fail status = %s, want terminated with 1 and no restart", cs.String())
		}
	})

	t.Run("OnFailure restarts", func(t *testing.T) {
		create(pod("retry", v1.RestartPolicyOnFailure, "exit 3"))
		waitPod(t, client, "retry", "restarted", func(p *v1.Pod) bool { return first(p).RestartCount >= 1 })
	})

	t.Run("liveness failure restarts with events", func(t *testing.T) {
		p := pod("live", v1.RestartPolicyAlways, "exec sleep 1000")
		p.Spec.Containers[0].LivenessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"false"}}},
			PeriodSeconds: 1, FailureThreshold: 1}
		create(p)
		waitPod(t, client, "live", "restart after liveness failure", func(p *v1.Pod) bool { return first(p).RestartCount >= 1 })
		deadline := time.Now().Add(10 * time.Second)
		for {
			evs, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
			var unhealthy, killing bool
			if err == nil {
				for _, e := range evs.Items {
					if e.InvolvedObject.Name == "live" {
						unhealthy = unhealthy || e.Reason == "Unhealthy" && strings.HasPrefix(e.Message, "Liveness probe failed")
						killing = killing || e.Reason == "Killing" && e.Message == "Container app failed liveness probe, will be restarted"
					}
				}
			}
			if unhealthy && killing {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("events Unhealthy=%v Killing=%v, want both (err %v)", unhealthy, killing, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("configMap volume update is visible", func(t *testing.T) {
		cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"}, Data: map[string]string{"key": "one"}}
		if _, err := client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := pod("cfg", v1.RestartPolicyAlways, "while true; do cat /cfg/key > /out/seen; sleep 0.1; done")
		p.Spec.Volumes = []v1.Volume{
			{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
			{Name: "out", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		}
		p.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}, {Name: "out", MountPath: "/out"}}
		created := create(p)
		seen := filepath.Join(dataDir, "pods", string(created.UID), "volumes", "kubernetes.io~empty-dir", "out", "seen")
		waitFile(t, seen, "one")
		cm.Data["key"] = "two"
		if _, err := client.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFile(t, seen, "two")
	})

	t.Run("subPathExpr gives each pod its own directory", func(t *testing.T) {
		p := pod("sub", v1.RestartPolicyAlways, "echo written by $(POD) > /out/file; exec sleep 1000")
		p.Spec.Containers[0].Env = []v1.EnvVar{{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
		p.Spec.Volumes = []v1.Volume{{Name: "out", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}
		p.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{{Name: "out", MountPath: "/out", SubPathExpr: "logs/$(POD)"}}
		created := create(p)
		waitFile(t, filepath.Join(dataDir, "pods", string(created.UID), "volumes", "kubernetes.io~empty-dir", "out", "logs", "sub", "file"), "written by sub")
	})

	t.Run("sidecar runs beside the app and restarts", func(t *testing.T) {
		always := v1.ContainerRestartPolicyAlways
		p := pod("side", v1.RestartPolicyNever, "exec sleep 1000")
		p.Spec.Volumes = []v1.Volume{{Name: "work", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}
		mount := []v1.VolumeMount{{Name: "work", MountPath: "/work"}}
		p.Spec.InitContainers = []v1.Container{
			{Name: "proxy", Image: "busybox", Command: []string{"sh", "-c", "echo $$$$ > /work/pid; exec sleep 1000"}, RestartPolicy: &always, VolumeMounts: mount},
			{Name: "setup", Image: "busybox", Command: []string{"true"}},
		}
		created := create(p)
		waitPod(t, client, "side", "running with its sidecar", func(p *v1.Pod) bool {
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || c.Type == v1.PodReady && c.Status == v1.ConditionTrue
			}
			return p.Status.Phase == v1.PodRunning && ready && len(p.Status.InitContainerStatuses) == 2 &&
				p.Status.InitContainerStatuses[0].State.Running != nil && p.Status.InitContainerStatuses[1].State.Terminated != nil
		})
		// Kill the sidecar's process: restarted although the pod says Never.
		pidFile := filepath.Join(dataDir, "pods", string(created.UID), "volumes", "kubernetes.io~empty-dir", "work", "pid")
		b, err := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == 0 {
			t.Fatalf("sidecar pid from %s: %q, %v", pidFile, b, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitPod(t, client, "side", "sidecar restarted", func(p *v1.Pod) bool {
			return len(p.Status.InitContainerStatuses) == 2 && p.Status.InitContainerStatuses[0].RestartCount >= 1 &&
				p.Status.InitContainerStatuses[0].State.Running != nil && p.Status.Phase == v1.PodRunning
		})
		if err := client.CoreV1().Pods("default").Delete(ctx, "side", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("deletion removes the pod", func(t *testing.T) {
		if err := client.CoreV1().Pods("default").Delete(ctx, "live", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := client.CoreV1().Pods("default").Get(ctx, "live", metav1.GetOptions{})
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod live still present 20s after delete")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("agent restart adopts containers", func(t *testing.T) {
		before := first(waitPod(t, client, "web", "running", func(p *v1.Pod) bool { return first(p).State.Running != nil }))
		stop()
		stop = startAgent(t, c, dataDir)
		time.Sleep(time.Second)
		after := first(waitPod(t, client, "web", "running", func(p *v1.Pod) bool { return first(p).State.Running != nil }))
		if after.ContainerID != before.ContainerID || after.RestartCount != before.RestartCount {
			t.Errorf("after agent restart %s/%d, want %s/%d", after.ContainerID, after.RestartCount, before.ContainerID, before.RestartCount)
		}
	})
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if got = strings.TrimSpace(string(b)); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s = %q, want %q", path, got, want)
}

// TestAgentPodStartup measures create→Running for single pods and for 100
// at once; set SKIFF_BENCH=1 to run it (numbers go to docs/benchmarks.md).
func TestAgentPodStartup(t *testing.T) {
	if os.Getenv("SKIFF_BENCH") == "" {
		t.Skip("set SKIFF_BENCH=1")
	}
	if !inNetns(t) {
		return
	}
	c := testcluster.Start(t, testcluster.Options{})
	dataDir := t.TempDir()
	stop := startAgent(t, c, dataDir)
	ctx := context.Background()
	client := c.Client
	defer func() {
		_ = client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			sandboxes, _ := os.ReadDir(filepath.Join(dataDir, "runtime", "sandboxes"))
			if len(sandboxes) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
	}()
	running := func(name string) {
		for {
			p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.Phase == v1.PodRunning {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	var lat []time.Duration
	for i := range benchN() {
		name := fmt.Sprintf("one-%d", i)
		start := time.Now()
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod(name, v1.RestartPolicyAlways, "exec sleep 1000"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		running(name)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("BENCH single pod create→Running: p50 %v p99 %v (n=%d)", lat[len(lat)/2], lat[len(lat)-1], len(lat))
	if os.Getenv("SKIFF_BENCH_EVENTS") != "" {
		evs, _ := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		for _, e := range evs.Items {
			t.Logf("BENCH event %s %s %s %s", e.InvolvedObject.Name, e.FirstTimestamp.Format(time.RFC3339Nano), e.Reason, e.Message)
		}
		return
	}

	start := time.Now()
	for i := range 100 {
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod(fmt.Sprintf("many-%d", i), v1.RestartPolicyAlways, "exec sleep 1000"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		running(fmt.Sprintf("many-%d", i))
	}
	t.Logf("BENCH 100 pods create→all Running: %v", time.Since(start))
}

func benchN() int {
	if n, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_N")); err == nil {
		return n
	}
	return 30
}
