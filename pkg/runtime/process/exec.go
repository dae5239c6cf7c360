package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-org/skiff/pkg/podnet"
	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
	"github.com/skiff-org/skiff/pkg/runtime/streaming"
)

// maxExecOutput caps what ExecSync keeps of each stream, as the kubelet
// does for probe output.
const maxExecOutput = 16 << 20

// ExitError is a command that ran and exited non-zero.
type ExitError struct{ Code int }

func (e *ExitError) Error() string {
	return "command terminated with exit code " + strconv.Itoa(e.Code)
}

// ExitStatus returns the exit code (the interface streaming servers test).
func (e *ExitError) ExitStatus() int { return e.Code }

// running returns a container and its status if its process runs.
func (r *Runtime) running(id string) (*containerMeta, shim.Status, error) {
	c, err := r.container(id)
	if err != nil {
		return nil, shim.Status{}, err
	}
	st := r.status(id)
	if st.State != "running" {
		return nil, st, fmt.Errorf("%w: container %s is not running", ErrState, id)
	}
	return c, st, nil
}

// execCmd builds a command that runs like the container's own process:
// its env, working dir and user.
func (r *Runtime) execCmd(c *containerMeta, argv []string) *exec.Cmd {
	spec := r.shimSpecFor(c, &sandboxMeta{HostNetwork: true}, argv)
	cmd := &exec.Cmd{Args: argv, Env: spec.Env, Dir: spec.WorkDir, SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if spec.UID != nil {
		cred := &syscall.Credential{Uid: *spec.UID, Groups: spec.Groups}
		if spec.GID != nil {
			cred.Gid = *spec.GID
		}
		cmd.SysProcAttr.Credential = cred
	}
	return cmd
}

// startIn starts cmd inside the mount, network and UTS namespaces of the
// process pid. The fork happens on a thread that has switched namespaces;
// that thread is never handed back to Go's scheduler, so it dies with the
// goroutine.
func (r *Runtime) startIn(c *containerMeta, pid int, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			if r.root {
				// A thread sharing its fs info cannot change mount namespace.
				if err := unix.Unshare(unix.CLONE_FS); err != nil {
					return fmt.Errorf("unshare fs: %w", err)
				}
				for _, ns := range []struct {
					name string
					kind int
				}{{"net", unix.CLONE_NEWNET}, {"uts", unix.CLONE_NEWUTS}, {"mnt", unix.CLONE_NEWNS}} {
					if sameNS(pid, ns.name) {
						continue
					}
					fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
					if err != nil {
						return fmt.Errorf("open %s namespace of %d: %w", ns.name, pid, err)
					}
					err = unix.Setns(fd, ns.kind)
					unix.Close(fd)
					if err != nil {
						return fmt.Errorf("enter %s namespace of %d: %w", ns.name, pid, err)
					}
				}
			}
			path, err := shim.LookPath(cmd.Args[0], shim.EnvValue(cmd.Env, "PATH"))
			if err != nil {
				return err
			}
			cmd.Path = path
			return cmd.Start()
		}()
	}()
	if err := <-errc; err != nil {
		return err
	}
	if c.Cgroup != nil {
		_ = c.Cgroup.Add(cmd.Process.Pid)
	}
	return nil
}

func sameNS(pid int, name string) bool {
	a, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
	b, err2 := os.Readlink("/proc/thread-self/ns/" + name)
	return err1 == nil && err2 == nil && a == b
}

// limitedBuffer keeps at most max bytes.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// ExecSync implements CRI: runs a command in the container and returns its
// output and exit code (what exec probes use).
func (r *Runtime) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "process: exec needs a command")
	}
	c, st, err := r.running(req.GetContainerId())
	if err != nil {
		return nil, grpcErr(err)
	}
	if t := req.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	stdout := &limitedBuffer{max: maxExecOutput}
	stderr := &limitedBuffer{max: maxExecOutput}
	cmd := r.execCmd(c, req.GetCmd())
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := r.startIn(c, st.Pid, cmd); err != nil {
		// Like a shell: a command that cannot be run exits 126/127.
		return &runtimeapi.ExecSyncResponse{Stderr: []byte(err.Error() + "\n"), ExitCode: 127}, nil
	}
	code, err := waitCtx(ctx, cmd)
	if err != nil {
		return nil, status.Errorf(codes.DeadlineExceeded, "process: command %q timed out after %ds", req.GetCmd(), req.GetTimeout())
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

// waitCtx waits for cmd, killing its process group when ctx ends first.
func waitCtx(ctx context.Context, cmd *exec.Cmd) (int, error) {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	_ = cmd.Wait()
	close(done)
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	code, _ := shim.ExitOf(cmd.ProcessState, nil)
	return int(code), nil
}

// The CRI streaming calls return a URL of the runtime's streaming server,
// where the kubelet sends the client's upgraded connection.

// Exec implements CRI.
func (r *Runtime) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if _, _, err := r.running(req.GetContainerId()); err != nil {
		return nil, grpcErr(err)
	}
	resp, err := r.stream.GetExec(req)
	return resp, streamErr(err)
}

// Attach implements CRI.
func (r *Runtime) Attach(_ context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if _, _, err := r.running(req.GetContainerId()); err != nil {
		return nil, grpcErr(err)
	}
	resp, err := r.stream.GetAttach(req)
	return resp, streamErr(err)
}

