package streaming

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime interprets the command's first word:
//
//	echo: copy stdin to stdout; split: "out" to stdout, "err" to stderr;
//	exit N: exit with N; size: print the first terminal size; fail: a
//	runtime error.
//
// Its port-forward answers one line on any port but 1, which it refuses.
type fakeRuntime struct {
	mu       sync.Mutex
	forwards []int32
}

type exitErr struct{ code int }

func (e exitErr) Error() string   { return "exit " + strconv.Itoa(e.code) }
func (e exitErr) ExitStatus() int { return e.code }

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	defer func() {
		for _, w := range []io.WriteCloser{stdout, stderr} {
			if w != nil {
				w.Close()
			}
		}
	}()
	switch cmd[0] {
	case "echo":
		if stdin == nil {
			return nil
		}
		_, err := io.Copy(stdout, stdin)
		return err
	case "split":
		fmt.Fprint(stdout, "out")
		fmt.Fprint(stderr, "err")
	case "exit":
		n, _ := strconv.Atoi(cmd[1])
		return exitErr{n}
	case "size":
		select {
		case sz := <-resize:
			fmt.Fprintf(stdout, "%dx%d tty=%v", sz.Width, sz.Height, tty)
		case <-ctx.Done():
			return ctx.Err()
		}
	case "size-now": // what the terminal size is as the command starts
		select {
		case sz := <-resize:
			fmt.Fprintf(stdout, "%dx%d", sz.Width, sz.Height)
		default:
			fmt.Fprint(stdout, "none")
		}
	case "fail":
		return errors.New("boom")
	case "wait":
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeRuntime) Attach(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan TerminalSize) error {
	return f.Exec(ctx, id, []string{"echo"}, stdin, stdout, stderr, tty, resize)
}

func (f *fakeRuntime) PortForward(ctx context.Context, sandbox string, port int32, stream io.ReadWriteCloser) error {
	f.mu.Lock()
	f.forwards = append(f.forwards, port)
	f.mu.Unlock()
	defer stream.Close()
	if port == 1 {
		return errors.New("connection refused")
	}
	line, err := bufio.NewReader(stream).ReadString('\n')
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stream, "%s:%d:%s", sandbox, port, line)
	return err
}

func startServer(t *testing.T, rt Runtime) *Server {
	t.Helper()
	s, err := New(Config{Runtime: rt, StreamCreationTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s.setBase(ln.Addr()) // as Serve does, before GetExec can race it
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
	})
	return s
}

// transports are the two ways kubectl runs remote commands.
var transports = []struct {
	name string
	exec func(t *testing.T, u string) remotecommand.Executor
}{
	{"spdy", func(t *testing.T, u string) remotecommand.Executor {
		pu, _ := url.Parse(u)
		e, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", pu)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}},
	{"websocket", func(t *testing.T, u string) remotecommand.Executor {
		e, err := remotecommand.NewWebSocketExecutor(&rest.Config{}, "GET", u)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}},
}

type sizeQueue struct {
	sizes chan remotecommand.TerminalSize
}

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.sizes
	if !ok {
		return nil
	}
	return &sz
}

func TestRemoteCommand(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	tests := []struct {
		name                 string
		cmd                  []string
		stdin                string
		tty                  bool
		wantOut, wantErr     string
		wantCode             int // -1: a non-exit error
		wantErrMessageSubstr string
	}{
		{name: "echo", cmd: []string{"echo"}, stdin: "hello\nworld", wantOut: "hello\nworld"},
		{name: "split", cmd: []string{"split"}, wantOut: "out", wantErr: "err"},
		{name: "exit 3", cmd: []string{"exit", "3"}, wantCode: 3},
		{name: "tty size", cmd: []string{"size"}, tty: true, wantOut: "120x40 tty=true"},
		{name: "tty size at start", cmd: []string{"size-now"}, tty: true, wantOut: "120x40"},
		{name: "runtime error", cmd: []string{"fail"}, wantCode: -1, wantErrMessageSubstr: "boom"},
	}
	for _, tr := range transports {
		for _, tc := range tests {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				req := &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: tc.cmd, Stdin: tc.stdin != "", Stdout: true, Stderr: !tc.tty, Tty: tc.tty}
				resp, err := s.GetExec(req)
				if err != nil {
					t.Fatal(err)
				}
				var out, errb bytes.Buffer
				opts := remotecommand.StreamOptions{Stdout: &out, Tty: tc.tty}
				if !tc.tty {
					opts.Stderr = &errb
				}
				if tc.stdin != "" {
					opts.Stdin = strings.NewReader(tc.stdin)
				}
				if tc.tty {
					q := sizeQueue{make(chan remotecommand.TerminalSize, 1)}
					q.sizes <- remotecommand.TerminalSize{Width: 120, Height: 40}
					defer close(q.sizes)
					opts.TerminalSizeQueue = q
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err = tr.exec(t, resp.Url).StreamWithContext(ctx, opts)
				var ce exec.CodeExitError
				switch {
				case tc.wantCode > 0:
					if !errors.As(err, &ce) || ce.Code != tc.wantCode {
						t.Errorf("Stream(%v) = %v, want exit code %d", tc.cmd, err, tc.wantCode)
					}
				case tc.wantCode < 0:
					if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), tc.wantErrMessageSubstr) {
						t.Errorf("Stream(%v) = %v, want an error containing %q", tc.cmd, err, tc.wantErrMessageSubstr)
					}
				case err != nil:
					t.Errorf("Stream(%v) = %v, want nil", tc.cmd, err)
				}
				if out.String() != tc.wantOut || errb.String() != tc.wantErr {
					t.Errorf("Stream(%v) stdout %q stderr %q, want %q %q", tc.cmd, out.String(), errb.String(), tc.wantOut, tc.wantErr)
				}
			})
		}
	}
}

