package streaming

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Port-forward protocol names.
const (
	protoPortForward = "portforward.k8s.io"
	// protoTunnel is SPDY port-forward carried in WebSocket binary
	// messages: what kubectl 1.30 and later ask for first.
	protoTunnel = "SPDY/3.1+" + protoPortForward
)

// wsPortForwardProtocols are the WebSocket subprotocols served for
// port-forward, in preference order.
var wsPortForwardProtocols = []string{protoTunnel, protoV4, protoV4Base64, protoV1, protoV1Base64}

// Port-forward stream headers.
const (
	headerPort      = "port"
	headerRequestID = "requestID"
)

// serveSPDYPortForward serves port-forward over SPDY.
func (s *Server) serveSPDYPortForward(w http.ResponseWriter, r *http.Request, sandboxID string) {
	done := make(chan struct{})
	defer close(done)
	conn, _, streams := upgradeSPDY(w, r, []string{protoPortForward}, done, checkPortStream)
	if conn == nil {
		return
	}
	s.portForwardStreams(r.Context(), conn, streams, sandboxID)
}

// checkPortStream rejects a stream whose headers are not a port-forward's.
func checkPortStream(st httpstream.Stream) error {
	h := st.Headers()
	if _, err := parsePort(h.Get(headerPort)); err != nil {
		return err
	}
	switch t := h.Get("streamType"); t {
	case streamTypeData, streamTypeError:
		return nil
	default:
		return fmt.Errorf("%w: invalid stream type %q", ErrInvalidRequest, t)
	}
}

func parsePort(s string) (int32, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("%w: invalid port %q: must be 1-65535", ErrInvalidRequest, s)
	}
	return int32(p), nil
}

// streamPair is one forwarded connection: the client opens an error and a
// data stream with the same request id.
type streamPair struct {
	port    int32
	data    httpstream.Stream
	errs    httpstream.Stream
	created time.Time
}

// pairKey is the request id joining a pair. Old clients send none: then
// the data stream is the one opened right after the error stream.
func pairKey(st httpstream.Stream) string {
	if id := st.Headers().Get(headerRequestID); id != "" {
		return id
	}
	id := st.Identifier()
	if st.Headers().Get("streamType") == streamTypeData {
		id -= 2
	}
	return "stream-" + strconv.FormatUint(uint64(id), 10)
}

// portForwardStreams pairs the client's streams and forwards each pair
// until the connection closes.
func (s *Server) portForwardStreams(ctx context.Context, conn httpstream.Connection, streams <-chan newStream, sandboxID string) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		_ = conn.Close()
		wg.Wait()
	}()
	conn.SetIdleTimeout(s.cfg.IdleTimeout)
	pairs := map[string]*streamPair{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-conn.CloseChan():
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			for key, p := range expiredPairs(pairs, s.cfg.Now(), s.cfg.StreamCreationTimeout) {
				s.log.Info("port-forward stream pair incomplete: dropping it", "requestID", key)
				for _, st := range []httpstream.Stream{p.data, p.errs} {
					if st != nil {
						_ = st.Reset()
					}
				}
				delete(pairs, key)
			}
		case ns := <-streams:
			key := pairKey(ns.stream)
			p := pairs[key]
			if p == nil {
				port, _ := parsePort(ns.stream.Headers().Get(headerPort)) // checked on arrival
				p = &streamPair{port: port, created: s.cfg.Now()}
				pairs[key] = p
			}
			if ns.stream.Headers().Get("streamType") == streamTypeData {
				p.data = ns.stream
			} else {
				p.errs = ns.stream
			}
			if p.data == nil || p.errs == nil {
				continue
			}
			delete(pairs, key)
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.forwardPair(ctx, conn, sandboxID, p)
			}()
		}
	}
}

// expiredPairs returns the pairs still incomplete after timeout.
func expiredPairs(pairs map[string]*streamPair, now time.Time, timeout time.Duration) map[string]*streamPair {
	out := map[string]*streamPair{}
	for k, p := range pairs {
		if now.Sub(p.created) >= timeout {
			out[k] = p
		}
	}
	return out
}

func (s *Server) forwardPair(ctx context.Context, conn httpstream.Connection, sandboxID string, p *streamPair) {
	defer conn.RemoveStreams(p.data, p.errs)
	defer p.errs.Close()
	if err := s.cfg.Runtime.PortForward(ctx, sandboxID, p.port, p.data); err != nil {
		msg := fmt.Sprintf("error forwarding port %d to pod %s: %v", p.port, sandboxID, err)
		_, _ = p.errs.Write([]byte(msg))
	}
	_ = p.data.Close()
}

// serveWebSocketPortForward serves port-forward over WebSocket: tunnelled
// SPDY when the client asks for it, otherwise one data and one error
// channel per port.
func (s *Server) serveWebSocketPortForward(w http.ResponseWriter, r *http.Request, req *runtimeapi.PortForwardRequest) {
	ports, err := requestedPorts(r, req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ws, ok := upgradeWebSocket(w, r, wsPortForwardProtocols)
	if !ok {
		return
	}
	proto := ws.Subprotocol()
	if proto == protoTunnel {
		done := make(chan struct{})
		defer close(done)
		handler, streams := streamHandler(done, checkPortStream)
		conn, err := spdy.NewServerConnectionWithPings(&wsNetConn{ws: ws}, handler, pingPeriod)
		if err != nil {
			s.log.Info("port-forward tunnel did not start", "err", err)
			_ = ws.Close()
			return
		}
		s.portForwardStreams(r.Context(), conn, streams, req.PodSandboxId)
		return
	}
	if len(ports) == 0 {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "port-forward over WebSocket needs the ports query parameter"), time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	c := newChannelConn(ws, proto == protoV4Base64 || proto == protoV1Base64, false)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	type portStream struct {
		io.Reader
		io.Writer
	}
	streams := make([]portStream, len(ports))
	for i := range ports {
		streams[i] = portStream{Reader: c.reader(byte(2 * i)), Writer: c.writer(byte(2 * i))}
	}
	go func() {
		c.run()
		cancel()
	}()
	var wg sync.WaitGroup
	for i, port := range ports {
		data, errCh := byte(2*i), byte(2*i+1)
		prefix := binary.LittleEndian.AppendUint16(nil, uint16(port))
		if c.write(data, prefix) != nil || c.write(errCh, prefix) != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.cfg.Runtime.PortForward(ctx, req.PodSandboxId, port, nopCloser{streams[i]}); err != nil {
				_ = c.write(errCh, []byte(fmt.Sprintf("error forwarding port %d to pod %s: %v", port, req.PodSandboxId, err)))
			}
		}()
	}
	wg.Wait()
	c.close()
}

type nopCloser struct{ io.ReadWriter }

func (nopCloser) Close() error { return nil }

// requestedPorts are the ports of a WebSocket port-forward: the ports query
// parameter (repeated or comma-separated), else the CRI request's.
func requestedPorts(r *http.Request, req *runtimeapi.PortForwardRequest) ([]int32, error) {
	var ports []int32
	for _, v := range r.URL.Query()["ports"] {
		for _, f := range strings.Split(v, ",") {
			p, err := parsePort(strings.TrimSpace(f))
			if err != nil {
				return nil, err
			}
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		ports = append(ports, req.GetPort()...)
	}
	return ports, nil
}
