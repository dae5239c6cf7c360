package process

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/podnet"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// The test binary plays three extra roles, chosen before tests run:
//   - `runtime-shim DIR`: the shim, as the real binary would run it;
//   - SKIFF_TEST_ROLE=runtime: the runtime serving CRI on a socket, started
//     inside a network namespace the test created as the "node";
//   - SKIFF_TEST_ROLE=serve|alloc: a container's process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "runtime-shim" {
		os.Exit(shim.Main(os.Args[2:]))
	}
	switch os.Getenv("SKIFF_TEST_ROLE") {
	case "runtime":
		os.Exit(runtimeRole())
	case "serve":
		serveRole()
		return
	case "alloc":
		allocRole()
		return
	}
	os.Exit(m.Run())
}

func runtimeRole() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := Config{DataDir: os.Getenv("SKIFF_TEST_DATA"), BridgeName: "sktest0"}
	if p := os.Getenv("SKIFF_TEST_SHIM"); p != "" {
		cfg.ShimPath = p
	} else {
		cfg.ShimPath, cfg.ShimArgs = "/proc/self/exe", []string{"runtime-shim"}
	}
	r, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := r.Serve(ctx, os.Getenv("SKIFF_TEST_SOCK")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// serveRole answers every connection on :8080 with the hostname.
func serveRole() {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	h, _ := os.Hostname()
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		fmt.Fprint(c, h)
		c.Close()
	}
}

// allocRole touches memory until something stops it.
func allocRole() {
	var keep [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		keep = append(keep, b)
	}
}

// env is a runtime serving CRI in its own process inside a network
// namespace that stands for the node, with a gRPC client on its socket.
type env struct {
	t      testing.TB
	dir    string
	shim   string // shim binary; "" = the test binary itself
	hostNS string
	sock   string
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
}

const testCIDR = "10.99.0.0/24"

func newEnv(t testing.TB) *env { return newEnvShim(t, "") }

func newEnvShim(t testing.TB, shimPath string) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, mounts, cgroups)")
	}
	dir := t.TempDir()
	e := &env{t: t, dir: dir, hostNS: filepath.Join(dir, "hostns"), sock: filepath.Join(dir, "cri.sock"), shim: shimPath}
	if err := podnet.CreateNetns(e.hostNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	e.start()
	if _, err := e.rt.UpdateRuntimeConfig(context.Background(), &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: testCIDR}},
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs the runtime process inside the node namespace: the fork
// happens on a thread switched into it.
func (e *env) start() {
	e.t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SKIFF_TEST_ROLE=runtime", "SKIFF_TEST_DATA="+filepath.Join(e.dir, "data"), "SKIFF_TEST_SOCK="+e.sock, "SKIFF_TEST_SHIM="+e.shim)
	logf, err := os.OpenFile(filepath.Join(e.dir, "runtime.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies in the node namespace
		fd, err := unix.Open(e.hostNS, unix.O_RDONLY, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err == nil {
			err = cmd.Start()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		e.t.Fatal(err)
	}
	e.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", e.sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(e.dir, "runtime.log"))
			e.t.Fatalf("runtime did not listen on %s: %s", e.sock, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.conn = conn
	e.rt = runtimeapi.NewRuntimeServiceClient(conn)
	e.img = runtimeapi.NewImageServiceClient(conn)
}

// kill ends the runtime process with SIGKILL, as `kill -9` of the agent.
func (e *env) kill() {
	e.conn.Close()
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	_ = os.Remove(e.sock)
}

func (e *env) close() {
	if e.rt != nil {
		ctx := context.Background()
		if l, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, s := range l.Items {
				if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
					e.t.Errorf("cleanup: RemovePodSandbox(%s): %v", s.Id, err)
				}
			}
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.dir, "runtime.log"))
			e.t.Logf("runtime log:\n%s", b)
		}
		e.kill()
	}
	_ = podnet.RemoveNetns(e.hostNS)
}

func (e *env) sandbox(name string, mutate func(*runtimeapi.PodSandboxConfig)) string {
	e.t.Helper()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(e.dir, "pods", name),
		Labels:       map[string]string{"app": "test"},
	}
	if mutate != nil {
		mutate(cfg)
	}
	resp, err := e.rt.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		e.t.Fatalf("RunPodSandbox(%s): %v", name, err)
	}
	return resp.PodSandboxId
}

// container creates and starts a container running argv.
func (e *env) container(sandboxID, name string, argv []string, mutate func(*runtimeapi.ContainerConfig)) string {
	e.t.Helper()
	id := e.create(sandboxID, name, argv, mutate)
	if _, err := e.rt.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		e.t.Fatalf("StartContainer(%s): %v", name, err)
	}
	return id
}

func (e *env) create(sandboxID, name string, argv []string, mutate func(*runtimeapi.ContainerConfig)) string {
	e.t.Helper()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  argv,
		LogPath:  name + "/0.log",
		Envs:     []*runtimeapi.KeyValue{{Key: "PATH", Value: []byte(os.Getenv("PATH"))}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	resp, err := e.rt.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
		PodSandboxId: sandboxID, Config: cfg,
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "x"}},
	})
	if err != nil {
		e.t.Fatalf("CreateContainer(%s): %v", name, err)
	}
	return resp.ContainerId
}

func (e *env) status(id string) *runtimeapi.ContainerStatusResponse {
	e.t.Helper()
	st, err := e.rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		e.t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return st
}

// waitState polls until the container reaches state.
func (e *env) waitState(id string, state runtimeapi.ContainerState, d time.Duration) *runtimeapi.ContainerStatus {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := e.status(id).Status
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s state = %v (%s %s), want %v", id, st.State, st.Reason, st.Message, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) pid(id string) int {
	e.t.Helper()
	n, _ := strconv.Atoi(e.status(id).Info["pid"])
	return n
}

// waitLog polls a container's log until it contains s.
func waitLog(t testing.TB, path, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s = %q, want it to contain %q", path, b, s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
