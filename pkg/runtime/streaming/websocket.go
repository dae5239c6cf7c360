package streaming

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsWriteTimeout bounds one message write to a stalled client.
const wsWriteTimeout = 60 * time.Second

// wsCloseWait is how long the server waits for the client to answer its
// close message before dropping the connection.
const wsCloseWait = 2 * time.Second

func isWebSocket(r *http.Request) bool { return websocket.IsWebSocketUpgrade(r) }

// upgradeWebSocket accepts the connection with the first of protocols the
// client offers. A client that offers subprotocols, none of them ours, is
// refused with 400 (which makes kubectl fall back to SPDY); one that offers
// none gets the unversioned protocol "".
func upgradeWebSocket(w http.ResponseWriter, r *http.Request, protocols []string) (*websocket.Conn, bool) {
	offered := websocket.Subprotocols(r)
	if len(offered) > 0 && !anyIn(offered, protocols) {
		http.Error(w, "streaming: none of the requested subprotocols "+strings.Join(offered, ", ")+" is supported; supported: "+strings.Join(protocols, ", "), http.StatusBadRequest)
		return nil, false
	}
	up := websocket.Upgrader{
		Subprotocols:    protocols,
		CheckOrigin:     func(*http.Request) bool { return true }, // the kubelet authenticated the caller
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil, false // Upgrade answered
	}
	return ws, true
}

func anyIn(offered, supported []string) bool {
	for _, o := range offered {
		for _, s := range supported {
			if o == s {
				return true
			}
		}
	}
	return false
}

// channelConn multiplexes numbered channels over one WebSocket: each
// message starts with its channel number (a byte, or an ASCII digit with a
// base64 body for the base64 protocols).
type channelConn struct {
	ws         *websocket.Conn
	base64     bool
	closeFrame bool // v5: [255, n] closes channel n

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	readers map[byte]*io.PipeWriter // incoming data per channel
	ended   chan struct{}           // closed when the read loop ends
}

func newChannelConn(ws *websocket.Conn, base64, closeFrame bool) *channelConn {
	return &channelConn{ws: ws, base64: base64, closeFrame: closeFrame, readers: map[byte]*io.PipeWriter{}, ended: make(chan struct{})}
}

// reader returns the incoming data of channel ch. Call before run.
func (c *channelConn) reader(ch byte) io.Reader {
	pr, pw := io.Pipe()
	c.mu.Lock()
	c.readers[ch] = pw
	c.mu.Unlock()
	return pr
}

// run reads messages until the connection fails or closes, handing data to
// the channel readers; it answers pings as it goes.
func (c *channelConn) run() {
	defer close(c.ended)
	defer c.closeReaders(io.EOF)
	for {
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
				return
			}
			c.closeReaders(err)
			return
		}
		if len(msg) == 0 {
			continue
		}
		ch := msg[0]
		data := msg[1:]
		if c.closeFrame && ch == chanClose {
			if len(data) == 1 {
				c.closeReader(data[0], io.EOF)
			}
			continue
		}
		if c.base64 {
			if typ != websocket.TextMessage || ch < '0' || ch > '9' {
				continue
			}
			ch -= '0'
			dec, err := base64.StdEncoding.DecodeString(string(data))
			if err != nil {
				continue
			}
			data = dec
		}
		c.mu.Lock()
		pw := c.readers[ch]
		c.mu.Unlock()
		if pw == nil || len(data) == 0 {
			continue
		}
		_, _ = pw.Write(data) // a reader gone away drops its data
	}
}

func (c *channelConn) closeReader(ch byte, err error) {
	c.mu.Lock()
	pw := c.readers[ch]
	delete(c.readers, ch)
	c.mu.Unlock()
	if pw != nil {
		_ = pw.CloseWithError(err)
	}
}

func (c *channelConn) closeReaders(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch, pw := range c.readers {
		_ = pw.CloseWithError(err)
		delete(c.readers, ch)
	}
}

// write sends data as one message on channel ch.
func (c *channelConn) write(ch byte, data []byte) error {
	var typ int
	var msg []byte
	if c.base64 {
		typ = websocket.TextMessage
		msg = make([]byte, 1+base64.StdEncoding.EncodedLen(len(data)))
		msg[0] = '0' + ch
		base64.StdEncoding.Encode(msg[1:], data)
	} else {
		typ = websocket.BinaryMessage
		msg = make([]byte, 1+len(data))
		msg[0] = ch
		copy(msg[1:], data)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return c.ws.WriteMessage(typ, msg)
}

// writer is channel ch as an io.WriteCloser. Close does nothing: the
// session's end is signalled by closing the connection.
func (c *channelConn) writer(ch byte) io.WriteCloser { return channelWriter{c: c, ch: ch} }

type channelWriter struct {
	c  *channelConn
	ch byte
}

func (w channelWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := w.c.write(w.ch, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (channelWriter) Close() error { return nil }

// close ends the connection with a normal close and waits a little for the
// client's answer, so data already sent is not lost to a reset.
func (c *channelConn) close() {
	c.closeReaders(io.EOF) // unblocks a read loop stuck handing data to a reader gone away
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	select {
	case <-c.ended:
	case <-time.After(wsCloseWait):
	}
	_ = c.ws.Close()
}

// serveWebSocketCommand runs an exec or attach session over WebSocket.
func (s *Server) serveWebSocketCommand(w http.ResponseWriter, r *http.Request, opts stdio, run runFunc) {
	ws, ok := upgradeWebSocket(w, r, wsCommandProtocols)
	if !ok {
		return
	}
	proto := ws.Subprotocol()
	// Only v5 defines [255, n] as closing channel n, but client-go sends it
	// whatever it negotiated, and 255 is no data channel: honour it always
	// (binary framing only), so stdin ends for older versions too.
	b64 := proto == protoV4Base64 || proto == protoV1Base64
	c := newChannelConn(ws, b64, !b64)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var st session
	if opts.stdin {
		st.stdin = c.reader(chanStdin)
	}
	var first <-chan struct{}
	if opts.tty {
		st.resize, first = decodeResizes(ctx, c.reader(chanResize))
	}
	if opts.stdout {
		st.stdout = c.writer(chanStdout)
	}
	if opts.stderr && !opts.tty {
		st.stderr = c.writer(chanStderr)
	}
	go func() {
		c.run()
		cancel() // the client went away: stop the command
	}()
	if first != nil {
		awaitFirstSize(ctx, first)
	}
	runErr := run(ctx, st)
	if msg := statusMessage(proto, runErr); msg != nil {
		if err := c.write(chanError, msg); err != nil {
			s.log.Debug("writing exec status", "err", err)
		}
	}
	c.close()
}

// wsNetConn is a WebSocket carrying a byte stream in binary messages (SPDY
// tunnelled through WebSocket), as a net.Conn.
type wsNetConn struct {
	ws *websocket.Conn

	rmu sync.Mutex
	cur io.Reader // the message being read

	wmu       sync.Mutex
	closeOnce sync.Once
}

var _ net.Conn = (*wsNetConn)(nil)

func (c *wsNetConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.cur == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("streaming: tunnel carried a non-binary message")
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			c.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		err = c.ws.Close()
	})
	return err
}

func (c *wsNetConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsNetConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsNetConn) SetDeadline(t time.Time) error      { return c.ws.NetConn().SetDeadline(t) }
func (c *wsNetConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsNetConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
