package streaming_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/podnet"
	"github.com/skiff-org/skiff/pkg/runtime/process"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

// The test binary also plays the process runtime's shim
// (`runtime-shim DIR`), the runtime serving CRI inside the test's node
// namespace (SKIFF_TEST_ROLE=runtime) and a container's process
// (SKIFF_TEST_ROLE=serve).
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
	}
	os.Exit(m.Run())
}

func runtimeRole() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	r, err := process.New(process.Config{DataDir: os.Getenv("SKIFF_TEST_DATA"), BridgeName: "skstrm0",
		ShimPath: "/proc/self/exe", ShimArgs: []string{"runtime-shim"}})
	if err == nil {
		err = r.Serve(ctx, os.Getenv("SKIFF_TEST_SOCK"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// serveRole answers each line on :8080 with the host name and the line.
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
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "%s:%s", h, line)
		}()
	}
}

// node is a process runtime serving CRI from a network namespace the test
// made, with a relay on the test's loopback to its streaming server.
type node struct {
	t     *testing.T
	dir   string
	netns string
	rt    runtimeapi.RuntimeServiceClient
	relay string // host:port on this side standing for the runtime's streaming server
}

func startNode(t *testing.T) *node {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	dir := t.TempDir()
	n := &node{t: t, dir: dir, netns: filepath.Join(dir, "netns")}
	if err := podnet.CreateNetns(n.netns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = podnet.RemoveNetns(n.netns) })
	sock := filepath.Join(dir, "cri.sock")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SKIFF_TEST_ROLE=runtime", "SKIFF_TEST_DATA="+filepath.Join(dir, "data"), "SKIFF_TEST_SOCK="+sock)
	logf, err := os.Create(filepath.Join(dir, "runtime.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := n.do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "runtime.log"))
			t.Fatalf("runtime did not listen on %s: %s", sock, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	n.rt = runtimeapi.NewRuntimeServiceClient(conn)
	t.Cleanup(func() {
		ctx := context.Background()
		if l, err := n.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, s := range l.Items {
				_, _ = n.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id})
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "runtime.log"))
			t.Logf("runtime log:\n%s", b)
		}
		conn.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	if _, err := n.rt.UpdateRuntimeConfig(context.Background(), &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.98.0.0/24"}},
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// do runs fn on a thread inside the node namespace; the thread is never
// returned to the scheduler.
func (n *node) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(n.netns, unix.O_RDONLY, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err == nil {
			err = fn()
		}
		errc <- err
	}()
	return <-errc
}

// reach rewrites a streaming URL (loopback inside the node namespace) to
// a relay on this side that dials it there.
func (n *node) reach(raw string) string {
	n.t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		n.t.Fatal(err)
	}
	if n.relay == "" {
		n.relay = n.startRelay(u.Host)
	}
	u.Host = n.relay
	return u.String()
}

func (n *node) startRelay(target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.t.Fatal(err)
	}
	var wg sync.WaitGroup
	n.t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var up net.Conn
			if err := podnet.Do(n.netns, func() (err error) { up, err = net.Dial("tcp", target); return err }); err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); c.Close(); up.Close() }()
		}
	}()
	return ln.Addr().String()
}

// pod starts a sandbox with one container serving on :8080.
func (n *node) pod(name string) (sandbox, container string) {
	n.t.Helper()
	sb, err := n.rt.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(n.dir, "pods", name),
	}})
	if err != nil {
		n.t.Fatal(err)
	}
	id := n.container(sb.PodSandboxId, "srv", []string{os.Args[0]}, false)
	logPath := filepath.Join(n.dir, "pods", name, "srv.log")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("listening")) {
			return sb.PodSandboxId, id
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("container log %s = %q, want it to say listening", logPath, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// container starts argv in the sandbox; its log is <pod log dir>/name.log.
func (n *node) container(sandbox, name string, argv []string, stdin bool) string {
	n.t.Helper()
	ctx := context.Background()
	c, err := n.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sandbox,
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name}},
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  argv,
			Stdin:    stdin,
			LogPath:  name + ".log",
			Envs:     []*runtimeapi.KeyValue{{Key: "PATH", Value: []byte(os.Getenv("PATH"))}, {Key: "SKIFF_TEST_ROLE", Value: []byte("serve")}},
		}})
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		n.t.Fatal(err)
	}
	return c.ContainerId
}

// syncBuffer is a bytes.Buffer safe to read while a client writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixedSizes struct {
	ch chan remotecommand.TerminalSize
}

func (q fixedSizes) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.ch
	if !ok {
		return nil
	}
	return &sz
}

