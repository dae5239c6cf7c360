// Package e2e drives a real skiff binary with the real kubectl, as a user
// would, across the kubectl versions installed beside the default one.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var skiffBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	skiffBin = filepath.Join(dir, "skiff")
	// skiff-shim lands beside skiff, where the process runtime looks for it.
	build := exec.Command("go", "build", "-o", dir+"/", "../../cmd/...")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building skiff:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// kubectls returns the kubectl binaries to test: the default one and the
// versioned ones that lie beside it.
func kubectls(t *testing.T) map[string]string {
	def, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("e2e: no kubectl on PATH; install kubectl to run the end-to-end tests")
	}
	out := map[string]string{"default": def}
	real, err := filepath.EvalSymlinks(def)
	if err == nil {
		for _, v := range []string{"1.27", "1.29", "1.33"} {
			p := filepath.Join(filepath.Dir(real), "kubectl."+v)
			if _, err := os.Stat(p); err == nil {
				out[v] = p
			}
		}
	}
	return out
}

// server is a skiff server process.
type server struct {
	cmd        *exec.Cmd
	dataDir    string
	kubeconfig string
	args       []string
	log        *syncBuffer
	netns      string // when set, the server and kubectl run in this network namespace
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// startServer runs `skiff server --disable-agent` on loopback ports.
func startServer(t *testing.T, extra ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{dataDir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig")}
	s.args = append([]string{"server", "--data-dir", dir, "--disable-agent", "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--https-port", freePort(t), "--etcd-client-port", freePort(t), "--etcd-peer-port", freePort(t)}, extra...)
	s.start(t)
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) start(t testing.TB) {
	t.Helper()
	s.log = &syncBuffer{}
	s.cmd = exec.Command(skiffBin, s.args...)
	if s.netns != "" {
		// nsenter, unlike `ip netns exec`, keeps the host's /sys and so its cgroups.
		s.cmd = exec.Command("nsenter", append([]string{"--net=" + s.netns, skiffBin}, s.args...)...)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(s.log.String(), "skiff server ready") {
			return
		}
		if s.cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("skiff server did not become ready:\n%s", s.log.String())
}

// logTail is the end of the server's log, for failure messages.
func (s *server) logTail() string {
	l := s.log.String()
	if len(l) > 4000 {
		l = l[len(l)-4000:]
	}
	return l
}

// kill is kill -9: no chance to flush or clean up.
func (s *server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		s.cmd.Wait()
	}
}

// kubectl runs one kubectl command against s and returns its output.
func (s *server) kubectl(t *testing.T, bin string, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", s.kubeconfig}, args...)...)
	if s.netns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + s.netns, bin, "--kubeconfig", s.kubeconfig}, args...)...)
	}
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs kubectl and fails the test on error.
func (s *server) must(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := s.kubectl(t, bin, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// wantLines checks that out contains every fragment.
func wantIn(t *testing.T, what, out string, fragments ...string) {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(out, f) {
			t.Errorf("%s: output lacks %q:\n%s", what, f, out)
		}
	}
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
