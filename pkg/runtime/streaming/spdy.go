package streaming

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
)

// pingPeriod keeps idle SPDY connections alive through proxies.
const pingPeriod = 30 * time.Second

// newStream is a stream the client opened, with the channel that closes
// once the server's reply to it has gone out.
type newStream struct {
	stream    httpstream.Stream
	replySent <-chan struct{}
}

// upgradeSPDY negotiates one of protocols and upgrades the connection;
// streams the client opens arrive on the returned channel until done is
// closed. It returns a nil connection when it has answered with an error.
func upgradeSPDY(w http.ResponseWriter, r *http.Request, protocols []string, done <-chan struct{}, accept func(httpstream.Stream) error) (httpstream.Connection, string, <-chan newStream) {
	proto, err := httpstream.Handshake(r, w, protocols)
	if err != nil {
		return nil, "", nil // Handshake wrote the answer
	}
	handler, streams := streamHandler(done, accept)
	conn := spdy.NewResponseUpgraderWithPings(pingPeriod).UpgradeResponse(w, r, handler)
	if conn == nil {
		return nil, "", nil
	}
	return conn, proto, streams
}

// streamHandler admits the client's new streams that accept allows (all if
// nil) and hands them over on the returned channel until done is closed.
func streamHandler(done <-chan struct{}, accept func(httpstream.Stream) error) (httpstream.NewStreamHandler, <-chan newStream) {
	streams := make(chan newStream)
	return func(st httpstream.Stream, replySent <-chan struct{}) error {
		if accept != nil {
			if err := accept(st); err != nil {
				return err
			}
		}
		select {
		case streams <- newStream{stream: st, replySent: replySent}:
			return nil
		case <-done:
			return fmt.Errorf("%w: session is over", ErrInvalidRequest)
		}
	}, streams
}

// serveSPDYCommand runs an exec or attach session over SPDY: the client
// opens one stream per channel, the server waits for all it expects, runs
// the command, then reports its end on the error stream.
func (s *Server) serveSPDYCommand(w http.ResponseWriter, r *http.Request, opts stdio, run runFunc) {
	done := make(chan struct{})
	defer close(done)
	conn, proto, streams := upgradeSPDY(w, r, spdyCommandProtocols, done, nil)
	if conn == nil {
		return
	}
	defer conn.Close()
	conn.SetIdleTimeout(s.cfg.IdleTimeout)

	expected := expectedStreams(proto, opts)
	got, err := s.collectStreams(conn, streams, expected)
	if err != nil {
		s.log.Info("exec session did not start", "err", err)
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-conn.CloseChan():
			cancel()
		case <-ctx.Done():
		}
	}()
	var st session
	if v, ok := got[streamTypeStdin]; ok {
		st.stdin = v
	}
	if v, ok := got[streamTypeStdout]; ok {
		st.stdout = v
	}
	if v, ok := got[streamTypeStderr]; ok {
		st.stderr = v
	}
	if v, ok := got[streamTypeResize]; ok {
		var first <-chan struct{}
		st.resize, first = decodeResizes(ctx, v)
		awaitFirstSize(ctx, first)
	}
	runErr := run(ctx, st)
	errStream := got[streamTypeError]
	if msg := statusMessage(proto, runErr); msg != nil {
		if _, err := errStream.Write(msg); err != nil {
			s.log.Debug("writing exec status", "err", err)
		}
	}
	_ = errStream.Close()
}

// expectedStreams lists the stream types a client of proto opens for opts.
func expectedStreams(proto string, opts stdio) map[string]bool {
	want := map[string]bool{streamTypeError: true}
	if opts.stdin {
		want[streamTypeStdin] = true
	}
	if opts.stdout {
		want[streamTypeStdout] = true
	}
	if opts.stderr && !opts.tty {
		want[streamTypeStderr] = true
	}
	if opts.tty && version(proto) >= 3 {
		want[streamTypeResize] = true
	}
	return want
}

// collectStreams waits, at most StreamCreationTimeout, for the client to
// open every expected stream and for the server's replies to go out.
func (s *Server) collectStreams(conn httpstream.Connection, streams <-chan newStream, expected map[string]bool) (map[string]httpstream.Stream, error) {
	got := map[string]httpstream.Stream{}
	var replies []<-chan struct{}
	timeout := time.NewTimer(s.cfg.StreamCreationTimeout)
	defer timeout.Stop()
	for len(got) < len(expected) {
		select {
		case ns := <-streams:
			typ := ns.stream.Headers().Get("streamType")
			if !expected[typ] {
				return nil, fmt.Errorf("%w: unexpected stream of type %q", ErrInvalidRequest, typ)
			}
			if got[typ] != nil {
				return nil, fmt.Errorf("%w: duplicate %s stream", ErrInvalidRequest, typ)
			}
			got[typ] = ns.stream
			replies = append(replies, ns.replySent)
		case <-timeout.C:
			return nil, fmt.Errorf("%w: timed out waiting for the client's streams (got %d of %d)", ErrInvalidRequest, len(got), len(expected))
		case <-conn.CloseChan():
			return nil, fmt.Errorf("%w: client closed the connection before opening its streams", ErrInvalidRequest)
		}
	}
	for _, rs := range replies {
		select {
		case <-rs:
		case <-timeout.C:
			return nil, fmt.Errorf("%w: timed out replying to the client's streams", ErrInvalidRequest)
		}
	}
	return got, nil
}
