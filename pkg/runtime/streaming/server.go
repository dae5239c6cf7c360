package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sentinel errors; the runtime maps them to gRPC codes.
var (
	ErrInvalidRequest  = errors.New("streaming: invalid request")
	ErrTooManyRequests = errors.New("streaming: too many requests waiting for their client")
	ErrNotServing      = errors.New("streaming: server is not serving")
)

// TerminalSize is a terminal's size in characters, as a client's resize
// channel sends it.
type TerminalSize struct {
	Width  uint16
	Height uint16
}

// Runtime is what the server needs from a container runtime. Exec and
// Attach close stdout and stderr when done; a non-zero exit is an error
// with an `ExitStatus() int` method.
type Runtime interface {
	Exec(ctx context.Context, containerID string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error
	Attach(ctx context.Context, containerID string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error
	PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error
}

// Config configures a Server.
type Config struct {
	// Addr is the loopback address to listen on, e.g. 127.0.0.1:0.
	Addr    string
	Runtime Runtime
	Log     *slog.Logger // default: discard
	// TokenTTL is how long a URL waits for its client (default 1 min).
	TokenTTL time.Duration
	// StreamCreationTimeout bounds the wait for a client's SPDY streams
	// (default 30 s, as the kubelet's).
	StreamCreationTimeout time.Duration
	// IdleTimeout closes a connection with no traffic (default 4 h, as the
	// kubelet's streaming-connection-idle-timeout).
	IdleTimeout time.Duration
	Now         func() time.Time // default time.Now
}

// maxWaiting bounds the requests waiting for their client.
const maxWaiting = 1000

// Server serves exec, attach and port-forward sessions.
type Server struct {
	cfg   Config
	log   *slog.Logger
	cache *requestCache

	mu      sync.Mutex
	baseURL string // "" until Start
	active  sync.WaitGroup
}

// New checks cfg and returns a server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Runtime == nil {
		return nil, fmt.Errorf("%w: Config.Runtime is required", ErrInvalidRequest)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Minute
	}
	if cfg.StreamCreationTimeout <= 0 {
		cfg.StreamCreationTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 4 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Log, cache: newRequestCache(cfg.TokenTTL, maxWaiting)}, nil
}

// Start listens on cfg.Addr and serves in the background until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("streaming: listen on %s: %w", s.cfg.Addr, err)
	}
	s.setBase(ln.Addr())
	go func() {
		if err := s.serve(ctx, ln); err != nil {
			s.log.Error("streaming server stopped", "err", err)
		}
	}()
	return nil
}

// Serve serves on ln until ctx ends, then waits for open sessions to end
// (they end with ctx too). URLs are handed out once it has begun; Start
// has them ready when it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.setBase(ln.Addr())
	return s.serve(ctx, ln)
}

func (s *Server) setBase(addr net.Addr) {
	s.mu.Lock()
	s.baseURL = "http://" + addr.String()
	s.mu.Unlock()
}

func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		_ = srv.Close() // hijacked sessions end through their ctx
	}()
	err := srv.Serve(ln)
	<-stopped
	s.active.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// URL returns the server's base URL, "" before it listens.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Handler serves the session URLs.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{token}", s.serveExec)
	mux.HandleFunc("/attach/{token}", s.serveAttach)
	mux.HandleFunc("/portforward/{token}", s.servePortForward)
	return mux
}

// GetExec validates req and returns the URL its client must open.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: missing container id", ErrInvalidRequest)
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("%w: exec needs a command", ErrInvalidRequest)
	}
	if err := checkStdio(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	u, err := s.urlFor("exec", req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecResponse{Url: u}, nil
}

// GetAttach validates req and returns the URL its client must open.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: missing container id", ErrInvalidRequest)
	}
	if err := checkStdio(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	u, err := s.urlFor("attach", req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.AttachResponse{Url: u}, nil
}

// GetPortForward validates req and returns the URL its client must open.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("%w: missing pod sandbox id", ErrInvalidRequest)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("%w: port %d is out of range", ErrInvalidRequest, p)
		}
	}
	u, err := s.urlFor("portforward", req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PortForwardResponse{Url: u}, nil
}

// checkStdio applies the CRI rules for a session's streams.
func checkStdio(tty, stdin, stdout, stderr bool) error {
	if tty && stderr {
		return fmt.Errorf("%w: tty and stderr cannot both be true", ErrInvalidRequest)
	}
	if !stdin && !stdout && !stderr {
		return fmt.Errorf("%w: one of stdin, stdout, or stderr must be set", ErrInvalidRequest)
	}
	return nil
}

func (s *Server) urlFor(kind string, req any) (string, error) {
	base := s.URL()
	if base == "" {
		return "", ErrNotServing
	}
	token, err := s.cache.insert(req, s.cfg.Now())
	if err != nil {
		return "", err
	}
	return base + "/" + kind + "/" + url.PathEscape(token), nil
}

// consume takes the request behind the URL's token, answering 404 when it
// is unknown, used or expired.
func consume[T any](s *Server, w http.ResponseWriter, r *http.Request) (T, bool) {
	var zero T
	v, ok := s.cache.consume(r.PathValue("token"), s.cfg.Now())
	if !ok {
		http.Error(w, "streaming: unknown or expired session token: ask the kubelet again", http.StatusNotFound)
		return zero, false
	}
	req, ok := v.(T)
	if !ok {
		http.Error(w, "streaming: token belongs to another kind of session", http.StatusBadRequest)
		return zero, false
	}
	return req, true
}

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	req, ok := consume[*runtimeapi.ExecRequest](s, w, r)
	if !ok {
		return
	}
	opts := stdio{stdin: req.Stdin, stdout: req.Stdout, stderr: req.Stderr, tty: req.Tty}
	s.serveCommand(w, r, opts, func(ctx context.Context, st session) error {
		return s.cfg.Runtime.Exec(ctx, req.ContainerId, req.Cmd, st.stdin, st.stdout, st.stderr, req.Tty, st.resize)
	})
}

func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request) {
	req, ok := consume[*runtimeapi.AttachRequest](s, w, r)
	if !ok {
		return
	}
	opts := stdio{stdin: req.Stdin, stdout: req.Stdout, stderr: req.Stderr, tty: req.Tty}
	s.serveCommand(w, r, opts, func(ctx context.Context, st session) error {
		return s.cfg.Runtime.Attach(ctx, req.ContainerId, st.stdin, st.stdout, st.stderr, req.Tty, st.resize)
	})
}

func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	req, ok := consume[*runtimeapi.PortForwardRequest](s, w, r)
	if !ok {
		return
	}
	s.active.Add(1)
	defer s.active.Done()
	if isWebSocket(r) {
		s.serveWebSocketPortForward(w, r, req)
		return
	}
	s.serveSPDYPortForward(w, r, req.PodSandboxId)
}

// serveCommand runs one exec or attach session over the transport the
// client asked for.
func (s *Server) serveCommand(w http.ResponseWriter, r *http.Request, opts stdio, run runFunc) {
	s.active.Add(1)
	defer s.active.Done()
	if isWebSocket(r) {
		s.serveWebSocketCommand(w, r, opts, run)
		return
	}
	s.serveSPDYCommand(w, r, opts, run)
}