// TestOlderProtocols: clients that only speak an older version still get
// their output; only v4 and later carry exit codes. (A channel.k8s.io
// client never closes stdin, so that version is not asked to echo.)
func TestOlderProtocols(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	executor := func(transport, proto, u string) remotecommand.Executor {
		if transport == "websocket" {
			e, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, "GET", u, proto)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		tr, up, err := spdy.RoundTripperFor(&rest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		pu, _ := url.Parse(u)
		e, err := remotecommand.NewSPDYExecutorForProtocols(tr, up, "POST", pu, proto)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, proto := range []string{protoV4, protoV3, protoV2, protoV1} {
		for _, transport := range []string{"spdy", "websocket"} {
			resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"split"}, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err = executor(transport, proto, resp.Url).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
			if err != nil || out.String() != "out" || errb.String() != "err" {
				t.Errorf("%s %s: Stream(split) = %v, stdout %q stderr %q, want nil, out, err", transport, proto, err, out.String(), errb.String())
			}
			if proto == protoV1 {
				continue
			}
			resp, err = s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"echo"}, Stdin: true, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			out.Reset()
			err = executor(transport, proto, resp.Url).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader("hi"), Stdout: &out})
			if err != nil || out.String() != "hi" {
				t.Errorf("%s %s: Stream(echo) = %v, stdout %q, want nil, %q", transport, proto, err, out.String(), "hi")
			}
		}
	}
}

func TestAttach(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	for _, tr := range transports {
		resp, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c", Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = tr.exec(t, resp.Url).StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader("typed"), Stdout: &out, Stderr: io.Discard})
		if err != nil || out.String() != "typed" {
			t.Errorf("%s: attach = %v, stdout %q, want nil, %q", tr.name, err, out.String(), "typed")
		}
	}
}

// TestClientGoneStopsCommand: a client that hangs up ends the command.
func TestClientGoneStopsCommand(t *testing.T) {
	rt := &fakeRuntime{}
	s := startServer(t, rt)
	for _, tr := range transports {
		resp, _ := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"wait"}, Stdout: true})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			errc <- tr.exec(t, resp.Url).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard})
		}()
		time.Sleep(50 * time.Millisecond) // let the session start; the check below does not depend on it
		cancel()
		select {
		case <-errc:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Stream did not return after its context ended", tr.name)
		}
	}
	// The server's cleanup (in startServer) waits for every session: it
	// returning proves the "wait" commands ended.
}

func TestTokens(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"echo"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	e := transports[0].exec(t, resp.Url)
	if err := e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
		t.Fatalf("first use = %v, want nil", err)
	}
	r, err := http.Post(resp.Url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("second use of %s = %d, want 404", resp.Url, r.StatusCode)
	}
	// A token of another kind of session is refused.
	pf, _ := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "sb"})
	u := strings.Replace(pf.Url, "/portforward/", "/exec/", 1)
	r, err = http.Post(u, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("port-forward token on /exec = %d, want 400", r.StatusCode)
	}
}

