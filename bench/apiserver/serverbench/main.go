// Command serverbench measures the real `skiff server` binary from the
// outside: how long it takes from exec to /readyz answering ok, on fresh data
// dirs and on an existing one, and how much resident memory the process holds
// once it has been idle for a while. It prints the figures; it asserts nothing,
// since both depend on the machine's load.
//
//	go run ./bench/apiserver/serverbench -bin /tmp/b/skiff -n 5
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
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
	"time"
)

func main() {
	bin := flag.String("bin", "", "path of the skiff binary (required)")
	n := flag.Int("n", 5, "starts per series")
	mode := flag.String("mode", "all", "startup, memory or all")
	idle := flag.Duration("idle", 10*time.Second, "how long the server idles before its RSS is read")
	agent := flag.Bool("agent", false, "also measure memory of the default server (with the agent), run inside a private network namespace")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "serverbench: pass -bin PATH of a built skiff (go build -o /tmp/b/ ./cmd/skiff)")
		os.Exit(2)
	}
	if err := run(*bin, *mode, *n, *idle, *agent); err != nil {
		fmt.Fprintln(os.Stderr, "serverbench:", err)
		os.Exit(1)
	}
}

func run(bin, mode string, n int, idle time.Duration, agent bool) error {
	if mode == "startup" || mode == "all" {
		if err := startup(bin, n); err != nil {
			return err
		}
	}
	if mode == "memory" || mode == "all" {
		if err := memory(bin, idle, false); err != nil {
			return err
		}
		if agent {
			if err := memory(bin, idle, true); err != nil {
				return err
			}
			if err := memoryJoinedAgent(bin, idle); err != nil {
				return err
			}
		}
	}
	return nil
}

// server is one running `skiff server` process.
type server struct {
	cmd     *exec.Cmd
	port    int
	started time.Time
	log     *os.File
	ready   chan struct{} // closed when the server logs that it is ready
	inner   time.Duration // the startup the server reports: from Run to ready, without exec and init
	exited  chan struct{} // closed when the process has exited
}

