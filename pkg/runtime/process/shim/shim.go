// Package shim is the small program that parents one container's process
// for the process runtime: it enters the pod's namespaces, mounts the
// volumes, starts the process in its cgroup, writes its output as a CRI log
// and records how it ended. It is kept apart from the runtime so that a
// dedicated shim binary links only this package and stays small.
package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-org/skiff/pkg/cgroups"
)

// Spec is everything the shim needs, written by the runtime to
// <container dir>/shim.json.
type Spec struct {
	Argv       []string       `json:"argv"`
	Env        []string       `json:"env,omitempty"`
	WorkDir    string         `json:"workDir,omitempty"`
	UID        *uint32        `json:"uid,omitempty"`
	GID        *uint32        `json:"gid,omitempty"`
	Groups     []uint32       `json:"groups,omitempty"`
	Isolate    bool           `json:"isolate"`         // root: namespaces and mounts
	NetNS      string         `json:"netns,omitempty"` // "" = the host's
	Hostname   string         `json:"hostname,omitempty"`
	Mounts     []Mount        `json:"mounts,omitempty"`
	LogPath    string         `json:"logPath"`
	Stdin      bool           `json:"stdin,omitempty"`
	Cgroup     *cgroups.Group `json:"cgroup,omitempty"`
	ShimCgroup *cgroups.Group `json:"shimCgroup,omitempty"`
}

type Mount struct {
	Host        string `json:"host"`
	Container   string `json:"container"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	Propagation int32  `json:"propagation,omitempty"` // CRI MountPropagation
}

// Report is what the shim tells the runtime on fd 3 once the container
// process has started, or why it could not.
type Report struct {
	Pid    int    `json:"pid,omitempty"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Main is the body of the hidden `skiff runtime-shim <container dir>`
// subcommand. It sets up the container's namespaces and mounts, starts the
// container's process, reports its pid on fd 3, then stays as the process's
// parent: it copies its output into the CRI log and records how it ended.
func Main(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: runtime-shim <container dir>")
		return 2
	}
	dir := args[0]
	syncFile := os.NewFile(3, "sync")
	report := func(rep Report) {
		if syncFile != nil {
			_ = json.NewEncoder(syncFile).Encode(rep)
			syncFile.Close()
			syncFile = nil
		}
	}
	var spec Spec
	if err := ReadJSON(filepath.Join(dir, "shim.json"), &spec); err != nil {
		report(Report{Reason: "StartError", Error: err.Error()})
		return 1
	}
	// Namespace changes apply to this thread; the child is forked from it.
	runtime.LockOSThread()
	if spec.Isolate {
		if err := isolate(dir, &spec); err != nil {
			report(Report{Reason: "StartError", Error: err.Error()})
			return 1
		}
	}
	path, err := LookPath(spec.Argv[0], EnvValue(spec.Env, "PATH"))
	if err != nil {
		report(Report{Reason: "StartError", Error: err.Error()})
		return 1
	}
	log, err := openCRILog(spec.LogPath, time.Now)
	if err != nil {
		report(Report{Reason: "StartError", Error: fmt.Sprintf("open log %s: %v", spec.LogPath, err)})
		return 1
	}
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	cmd := &exec.Cmd{Path: path, Args: spec.Argv, Env: spec.Env, Dir: spec.WorkDir, Stdout: outW, Stderr: errW}
	if spec.Stdin {
		// O_RDWR keeps the fifo open so the process sees no EOF between
		// attaches.
		if f, err := os.OpenFile(filepath.Join(dir, "stdin"), os.O_RDWR, 0); err == nil {
			cmd.Stdin = f
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if spec.UID != nil {
		cred := &syscall.Credential{Uid: *spec.UID, Groups: spec.Groups}
		if spec.GID != nil {
			cred.Gid = *spec.GID
		}
		cmd.SysProcAttr.Credential = cred
	}
	// Catch, rather than ignore, the usual signals: an ignored disposition
	// would be inherited by the container's process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGPIPE)
	// Join the container's cgroup just for the fork, so the child starts
	// inside it (no window outside its limits), then step out.
	if spec.Cgroup != nil {
		if err := spec.Cgroup.Add(os.Getpid()); err != nil {
			report(Report{Reason: "StartError", Error: err.Error()})
			return 1
		}
	}
	err = cmd.Start()
	if spec.ShimCgroup != nil {
		_ = spec.ShimCgroup.Add(os.Getpid())
	}
	outW.Close()
	errW.Close()
	if err != nil {
		report(Report{Reason: "StartError", Error: err.Error()})
		return 1
	}
	pid := cmd.Process.Pid
	start, _ := ProcStart(pid)
	st := Status{State: "running", Pid: pid, PidStart: start, ShimPid: os.Getpid(), StartedAt: time.Now().UnixNano()}
	if err := WriteJSON(filepath.Join(dir, "status.json"), st); err != nil {
		_ = cmd.Process.Kill()
		report(Report{Reason: "StartError", Error: err.Error()})
		return 1
	}
	report(Report{Pid: pid})

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); log.copyFrom("stdout", outR) }()
	go func() { defer wg.Done(); log.copyFrom("stderr", errR) }()
	go func() {
		for s := range sigs {
			if s == syscall.SIGUSR1 {
				_ = log.reopen()
			}
		}
	}()
	werr := cmd.Wait()
	finished := time.Now()
	// The container ends with its main process: anything it left behind
	// goes too, as it would with its pid namespace.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if spec.Cgroup != nil {
		for _, p := range spec.Cgroup.Pids() {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	wg.Wait()
	_ = log.close()

	st.State = "exited"
	st.FinishedAt = finished.UnixNano()
	st.ExitCode, st.Reason = ExitOf(cmd.ProcessState, werr)
	if spec.Cgroup != nil && spec.Cgroup.OOMKills() > 0 {
		st.Reason = "OOMKilled"
	}
	if err := WriteJSON(filepath.Join(dir, "status.json"), st); err != nil {
		fmt.Fprintln(os.Stderr, "runtime-shim: record exit:", err)
		return 1
	}
	return 0
}

// ExitOf turns a wait result into the CRI exit code (128+signal for a
// signalled process) and reason.
func ExitOf(ps *os.ProcessState, err error) (int32, string) {
	if ps == nil {
		return 255, "Error"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	code := int32(ps.ExitCode())
	if ok && ws.Signaled() {
		code = 128 + int32(ws.Signal())
	}
	if code == 0 && err == nil {
		return 0, "Completed"
	}
	return code, "Error"
}

// isolate enters the pod's network namespace, gives the container its own
// UTS and mount namespaces and performs its mounts.
func isolate(dir string, spec *Spec) error {
	if spec.NetNS != "" {
		fd, err := unix.Open(spec.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open pod netns: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("enter pod netns: %w", err)
		}
	}
	flags := unix.CLONE_NEWNS
	if spec.Hostname != "" {
		flags |= unix.CLONE_NEWUTS
	}
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	// Slave, not shared: nothing mounted here leaks to the host, while the
	// host's unmounts (of other pods' volumes) still reach this copy.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / rslave: %w", err)
	}
	detachNetnsMounts()
	mounts := append([]Mount(nil), spec.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(mounts[i].Container), "/") < strings.Count(filepath.Clean(mounts[j].Container), "/")
	})
	var created []string
	defer func() {
		if len(created) > 0 {
			_ = WriteJSON(filepath.Join(dir, "mountpoints.json"), created)
		}
	}()
	for _, m := range mounts {
		fi, err := os.Stat(m.Host)
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Host, err)
		}
		c, err := ensureMountpoint(m.Container, fi.IsDir())
		created = append(created, c...)
		if err != nil {
			return fmt.Errorf("mountpoint %s: %w", m.Container, err)
		}
		if err := unix.Mount(m.Host, m.Container, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Host, m.Container, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", m.Container, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("read-only %s: %w", m.Container, err)
			}
		}
		prop := uintptr(unix.MS_PRIVATE)
		switch m.Propagation {
		case 1: // PROPAGATION_HOST_TO_CONTAINER
			prop = unix.MS_SLAVE
		case 2: // PROPAGATION_BIDIRECTIONAL
			prop = unix.MS_SHARED
		}
		if err := unix.Mount("", m.Container, "", prop|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("propagation of %s: %w", m.Container, err)
		}
	}
	return nil
}

