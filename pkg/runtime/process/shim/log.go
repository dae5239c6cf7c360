package shim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// maxLogLine is where a line without a newline is cut into a partial ("P")
// entry, as containerd does at 16 KiB.
const maxLogLine = 16 * 1024

// criLog writes the CRI log format the kubelet and `kubectl logs` read:
// "<RFC3339Nano time> <stream> <P|F> <content>\n", one entry per write.
type criLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	now  func() time.Time
}

func openCRILog(path string, now func() time.Time) (*criLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &criLog{path: path, f: f, now: now}, nil
}

// reopen starts a new file at the same path (after the kubelet rotated it).
func (l *criLog) reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *criLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// appendEntry formats one entry onto buf.
func appendEntry(buf []byte, t time.Time, stream string, partial bool, content []byte) []byte {
	buf = t.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	if partial {
		buf = append(buf, " P "...)
	} else {
		buf = append(buf, " F "...)
	}
	buf = append(buf, content...)
	return append(buf, '\n')
}

// copyFrom reads src until EOF, writing an entry per line.
func (l *criLog) copyFrom(stream string, src io.Reader) {
	br := bufio.NewReaderSize(src, maxLogLine)
	var buf []byte
	for {
		line, err := br.ReadSlice('\n')
		partial := false
		switch {
		case err == nil:
			line = bytes.TrimSuffix(line, []byte{'\n'})
		case errors.Is(err, bufio.ErrBufferFull):
			partial = true
		}
		if len(line) > 0 || err == nil {
			buf = appendEntry(buf[:0], l.now(), stream, partial, line)
			l.mu.Lock()
			_, _ = l.f.Write(buf)
			l.mu.Unlock()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// ParseCRILine splits one log line into its parts.
func ParseCRILine(line []byte) (t time.Time, stream string, partial bool, content []byte, ok bool) {
	f := bytes.SplitN(line, []byte{' '}, 4)
	if len(f) != 4 {
		return t, "", false, nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return t, "", false, nil, false
	}
	return t, string(f[1]), string(f[2]) == "P", f[3], true
}