// TestProcessRuntime drives exec and port-forward of a real process
// runtime through CRI and the URLs it returns, with client-go's executors
// and port forwarder, over each transport kubectl uses.
func TestProcessRuntime(t *testing.T) {
	n := startNode(t)
	sb, id := n.pod("stream")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	executors := map[string]func(u string) (remotecommand.Executor, error){
		"spdy": func(u string) (remotecommand.Executor, error) {
			pu, _ := url.Parse(u)
			return remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", pu)
		},
		"websocket": func(u string) (remotecommand.Executor, error) {
			return remotecommand.NewWebSocketExecutor(&rest.Config{}, "GET", u)
		},
	}
	for name, newExec := range executors {
		// stdin echoed, stdout and stderr apart, the exit code back.
		resp, err := n.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "cat; echo oops >&2; exit 3"}, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		e, err := newExec(n.reach(resp.Url))
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		err = e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader("from stdin\n"), Stdout: &out, Stderr: &errb})
		var ce utilexec.CodeExitError
		if !errors.As(err, &ce) || ce.Code != 3 || out.String() != "from stdin\n" || errb.String() != "oops\n" {
			t.Errorf("%s: exec = %v, stdout %q stderr %q, want exit 3, %q, %q", name, err, out.String(), errb.String(), "from stdin\n", "oops\n")
		}

		// A terminal that takes the client's size.
		resp, err = n.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Tty: true, Stdout: true,
			Cmd: []string{"sh", "-c", `for i in $(seq 100); do s=$(stty size); [ "$s" = "40 120" ] && break; sleep 0.02; done; echo "$s"; tty`}})
		if err != nil {
			t.Fatal(err)
		}
		e, err = newExec(n.reach(resp.Url))
		if err != nil {
			t.Fatal(err)
		}
		q := fixedSizes{make(chan remotecommand.TerminalSize, 1)}
		q.ch <- remotecommand.TerminalSize{Width: 120, Height: 40}
		out.Reset()
		err = e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Tty: true, TerminalSizeQueue: q})
		close(q.ch)
		if err != nil || !strings.HasPrefix(out.String(), "40 120\r\n/dev/pts/") {
			t.Errorf("%s: exec with tty = %v, output %q, want the size 40 120 and a pts", name, err, out.String())
		}
	}

	// Attach to a container reading its stdin: what is typed comes back
	// through its log, and the session ends when the container exits. (The
	// runtime keeps a container's stdin open between attaches, so closing
	// ours does not end it.)
	for _, name := range []string{"spdy", "websocket"} {
		newExec := executors[name]
		cid := n.container(sb, "echo-"+name, []string{"sh", "-c", `while read l; do echo "$l"; [ "$l" = bye ] && exit 0; done`}, true)
		resp, err := n.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: cid, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		e, err := newExec(n.reach(resp.Url))
		if err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		var out syncBuffer
		errc := make(chan error, 1)
		go func() {
			errc <- e.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: pr, Stdout: &out, Stderr: io.Discard})
		}()
		// Attach follows the log from its end: type until the echo shows.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), "typed\n") && time.Now().Before(deadline) {
			fmt.Fprintln(pw, "typed")
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Fprintln(pw, "bye")
		pw.Close()
		if err := <-errc; err != nil || !strings.Contains(out.String(), "typed\n") {
			t.Errorf("%s: attach = %v, stdout %q, want nil and the typed line", name, err, out.String())
		}
	}

	spdyDialer := func(u *url.URL) httpstream.Dialer {
		tr, up, err := spdy.RoundTripperFor(&rest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
	}
	dialers := map[string]func(u *url.URL) httpstream.Dialer{
		"spdy": spdyDialer,
		"tunnel": func(u *url.URL) httpstream.Dialer {
			d, err := portforward.NewSPDYOverWebsocketDialer(u, &rest.Config{})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
	}
	for name, dial := range dialers {
		resp, err := n.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: sb, Port: []int32{8080}})
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(n.reach(resp.Url))
		stop, ready := make(chan struct{}), make(chan struct{})
		pf, err := portforward.NewOnAddresses(dial(u), []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- pf.ForwardPorts() }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("%s: ForwardPorts() = %v before ready", name, err)
		}
		ports, _ := pf.GetPorts()
		for i := range 2 { // two connections over one session
			c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "hello %d\n", i)
			got, _ := io.ReadAll(c)
			c.Close()
			if want := fmt.Sprintf("stream:hello %d\n", i); string(got) != want {
				t.Errorf("%s: port-forward connection %d got %q, want %q", name, i, got, want)
			}
		}
		close(stop)
		<-done
	}
}