func TestCacheExpiry(t *testing.T) {
	c := newRequestCache(time.Minute, 2)
	t0 := time.Unix(1000, 0)
	a, err := c.insert("a", t0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.insert("b", t0)
	if _, err := c.insert("c", t0.Add(time.Second)); !errors.Is(err, ErrTooManyRequests) {
		t.Errorf("insert over max = %v, want ErrTooManyRequests", err)
	}
	if v, ok := c.consume(a, t0.Add(59*time.Second)); !ok || v != "a" {
		t.Errorf("consume(a) at 59s = %v, %v, want a, true", v, ok)
	}
	if _, ok := c.consume(a, t0.Add(59*time.Second)); ok {
		t.Errorf("consume(a) twice = true, want false (single use)")
	}
	if _, ok := c.consume(b, t0.Add(time.Minute)); ok {
		t.Errorf("consume(b) at 60s = true, want false (expired)")
	}
	if _, err := c.insert("d", t0.Add(2*time.Minute)); err != nil {
		t.Errorf("insert after expiry = %v, want room again", err)
	}
}

func TestValidation(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	execs := []struct {
		req  *runtimeapi.ExecRequest
		want error
	}{
		{&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true}, nil},
		{&runtimeapi.ExecRequest{Cmd: []string{"sh"}, Stdout: true}, ErrInvalidRequest},
		{&runtimeapi.ExecRequest{ContainerId: "c", Stdout: true}, ErrInvalidRequest},
		{&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}}, ErrInvalidRequest},
		{&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Tty: true, Stderr: true}, ErrInvalidRequest},
	}
	for _, tc := range execs {
		if _, err := s.GetExec(tc.req); !errors.Is(err, tc.want) {
			t.Errorf("GetExec(%v) = %v, want %v", tc.req, err, tc.want)
		}
	}
	if _, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c"}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("GetAttach(no streams) = %v, want ErrInvalidRequest", err)
	}
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("GetPortForward(no sandbox) = %v, want ErrInvalidRequest", err)
	}
	if _, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "s", Port: []int32{70000}}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("GetPortForward(port 70000) = %v, want ErrInvalidRequest", err)
	}
	resp, err := s.GetExec(execs[0].req)
	if err != nil || !strings.HasPrefix(resp.Url, "http://127.0.0.1:") {
		t.Errorf("GetExec = %v, %v, want a URL on 127.0.0.1", resp, err)
	}
	idle, _ := New(Config{Runtime: &fakeRuntime{}})
	if _, err := idle.GetExec(execs[0].req); !errors.Is(err, ErrNotServing) {
		t.Errorf("GetExec before Start = %v, want ErrNotServing", err)
	}
}

// forward runs client-go's port forwarder over dialer to remote port
// and sends one line through it.
func forward(t *testing.T, dialer httpstream.Dialer, port int, line string) (string, string) {
	t.Helper()
	stop, ready := make(chan struct{}), make(chan struct{})
	var errOut bytes.Buffer
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	defer func() {
		close(stop)
		<-done
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ForwardPorts() = %v before ready", err)
	}
	ports, _ := pf.GetPorts()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, line)
	got, _ := io.ReadAll(c)
	return string(got), errOut.String()
}

