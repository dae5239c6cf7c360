package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startNode runs a whole one-node cluster — `skiff server` with its agent —
// inside a network namespace made for the test, with a fake uplink (a veth
// pair with both ends inside), so pod traffic never leaves the machine.
func startNode(t *testing.T) *server { return startNodeTB(t) }

// startNodeB is startNode for benchmarks.
func startNodeB(b *testing.B) *server { return startNodeTB(b) }

func startNodeTB(t testing.TB) *server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: a one-node cluster needs root (network namespaces, bridges, cgroups); run the suite as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("e2e: no `ip` command; apt-get install iproute2")
	}
	ns := fmt.Sprintf("skiff-e2e-%d", os.Getpid()%100000)
	sh := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
	sh("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh("-n", ns, "link", "set", "lo", "up")
	sh("-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	sh("-n", ns, "addr", "add", "192.168.77.2/24", "dev", "up0")
	sh("-n", ns, "link", "set", "up0", "up")
	sh("-n", ns, "link", "set", "up1", "up")
	sh("-n", ns, "route", "add", "default", "via", "192.168.77.1", "dev", "up0")

	dir := t.TempDir()
	s := &server{dataDir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig"), netns: "/run/netns/" + ns}
	s.args = []string{"server", "--data-dir", dir}
	s.start(t)
	t.Cleanup(func() { s.kill(); s.killContainers() })
	return s
}

// killContainers ends the containers the node left running: by design they
// outlive skiff itself.
func (s *server) killContainers() {
	dirs, _ := filepath.Glob(filepath.Join(s.dataDir, "agent", "runtime", "containers", "*", "status.json"))
	for _, f := range dirs {
		var st struct{ Pid, ShimPid int }
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &st) == nil {
			for _, p := range []int{st.Pid, st.ShimPid} {
				if p > 1 {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
	}
	// Shims of containers that never got as far as a status file still
	// name their container's directory on their command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), s.dataDir+"/") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Sandboxes pin their network namespaces with bind mounts.
	pins, _ := filepath.Glob(filepath.Join(s.dataDir, "agent", "runtime", "sandboxes", "*", "netns"))
	for _, p := range pins {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// containerPID is the host PID of a pod's first container.
func (s *server) containerPID(t *testing.T, k, pod string) int {
	t.Helper()
	id := s.must(t, k, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}")
	id = id[strings.Index(id, "://")+3:]
	b, err := os.ReadFile(filepath.Join(s.dataDir, "agent", "runtime", "containers", id, "status.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Pid int }
	json.Unmarshal(b, &st)
	return st.Pid
}

// inNode runs a command inside the node's network namespace.
func (s *server) inNode(args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + s.netns}, args...)...).CombinedOutput()
	return string(out), err
}

type podList struct {
	Items []struct {
		Metadata struct {
			Name              string
			DeletionTimestamp *string
		}
		Status struct {
			Phase             string
			PodIP             string
			ContainerStatuses []struct {
				RestartCount int
				Ready        bool
			}
		}
	}
}

func (s *server) pods(t *testing.T, k string, selector string) podList {
	t.Helper()
	var l podList
	if err := json.Unmarshal([]byte(s.must(t, k, "get", "pods", "-l", selector, "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last state: %s", what, timeout, last)
}

// TestOneNodeCluster is the milestone: `skiff server` alone gives a node on
// which a Deployment's pods run, heal, scale and roll.
func TestOneNodeCluster(t *testing.T) {
	s := startNode(t)
	k := "kubectl"
	s.must(t, k, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")

	s.must(t, k, "apply", "-f", "testdata/web.yaml")
	s.must(t, k, "rollout", "status", "deploy/web", "--timeout=90s")
	running := func(n int) func() (bool, string) {
		return func() (bool, string) {
			l := s.pods(t, k, "app=web")
			ready := 0
			for _, p := range l.Items {
				if p.Metadata.DeletionTimestamp == nil && p.Status.Phase == "Running" && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready {
					ready++
				}
			}
			return ready == n && len(l.Items) == n, fmt.Sprintf("%d of %d ready, %d pods", ready, n, len(l.Items))
		}
	}
	eventually(t, "3 web pods ready", 60*time.Second, running(3))

	// Three pods, three IPs, each answering on the same port.
	l := s.pods(t, k, "app=web")
	ips := map[string]bool{}
	for _, p := range l.Items {
		ips[p.Status.PodIP] = true
		out, err := s.inNode("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "http://"+p.Status.PodIP+":8080/")
		if err != nil || out != "200" {
			t.Errorf("GET %s:8080 = %q, %v", p.Status.PodIP, out, err)
		}
	}
	if len(ips) != 3 {
		t.Errorf("pod IPs = %v, want 3 different", ips)
	}

	// A Job runs to completion and keeps its pod's logs.
	s.must(t, k, "create", "job", "pi", "--image=busybox", "--", "sh", "-c", "echo pi is 3.14")
	s.must(t, k, "wait", "--for=condition=complete", "job/pi", "--timeout=60s")
	if out := s.must(t, k, "logs", "job/pi"); strings.TrimSpace(out) != "pi is 3.14" {
		t.Errorf("kubectl logs job/pi = %q", out)
	}
	wantIn(t, "kubectl get job pi", s.must(t, k, "get", "job", "pi"), "Complete", "1/1")

	// A killed container is restarted in place.
	victim := l.Items[0].Metadata.Name
	pid := s.containerPID(t, k, victim)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	eventually(t, "killed container restarted", 60*time.Second, func() (bool, string) {
		rc := s.must(t, k, "get", "pod", victim, "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
		return rc == "1", "restartCount " + rc
	})

	// A deleted pod is replaced.
	s.must(t, k, "delete", "pod", victim, "--wait=false")
	eventually(t, "deleted pod replaced", 60*time.Second, func() (bool, string) {
		ok, state := running(3)()
		if !ok {
			return false, state
		}
		for _, p := range s.pods(t, k, "app=web").Items {
			if p.Metadata.Name == victim {
				return false, victim + " still listed"
			}
		}
		return true, ""
	})

	// Scale up and down.
	s.must(t, k, "scale", "deploy/web", "--replicas=5")
	eventually(t, "scaled to 5", 60*time.Second, running(5))
	s.must(t, k, "scale", "deploy/web", "--replicas=2")
	eventually(t, "scaled to 2", 60*time.Second, running(2))

	// A rolling update replaces every pod; undo brings the old template back.
	before := s.must(t, k, "get", "rs", "-l", "app=web", "-o", "name")
	s.must(t, k, "set", "env", "deploy/web", "VERSION=2")
	s.must(t, k, "rollout", "status", "deploy/web", "--timeout=90s")
	after := s.must(t, k, "get", "rs", "-l", "app=web", "-o", "name")
	if strings.Count(after, "replicaset") != strings.Count(before, "replicaset")+1 {
		t.Errorf("rollout made no new ReplicaSet: before %q after %q", before, after)
	}
	wantIn(t, "rollout history", s.must(t, k, "rollout", "history", "deploy/web"), "1 ", "2 ")
	s.must(t, k, "rollout", "undo", "deploy/web")
	s.must(t, k, "rollout", "status", "deploy/web", "--timeout=90s")
	if env := s.must(t, k, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env}"); strings.Contains(env, "VERSION") {
		t.Errorf("undo kept the new template: env %s", env)
	}
	eventually(t, "2 pods after undo", 60*time.Second, running(2))

	// Logs come from the kubelet through the API server.
	p := s.pods(t, k, "app=web").Items[0]
	s.inNode("curl", "-s", "-o", "/dev/null", "http://"+p.Status.PodIP+":8080/hello-logs")
	eventually(t, "kubectl logs", 20*time.Second, func() (bool, string) {
		out, _ := s.kubectl(t, k, "", "logs", p.Metadata.Name)
		return strings.Contains(out, "hello-logs"), out
	})

	// exec, stdin, the pod's resolv.conf, cp and port-forward, through the
	// API server, the kubelet and the runtime's streaming server.
	out := s.must(t, k, "exec", p.Metadata.Name, "--", "cat", "/etc/resolv.conf")
	wantIn(t, "pod resolv.conf", out, "nameserver 10.43.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "ndots:5")
	out, err := s.kubectl(t, k, "hello through stdin", "exec", "-i", p.Metadata.Name, "--", "cat")
	if err != nil || !strings.Contains(out, "hello through stdin") {
		t.Errorf("exec -i = %q, %v", out, err)
	}
	if out, err := s.kubectl(t, k, "", "exec", p.Metadata.Name, "--", "sh", "-c", "exit 3"); err == nil || !strings.Contains(out, "exit code 3") {
		t.Errorf("exec exit 3 = %q, %v; want exit code 3", out, err)
	}
	src := filepath.Join(t.TempDir(), "note.txt")
	os.WriteFile(src, []byte("copied in"), 0o644)
	s.must(t, k, "cp", src, p.Metadata.Name+":/tmp/note.txt")
	wantIn(t, "cp", s.must(t, k, "exec", p.Metadata.Name, "--", "cat", "/tmp/note.txt"), "copied in")
	pf := exec.Command("nsenter", "--net="+s.netns, k, "--kubeconfig", s.kubeconfig, "port-forward", "pod/"+p.Metadata.Name, "18080:8080")
	var pfOut syncBuffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "port-forward", 20*time.Second, func() (bool, string) {
		out, err := s.inNode("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "http://127.0.0.1:18080/")
		return err == nil && out == "200", out + pfOut.String()
	})
	pf.Process.Kill()
	pf.Wait()

	// kill -9 of the whole skiff process: containers keep running, and the
	// restarted server adopts them (same PIDs, restart counts unchanged).
	pids := map[string]int{}
	restarts := map[string]string{}
	for _, p := range s.pods(t, k, "app=web").Items {
		pids[p.Metadata.Name] = s.containerPID(t, k, p.Metadata.Name)
		restarts[p.Metadata.Name] = strconv.Itoa(p.Status.ContainerStatuses[0].RestartCount)
	}
	s.kill()
	s.start(t)
	s.must(t, k, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
	time.Sleep(3 * time.Second) // let the kubelet resync
	for name, pid := range pids {
		if got := s.containerPID(t, k, name); got != pid {
			t.Errorf("pod %s: container PID %d after restart, want %d", name, got, pid)
		}
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("pod %s: process %d died with skiff", name, pid)
		}
		if rc := s.must(t, k, "get", "pod", name, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); rc != restarts[name] {
			t.Errorf("pod %s: restartCount %s after restart, want %s", name, rc, restarts[name])
		}
	}
	eventually(t, "still 2 pods", 30*time.Second, running(2))
	s.must(t, k, "delete", "-f", "testdata/web.yaml", "--wait=true", "--timeout=60s")
}