// PortForward implements CRI.
func (r *Runtime) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if _, err := r.sandbox(req.GetPodSandboxId()); err != nil {
		return nil, grpcErr(err)
	}
	resp, err := r.stream.GetPortForward(req)
	return resp, streamErr(err)
}

// streamErr maps the streaming server's errors to gRPC codes.
func streamErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, streaming.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, streaming.ErrTooManyRequests):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, streaming.ErrNotServing):
		return status.Error(codes.Unavailable, err.Error())
	}
	return grpcErr(err)
}

// TerminalSize is a terminal's size in characters (the streaming server's
// type, so Streamer is its Runtime as it is).
type TerminalSize = streaming.TerminalSize

// Streamer gives a streaming server (kubectl exec/attach/port-forward) the
// runtime's primitives. It is a separate type because *Runtime's Exec,
// Attach and PortForward names are taken by the CRI methods.
type Streamer struct{ r *Runtime }

var _ streaming.Runtime = (*Streamer)(nil)

// Streamer returns the streaming primitives of r.
func (r *Runtime) Streamer() *Streamer { return &Streamer{r: r} }

// Exec runs cmd in the container, streaming its stdio; with tty it gets a
// pseudo-terminal (stderr is then merged into stdout). A non-zero exit is
// returned as *ExitError.
func (s *Streamer) Exec(ctx context.Context, containerID string, argv []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	r := s.r
	if len(argv) == 0 {
		return errors.New("process: exec needs a command")
	}
	c, st, err := r.running(containerID)
	if err != nil {
		return err
	}
	cmd := r.execCmd(c, argv)
	var ptm *os.File
	var copies sync.WaitGroup
	stop := make(chan struct{})
	defer close(stop)
	if tty {
		m, slave, err := openPty()
		if err != nil {
			return err
		}
		ptm = m
		defer ptm.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: cmd.SysProcAttr.Credential}
		err = r.startIn(c, st.Pid, cmd)
		slave.Close()
		if err != nil {
			return err
		}
		if stdin != nil {
			go func() { _, _ = io.Copy(ptm, stdin) }()
		}
		if stdout != nil {
			copies.Add(1)
			go func() { defer copies.Done(); _, _ = io.Copy(stdout, ptm) }()
		}
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-stop:
					return
				case sz, ok := <-resize:
					if !ok {
						return
					}
					if rc, err := ptm.SyscallConn(); err == nil {
						_ = rc.Control(func(fd uintptr) {
							_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
						})
					}
				}
			}
		}()
	} else {
		if stdin != nil {
			in, err := cmd.StdinPipe()
			if err != nil {
				return err
			}
			go func() { _, _ = io.Copy(in, stdin); in.Close() }()
		}
		if stdout != nil {
			cmd.Stdout = stdout
		}
		if stderr != nil {
			cmd.Stderr = stderr
		}
		if err := r.startIn(c, st.Pid, cmd); err != nil {
			return err
		}
	}
	code, err := waitCtx(ctx, cmd)
	if ptm != nil {
		copies.Wait() // the pty reports EIO once the last writer is gone
	}
	closeAll(stdout, stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

func closeAll(ws ...io.WriteCloser) {
	for _, w := range ws {
		if w != nil {
			_ = w.Close()
		}
	}
}

// openPty allocates a pseudo-terminal pair.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("process: open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("process: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("process: pty number: %w", err)
	}
	sl, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("process: open pty slave: %w", err)
	}
	return m, sl, nil
}

// Attach connects to the container's main process: stdin goes to its stdin
// (when the container was created with stdin), its output is followed from
// the log as it is written. It returns when the container exits or ctx ends.
func (s *Streamer) Attach(ctx context.Context, containerID string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	r := s.r
	c, _, err := r.running(containerID)
	if err != nil {
		return err
	}
	defer closeAll(stdout, stderr)
	if stdin != nil && c.config.GetStdin() {
		fifo, err := os.OpenFile(filepath.Join(r.containerDir(c.ID), "stdin"), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		go func() { _, _ = io.Copy(fifo, stdin); fifo.Close() }()
	}
	f, err := os.Open(c.LogPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	var pending []byte
	buf := make([]byte, 32*1024)
	for {
		n, _ := f.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			if _, stream, partial, content, ok := shim.ParseCRILine(pending[:i]); ok {
				w := stdout
				if stream == "stderr" && !tty {
					w = stderr
				}
				if w != nil {
					if !partial {
						content = append(content, '\n')
					}
					_, _ = w.Write(content)
				}
			}
			pending = pending[i+1:]
		}
		if n > 0 {
			continue
		}
		if r.status(c.ID).State != "running" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PortForward dials 127.0.0.1:port inside the pod's network namespace and
// copies between the connection and stream until either side closes.
func (s *Streamer) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	r := s.r
	sb, err := r.sandbox(podSandboxID)
	if err != nil {
		return err
	}
	defer stream.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var conn net.Conn
	dial := func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	}
	if sb.NetNS != "" {
		err = podnet.Do(sb.NetNS, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return fmt.Errorf("process: port-forward to %s in pod %s: %w", addr, podSandboxID, err)
	}
	defer conn.Close()
	go func() {
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	// The pod's side closing ends the forward; the client closing its side
	// only half-closes, so the reply still comes back.
	done := make(chan struct{})
	go func() { _, _ = io.Copy(stream, conn); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