func TestPortForward(t *testing.T) {
	rt := &fakeRuntime{}
	s := startServer(t, rt)
	spdyDialer := func(u *url.URL) httpstream.Dialer {
		tr, up, err := spdy.RoundTripperFor(&rest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
	}
	tunnel := func(u *url.URL) httpstream.Dialer {
		d, err := portforward.NewSPDYOverWebsocketDialer(u, &rest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	dialers := []struct {
		name string
		make func(u *url.URL) httpstream.Dialer
	}{
		{"spdy", spdyDialer},
		{"tunnel", tunnel},
		{"fallback", func(u *url.URL) httpstream.Dialer {
			return portforward.NewFallbackDialer(tunnel(u), spdyDialer(u), func(err error) bool {
				return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
			})
		}},
	}
	for _, d := range dialers {
		resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "sb1", Port: []int32{8080}})
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(resp.Url)
		got, errOut := forward(t, d.make(u), 8080, "ping\n")
		if want := "sb1:8080:ping\n"; got != want {
			t.Errorf("%s: port-forward reply = %q (errors %q), want %q", d.name, got, errOut, want)
		}
	}
	// A refused port reaches the client on the error stream.
	resp, _ := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "sb1"})
	u, _ := url.Parse(resp.Url)
	conn, proto, err := spdyDialer(u).Dial(protoPortForward)
	if err != nil || proto != protoPortForward {
		t.Fatalf("Dial(%s) = %q, %v", protoPortForward, proto, err)
	}
	defer conn.Close()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", "1")
	h.Set("requestID", "0")
	errs, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	errs.Close()
	h.Set("streamType", "data")
	if _, err := conn.CreateStream(h); err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(errs)
	if want := "error forwarding port 1 to pod sb1: connection refused"; string(msg) != want {
		t.Errorf("error stream for a refused port = %q, want %q", msg, want)
	}
	h.Set("port", "0")
	h.Set("requestID", "1")
	if st, err := conn.CreateStream(h); err == nil {
		if _, err := st.Read(make([]byte, 1)); err == nil {
			t.Errorf("stream for port 0 accepted, want it reset")
		}
	}
}

// TestWebSocketPortForward speaks the plain WebSocket protocol: a data and
// an error channel per port, each starting with the port number.
func TestWebSocketPortForward(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	for _, proto := range []string{protoV4, protoV4Base64} {
		resp, _ := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "sb2"})
		u := "ws" + strings.TrimPrefix(resp.Url, "http") + "?ports=8080,1"
		ws, r, err := (&websocket.Dialer{Subprotocols: []string{proto}}).Dial(u, nil)
		if err != nil {
			t.Fatalf("%s: dial = %v (%v)", proto, err, r)
		}
		b64 := proto == protoV4Base64
		read := func() (byte, []byte) {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("%s: read: %v", proto, err)
			}
			if b64 {
				data, err := decodeBase64(msg[1:])
				if err != nil {
					t.Fatal(err)
				}
				return msg[0] - '0', data
			}
			return msg[0], msg[1:]
		}
		send := func(ch byte, data string) {
			msg := append([]byte{ch}, data...)
			typ := websocket.BinaryMessage
			if b64 {
				msg = append([]byte{'0' + ch}, encodeBase64([]byte(data))...)
				typ = websocket.TextMessage
			}
			if err := ws.WriteMessage(typ, msg); err != nil {
				t.Fatal(err)
			}
		}
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := map[byte][]byte{}
		for range 4 { // the port prefixes, in any order between ports
			ch, data := read()
			got[ch] = data
		}
		for ch, port := range map[byte]uint16{0: 8080, 1: 8080, 2: 1, 3: 1} {
			if len(got[ch]) != 2 || binary.LittleEndian.Uint16(got[ch]) != port {
				t.Errorf("%s: channel %d prefix = %v, want port %d", proto, ch, got[ch], port)
			}
		}
		send(0, "hello\n")
		msgs := map[byte]string{}
		for len(msgs) < 2 {
			ch, data := read()
			msgs[ch] += string(data)
		}
		if msgs[0] != "sb2:8080:hello\n" || !strings.Contains(msgs[3], "connection refused") {
			t.Errorf("%s: replies = %q, want data on 0 and the refusal on 3", proto, msgs)
		}
		ws.Close()
	}
}

// TestWebSocketRefusesUnknownProtocol: kubectl falls back to SPDY when the
// upgrade fails, so an unknown subprotocol must not be accepted.
func TestWebSocketRefusesUnknownProtocol(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	resp, _ := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"echo"}, Stdout: true})
	_, r, err := (&websocket.Dialer{Subprotocols: []string{"v9.channel.k8s.io"}}).Dial("ws"+strings.TrimPrefix(resp.Url, "http"), nil)
	if err == nil || r == nil || r.StatusCode != http.StatusBadRequest {
		t.Errorf("dial with an unknown subprotocol = %v (%v), want 400", err, r)
	}
}

func decodeBase64(b []byte) ([]byte, error) { return base64.StdEncoding.DecodeString(string(b)) }

func encodeBase64(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }
