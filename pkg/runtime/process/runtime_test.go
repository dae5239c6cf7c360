package process

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/podnet"
)

var (
	running = runtimeapi.ContainerState_CONTAINER_RUNNING
	exited  = runtimeapi.ContainerState_CONTAINER_EXITED
)

func serveArgv() []string { return []string{os.Args[0]} }

func serveEnv(role string) func(*runtimeapi.ContainerConfig) {
	return func(c *runtimeapi.ContainerConfig) {
		c.Envs = append(c.Envs, &runtimeapi.KeyValue{Key: "SKIFF_TEST_ROLE", Value: []byte(role)})
	}
}

func TestStatusAndImages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "skiff-process" {
		t.Errorf("Version() = %v, %v, want RuntimeName skiff-process", v, err)
	}
	st, err := e.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && !c.Status {
			t.Errorf("Status() condition %s = false (%s), want true after UpdateRuntimeConfig", c.Type, c.Message)
		}
	}
	p, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "nginx:1.27"}})
	if err != nil || p.ImageRef != "nginx:1.27" {
		t.Errorf("PullImage(nginx:1.27) = %v, %v, want ref nginx:1.27", p, err)
	}
	is, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "nginx:1.27"}})
	if err != nil || is.Image == nil {
		t.Errorf("ImageStatus(nginx:1.27) = %v, %v, want a synthetic image", is, err)
	}
}

// TestNetworkNotReadyWithoutCIDR uses an in-process runtime: before the pod
// CIDR arrives it must say why the network is not ready, and refuse pods.
func TestNetworkNotReadyWithoutCIDR(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	r, err := New(Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := r.Status(context.Background(), &runtimeapi.StatusRequest{})
	found := false
	for _, c := range st.Status.Conditions {
		if c.Type == runtimeapi.NetworkReady {
			found = true
			if c.Status || c.Reason == "" {
				t.Errorf("NetworkReady before UpdateRuntimeConfig = %v (%q), want false with a reason", c.Status, c.Reason)
			}
		}
	}
	if !found {
		t.Errorf("Status() has no NetworkReady condition")
	}
	_, err = r.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RunPodSandbox without CIDR = %v, want FailedPrecondition", err)
	}
}

// TestThreePodsSamePort: three sandboxes each get an address from the CIDR
// and a process listening on :8080 in each answers from the bridge side.
func TestThreePodsSamePort(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	prefix := netip.MustParsePrefix(testCIDR)
	ips := map[string]string{}
	for _, name := range []string{"web-a", "web-b", "web-c"} {
		sb := e.sandbox(name, nil)
		ps, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb})
		if err != nil {
			t.Fatal(err)
		}
		ip, err := netip.ParseAddr(ps.Status.Network.Ip)
		if err != nil || !prefix.Contains(ip) || ips[ip.String()] != "" {
			t.Fatalf("PodSandboxStatus(%s).Ip = %q, want a fresh address in %s", name, ps.Status.Network.Ip, testCIDR)
		}
		ips[ip.String()] = name
		id := e.container(sb, "srv", serveArgv(), serveEnv("serve"))
		waitLog(t, filepath.Join(e.dir, "pods", name, "srv/0.log"), "listening")
		_ = id
	}
	for ip, name := range ips {
		var got []byte
		err := podnet.Do(e.hostNS, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			got, err = io.ReadAll(c)
			return err
		})
		if err != nil || string(got) != name {
			t.Errorf("GET %s:8080 from the node = %q, %v, want %q", ip, got, err, name)
		}
	}
}

var criLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [PF] `)

// TestContainerSeesPodFilesAndVolume: resolv.conf from DNSConfig, /etc/hosts
// with the pod IP, a bind-mounted volume at a path that did not exist (and is
// cleaned up), CRI-format logs, and the exit code.
func TestContainerSeesPodFilesAndVolume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb := e.sandbox("files", func(c *runtimeapi.PodSandboxConfig) {
		c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}
	})
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "hello"), []byte("hello-volume\n"), 0o644)
	mnt := "/skiff-test-vol-" + filepath.Base(filepath.Dir(vol))
	if _, err := os.Stat(mnt); err == nil {
		t.Fatalf("%s exists before the test", mnt)
	}
	id := e.container(sb, "c", []string{"sh", "-c", "cat /etc/resolv.conf /etc/hosts " + mnt + "/hello; echo oops >&2; printf partial; exit 3"},
		func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{HostPath: vol, ContainerPath: mnt, Readonly: true}}
		})
	st := e.waitState(id, exited, 5*time.Second)
	if st.ExitCode != 3 || st.Reason != "Error" {
		t.Errorf("exit = %d %q, want 3 \"Error\"", st.ExitCode, st.Reason)
	}
	if st.StartedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Errorf("startedAt %d finishedAt %d, want both set in order", st.StartedAt, st.FinishedAt)
	}
	b, err := os.ReadFile(st.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if !criLine.MatchString(line) {
			t.Errorf("log line %q is not in CRI format", line)
			continue
		}
		f := strings.SplitN(line, " ", 4)
		w := &stdout
		if f[1] == "stderr" {
			w = &stderr
		}
		w.WriteString(f[3] + "\n")
	}
	ps, _ := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb})
	for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local", "options ndots:5", ps.Status.Network.Ip + "\tfiles", "hello-volume", "partial"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("container stdout = %q, want it to contain %q", stdout.String(), want)
		}
	}
	if stderr.String() != "oops\n" {
		t.Errorf("container stderr = %q, want %q", stderr.String(), "oops\n")
	}
	if _, err := os.Stat(mnt); err != nil {
		t.Errorf("mountpoint %s not created on the host: %v", mnt, err)
	}
	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mnt); !os.IsNotExist(err) {
		t.Errorf("mountpoint %s left on the host after RemoveContainer (%v)", mnt, err)
		os.Remove(mnt)
	}
}

func TestNoCommand(t *testing.T) {
	e := newEnv(t)
	sb := e.sandbox("nocmd", nil)
	id := e.create(sb, "web", nil, func(c *runtimeapi.ContainerConfig) { c.Image.Image = "nginx" })
	_, err := e.rt.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	if err == nil {
		t.Fatalf("StartContainer without a command = nil, want an error")
	}
	st := e.status(id).Status
	want := `image "nginx" cannot run in the process runtime: set command`
	if st.State != exited || st.Reason != ReasonNeedsCommand || st.Message != want {
		t.Errorf("status = %v %q %q, want EXITED %q %q", st.State, st.Reason, st.Message, ReasonNeedsCommand, want)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t)
	sb := e.sandbox("oom", nil)
	id := e.container(sb, "hog", serveArgv(), func(c *runtimeapi.ContainerConfig) {
		serveEnv("alloc")(c)
		c.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 48 << 20}}
	})
	st := e.waitState(id, exited, 20*time.Second)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("exit = %d %q, want 137 \"OOMKilled\"", st.ExitCode, st.Reason)
	}
}

// TestAdoptAfterKill: kill -9 of the runtime leaves containers running;
// a new runtime over the same DataDir reports them with the same pids,
// can stop them, and does not reuse the live pod's address.
func TestAdoptAfterKill(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb := e.sandbox("adopt", nil)
	id := e.container(sb, "sleeper", []string{"sleep", "1000"}, nil)
	e.waitState(id, running, 5*time.Second)
	pid := e.pid(id)
	ps, _ := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb})

	e.kill()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("container process %d died with the runtime: %v", pid, err)
	}
	e.start()

	l, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: sb}})
	if err != nil || len(l.Containers) != 1 || l.Containers[0].State != running {
		t.Fatalf("ListContainers after restart = %v, %v, want the one running container", l, err)
	}
	if got := e.pid(id); got != pid {
		t.Errorf("pid after restart = %d, want %d (adopted, not restarted)", got, pid)
	}
	other := e.sandbox("adopt-2", nil)
	ps2, _ := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: other})
	if ps2.Status.Network.Ip == ps.Status.Network.Ip {
		t.Errorf("new sandbox after restart got %s, the address of a live pod", ps2.Status.Network.Ip)
	}
	if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	st := e.status(id).Status
	if st.State != exited || st.ExitCode != 128+int32(syscall.SIGTERM) {
		t.Errorf("after StopContainer: %v exit %d, want EXITED 143", st.State, st.ExitCode)
	}
}

func TestExec(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb := e.sandbox("exec", nil)
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "f"), []byte("in-volume"), 0o644)
	id := e.container(sb, "srv", serveArgv(), func(c *runtimeapi.ContainerConfig) {
		serveEnv("serve")(c)
		c.Envs = append(c.Envs, &runtimeapi.KeyValue{Key: "GREETING", Value: []byte("hi")})
		c.Mounts = []*runtimeapi.Mount{{HostPath: vol, ContainerPath: "/tmp/skiff-exec-vol"}}
	})
	waitLog(t, e.status(id).Status.LogPath, "listening")

	resp, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo $GREETING; cat /proc/sys/kernel/hostname /tmp/skiff-exec-vol/f; exit 2"}, Timeout: 5})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ExitCode != 2 || string(resp.Stdout) != "hi\nexec\nin-volume" {
		t.Errorf("ExecSync = %d %q (stderr %q), want 2 %q", resp.ExitCode, resp.Stdout, resp.Stderr, "hi\nexec\nin-volume")
	}
	_, err = e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "10"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync(sleep 10, timeout 1) = %v, want DeadlineExceeded", err)
	}
	if r, err := e.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true}); err != nil || !strings.HasPrefix(r.GetUrl(), "http://127.0.0.1:") {
		t.Errorf("CRI Exec = %v, %v, want a URL of the loopback streaming server", r, err)
	}
	if _, err := e.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("CRI Exec without streams = %v, want InvalidArgument", err)
	}
	if _, err := e.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "nope", Cmd: []string{"true"}, Stdout: true}); status.Code(err) != codes.NotFound {
		t.Errorf("CRI Exec in an unknown container = %v, want NotFound", err)
	}
}

// TestStreamerInProcess exercises Exec (with and without tty) and
// PortForward on an in-process runtime attached to the node namespace.
func TestStreamer(t *testing.T) {
	e := newEnv(t)
	sb := e.sandbox("stream", nil)
	id := e.container(sb, "srv", serveArgv(), serveEnv("serve"))
	waitLog(t, e.status(id).Status.LogPath, "listening")
	e.kill() // hand the state over to an in-process runtime

	r, err := New(Config{DataDir: filepath.Join(e.dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Streamer()
	ctx := context.Background()
	var out, errb nopCloser
	err = s.Exec(ctx, id, []string{"sh", "-c", "cat; echo bad >&2; exit 4"}, strings.NewReader("from-stdin"), &out, &errb, false, nil)
	var ee *ExitError
	if !asExit(err, &ee) || ee.ExitStatus() != 4 || out.String() != "from-stdin" || errb.String() != "bad\n" {
		t.Errorf("Exec = %v, stdout %q stderr %q, want exit 4, %q, %q", err, out.String(), errb.String(), "from-stdin", "bad\n")
	}
	var tout nopCloser
	resize := make(chan TerminalSize, 1)
	resize <- TerminalSize{Width: 100, Height: 30}
	err = s.Exec(ctx, id, []string{"sh", "-c", "sleep 0.2; stty size; tty"}, nil, &tout, nil, true, resize)
	if err != nil || !strings.Contains(tout.String(), "30 100") || !strings.Contains(tout.String(), "/dev/pts/") {
		t.Errorf("Exec with tty = %v, output %q, want the size 30 100 and a pts", err, tout.String())
	}
	client, server := net.Pipe()
	go func() { _ = s.PortForward(ctx, sb, 8080, server) }()
	got, _ := io.ReadAll(client)
	if string(got) != "stream" {
		t.Errorf("PortForward(8080) read %q, want %q", got, "stream")
	}
	// Give the state back to a served runtime so cleanup goes through CRI.
	e.start()
}

type nopCloser struct{ bytes.Buffer }

func (nopCloser) Close() error { return nil }

func asExit(err error, target **ExitError) bool {
	e, ok := err.(*ExitError)
	if ok {
		*target = e
	}
	return ok
}