// start execs the binary on dir with fresh loopback ports. In a private
// network namespace (netns) nothing outside can reach it, so readiness then
// comes from the server's own log line.
func start(bin, dir string, netns bool, extra ...string) (*server, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	args := []string{"server", "--data-dir", dir,
		"--https-port", strconv.Itoa(ports[0]), "--etcd-client-port", strconv.Itoa(ports[1]),
		"--etcd-peer-port", strconv.Itoa(ports[2]),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1"}
	args = append(args, extra...)
	var cmd *exec.Cmd
	if netns {
		script := `ip link set lo up && exec "$0" "$@"`
		cmd = exec.Command("unshare", append([]string{"-n", "--", "sh", "-c", script, bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout = logf
	cmd.Stderr = io.MultiWriter(logf, pw)
	s := &server{cmd: cmd, port: ports[0], log: logf, ready: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		closed := false
		for sc.Scan() {
			if line := sc.Text(); !closed && strings.Contains(line, "skiff server ready") {
				if _, v, ok := strings.Cut(line, "startup="); ok {
					s.inner, _ = time.ParseDuration(strings.Fields(v)[0])
				}
				close(s.ready)
				closed = true
			}
		}
	}()
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); pw.Close(); close(s.exited) }()
	return s, nil
}

// waitReadyz polls /readyz until it says ok and returns the time from exec.
func (s *server) waitReadyz(timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", s.port)
	deadline := s.started.Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return time.Since(s.started), nil
			}
		}
		select {
		case <-s.exited:
			return 0, fmt.Errorf("server exited: %v (log %s)", s.cmd.ProcessState, s.log.Name())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("/readyz not ok after %v (log %s)", timeout, s.log.Name())
}

// stop sends SIGTERM and waits; SIGKILL after 15 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.log.Close()
}

func startup(bin string, n int) error {
	var fresh, freshInner []time.Duration
	for i := 0; i < n; i++ {
		dir, err := os.MkdirTemp("", "skiff-startup-")
		if err != nil {
			return err
		}
		d, inner, err := startOnce(bin, dir)
		os.RemoveAll(dir)
		if err != nil {
			return err
		}
		fresh, freshInner = append(fresh, d), append(freshInner, inner)
	}
	report("startup to /readyz ok, fresh data dir", fresh)
	report("  of which in server.Run (as logged)", freshInner)

	dir, err := os.MkdirTemp("", "skiff-startup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, _, err := startOnce(bin, dir); err != nil { // creates certificates and etcd data
		return err
	}
	var existing, existingInner []time.Duration
	for i := 0; i < n; i++ {
		d, inner, err := startOnce(bin, dir)
		if err != nil {
			return err
		}
		existing, existingInner = append(existing, d), append(existingInner, inner)
	}
	report("startup to /readyz ok, existing data dir", existing)
	report("  of which in server.Run (as logged)", existingInner)
	return nil
}

// startOnce returns the time from exec to /readyz ok and the startup the
// server logged.
func startOnce(bin, dir string) (time.Duration, time.Duration, error) {
	s, err := start(bin, dir, false, "--disable-agent")
	if err != nil {
		return 0, 0, err
	}
	defer s.stop()
	d, err := s.waitReadyz(60 * time.Second)
	if err != nil {
		return 0, 0, err
	}
	select {
	case <-s.ready:
	case <-time.After(5 * time.Second):
	}
	return d, s.inner, nil
}

func report(what string, ds []time.Duration) {
	slices.Sort(ds)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
	fmt.Printf("%s: n=%d min=%s median=%s max=%s\n", what, len(ds), ms(ds[0]), ms(ds[len(ds)/2]), ms(ds[len(ds)-1]))
}

// memory starts a server on a fresh data dir, lets it idle, and prints the
// resident set from /proc.
func memory(bin string, idle time.Duration, withAgent bool) error {
	dir, err := os.MkdirTemp("", "skiff-memory-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var s *server
	what := "idle RSS, --disable-agent (etcd, API server, scheduler, controllers)"
	if withAgent {
		what = "idle RSS, default with agent (own network namespace)"
		s, err = start(bin, dir, true)
	} else {
		s, err = start(bin, dir, false, "--disable-agent")
	}
	if err != nil {
		return err
	}
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case <-s.ready:
	case <-s.exited:
		return fmt.Errorf("server exited: %v (log %s)", s.cmd.ProcessState, s.log.Name())
	case <-ctx.Done():
		return fmt.Errorf("server not ready after 60s (log %s)", s.log.Name())
	}
	select {
	case <-s.exited:
		return fmt.Errorf("server exited while idle: %v (log %s)", s.cmd.ProcessState, s.log.Name())
	case <-time.After(idle):
	}
	st, err := procStatus(s.cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("%s after %v: VmRSS=%s RssAnon=%s RssFile=%s VmHWM=%s threads=%s\n",
		what, idle, st["VmRSS"], st["RssAnon"], st["RssFile"], st["VmHWM"], st["Threads"])
	return nil
}

// memoryJoinedAgent measures `skiff agent` alone: in a private network
// namespace a server without agent starts, a `skiff agent` joins it with the
// join token, and the agent's RSS is read after it idled.
func memoryJoinedAgent(bin string, idle time.Duration) error {
	dir, err := os.MkdirTemp("", "skiff-memory-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	srv := filepath.Join(dir, "server")
	// The server runs from a copy of the binary: on one machine two processes
	// of one file share its pages, which then count in both and cannot be
	// given back by either, unlike an agent on a machine of its own.
	serverBin := filepath.Join(dir, "skiff-server")
	if out, err := exec.Command("cp", bin, serverBin).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v: %s", bin, err, out)
	}
	// The shell starts the server in the background, waits for its ready
	// line, then becomes the agent, so the process we hold is the agent.
	script := `ip link set lo up &&
"$6" server --data-dir "$1" --https-port "$2" --etcd-client-port "$3" --etcd-peer-port "$4" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --disable-agent >"$1.log" 2>&1 &
i=0; until grep -q "skiff server ready" "$1.log" 2>/dev/null; do i=$((i+1)); [ $i -gt 600 ] && exit 3; sleep 0.1; done
exec "$0" agent --server "https://127.0.0.1:$2" --token "$(cat "$1/join-token")" --data-dir "$1-agent" \
	--node-name idle-agent --node-ip 127.0.0.1 --kubelet-port "$5"`
	cmd := exec.Command("unshare", "-n", "--", "sh", "-c", script, bin, srv,
		strconv.Itoa(ports[0]), strconv.Itoa(ports[1]), strconv.Itoa(ports[2]), strconv.Itoa(ports[3]), serverBin)
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		_ = exec.Command("pkill", "-f", "--data-dir "+srv+" ").Run()
	}()
	// The agent is running once its process image is skiff, not sh.
	deadline := time.Now().Add(60 * time.Second)
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		if filepath.Base(exe) == filepath.Base(bin) {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("agent set-up failed: %v (log %s)", cmd.ProcessState, logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not start within 60s (log %s)", logf.Name())
		}
	}
	select {
	case <-exited:
		return fmt.Errorf("agent exited while idle: %v (log %s)", cmd.ProcessState, logf.Name())
	case <-time.After(idle):
	}
	st, err := procStatus(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("idle RSS, `skiff agent` joined to a server (own network namespace) after %v: VmRSS=%s RssAnon=%s RssFile=%s VmHWM=%s threads=%s\n",
		idle, st["VmRSS"], st["RssAnon"], st["RssFile"], st["VmHWM"], st["Threads"])
	return nil
}

func procStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	if out["VmRSS"] == "" {
		return nil, errors.New("no VmRSS in /proc status")
	}
	return out, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