// ensureMountpoint creates path (a directory, or an empty file when the
// source is a file) if it is missing, returning what it created, outermost
// first, so the runtime can remove exactly that when the container goes.
func ensureMountpoint(path string, dir bool) ([]string, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, nil
	}
	var missing []string
	for p := filepath.Dir(path); p != "/" && p != "."; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append([]string{p}, missing...)
	}
	var created []string
	for _, p := range missing {
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return created, err
		}
		created = append(created, p)
	}
	if dir {
		if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return created, err
		}
	} else {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return created, err
		}
		f.Close()
	}
	return append(created, path), nil
}

// detachNetnsMounts drops, in this mount namespace only, the bind mounts
// that pin other pods' network namespaces, so a long-lived container does
// not keep those namespaces alive after their pods are gone.
func detachNetnsMounts() {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var targets []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := s.Text()
		i := strings.Index(line, " - ")
		if i < 0 || !strings.HasPrefix(line[i+3:], "nsfs ") {
			continue
		}
		if f := strings.Fields(line[:i]); len(f) >= 5 {
			targets = append(targets, unescapeMountPath(f[4]))
		}
	}
	for _, t := range targets {
		_ = unix.Unmount(t, unix.MNT_DETACH)
	}
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func EnvValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// DefaultPath is used when neither the container nor the host sets PATH.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LookPath resolves a command on the container's PATH, else the host's.
func LookPath(file, pathEnv string) (string, error) {
	if pathEnv == "" {
		pathEnv = os.Getenv("PATH")
	}
	if pathEnv == "" {
		pathEnv = DefaultPath
	}
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("%s: %w", file, err)
		}
		return file, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: executable file not found in $PATH (%s)", file, pathEnv)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// Status is the container's life as the shim saw it.
type Status struct {
	State      string `json:"state"` // "running" or "exited"; absent file: created
	Pid        int    `json:"pid,omitempty"`
	PidStart   uint64 `json:"pidStart,omitempty"` // /proc/<pid>/stat starttime, to tell a reused pid
	ShimPid    int    `json:"shimPid,omitempty"`
	StartedAt  int64  `json:"startedAt,omitempty"`
	FinishedAt int64  `json:"finishedAt,omitempty"`
	ExitCode   int32  `json:"exitCode"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
}

// WriteJSON replaces file atomically.
func WriteJSON(file string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteAtomic(file, b)
}

func WriteAtomic(file string, b []byte) error {
	tmp := file + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func ReadJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ProcStart returns field 22 (starttime) of /proc/<pid>/stat; zombies count
// as gone.
func ProcStart(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22 → f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}
