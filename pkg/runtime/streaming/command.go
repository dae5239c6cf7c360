package streaming

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Remote command protocol names, newest first.
const (
	protoV5       = "v5.channel.k8s.io" // WebSocket only: adds the CLOSE signal
	protoV4       = "v4.channel.k8s.io" // error channel carries a Status
	protoV3       = "v3.channel.k8s.io" // adds the resize channel
	protoV2       = "v2.channel.k8s.io"
	protoV1       = "channel.k8s.io"
	protoV4Base64 = "v4.base64.channel.k8s.io"
	protoV1Base64 = "base64.channel.k8s.io"
)

// spdyCommandProtocols are the SPDY versions served, in preference order.
var spdyCommandProtocols = []string{protoV4, protoV3, protoV2, protoV1}

// wsCommandProtocols are the WebSocket subprotocols served, in preference
// order.
var wsCommandProtocols = []string{protoV5, protoV4, protoV4Base64, protoV3, protoV2, protoV1, protoV1Base64}

// Channel numbers (WebSocket) and their SPDY stream types.
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
	chanResize = 4
	chanClose  = 255 // v5: [255, n] closes channel n
)

// Values of the SPDY streamType header.
const (
	streamTypeStdin  = "stdin"
	streamTypeStdout = "stdout"
	streamTypeStderr = "stderr"
	streamTypeError  = "error"
	streamTypeResize = "resize"
	streamTypeData   = "data" // port-forward
)

// stdio says which streams a session was granted.
type stdio struct{ stdin, stdout, stderr, tty bool }

// session is what a runFunc gets: the streams the client opened (nil where
// not requested) and the terminal sizes it sends.
type session struct {
	stdin          io.Reader
	stdout, stderr io.WriteCloser
	resize         <-chan TerminalSize
}

type runFunc func(ctx context.Context, st session) error

// version is the protocol's number: 1 for channel.k8s.io, 5 for v5.
func version(proto string) int {
	switch proto {
	case protoV5:
		return 5
	case protoV4, protoV4Base64:
		return 4
	case protoV3:
		return 3
	case protoV2:
		return 2
	}
	return 1
}

// statusMessage is what the error channel carries when a session ends with
// err (nil: success). Version 4 and later send a Status, which is how exit
// codes reach the client; older versions send only failures, as text.
func statusMessage(proto string, err error) []byte {
	if version(proto) < 4 {
		if err == nil {
			return nil
		}
		return []byte(err.Error())
	}
	st := metav1.Status{Status: metav1.StatusSuccess}
	var exit interface{ ExitStatus() int }
	switch {
	case err == nil:
	case errors.As(err, &exit):
		st = metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(exit.ExitStatus())}}},
		}
	default:
		st = metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  metav1.StatusReasonInternalError,
			Code:    500,
			Message: "Internal error occurred: " + err.Error(),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Message: err.Error()}}},
		}
	}
	b, _ := json.Marshal(st)
	return b
}

// initialSizeWait bounds how long a tty session waits for the client's
// first terminal size before starting the command (kubectl sends it as soon
// as it connects; a command started earlier sees a 0x0 terminal).
const initialSizeWait = time.Second

// decodeResizes turns the JSON sizes read from r into a channel that ends
// when r does or ctx is done. first is closed once the first size is
// buffered on the channel (or r has ended).
func decodeResizes(ctx context.Context, r io.Reader) (sizes <-chan TerminalSize, first <-chan struct{}) {
	ch := make(chan TerminalSize, 1)
	got := make(chan struct{})
	go func() {
		defer close(ch)
		var once sync.Once
		defer once.Do(func() { close(got) })
		dec := json.NewDecoder(r)
		for {
			var sz TerminalSize
			if err := dec.Decode(&sz); err != nil {
				return
			}
			select {
			case ch <- sz:
				once.Do(func() { close(got) })
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, got
}

// awaitFirstSize waits, at most initialSizeWait, for first.
func awaitFirstSize(ctx context.Context, first <-chan struct{}) {
	t := time.NewTimer(initialSizeWait)
	defer t.Stop()
	select {
	case <-first:
	case <-t.C:
	case <-ctx.Done():
	}
}
