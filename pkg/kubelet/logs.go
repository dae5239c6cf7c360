package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ErrLogFormat marks a line that is not in the CRI log format.
var ErrLogFormat = errors.New("kubelet: malformed CRI log line")

// logOptions are the query parameters of /containerLogs, already parsed.
type logOptions struct {
	Follow     bool
	TailLines  *int64     // keep only the last n lines
	Since      *time.Time // drop lines written before
	Timestamps bool       // prefix each line with its RFC 3339 timestamp
	LimitBytes *int64     // stop after this many bytes
}

// logLine is one logical line of a CRI log file: partial chunks ("P") are
// joined up to the final one ("F").
type logLine struct {
	Time    time.Time
	Stream  string
	Content []byte // with its trailing newline when the line was complete
}

// parseCRILine splits "<time> <stream> <tags> <content>".
func parseCRILine(b []byte) (t time.Time, stream string, partial bool, content []byte, err error) {
	parts := bytes.SplitN(b, []byte{' '}, 4)
	if len(parts) < 3 {
		return t, "", false, nil, fmt.Errorf("%w: %q", ErrLogFormat, b)
	}
	t, err = time.Parse(time.RFC3339Nano, string(parts[0]))
	if err != nil {
		return t, "", false, nil, fmt.Errorf("%w: %w", ErrLogFormat, err)
	}
	tags := parts[2]
	partial = len(tags) > 0 && tags[0] == 'P'
	if len(parts) == 4 {
		content = parts[3]
	}
	return t, string(parts[1]), partial, content, nil
}

// logReader turns a CRI log file into logical lines.
type logReader struct {
	r       *bufio.Reader
	pending []byte // a physical line read only in part (the file is still being written)
	cur     *logLine
}

// next returns the next complete logical line, or io.EOF when the file ends
// (possibly in the middle of a line, which a follower reads later).
func (lr *logReader) next() (*logLine, error) {
	for {
		chunk, err := lr.r.ReadBytes('\n')
		lr.pending = append(lr.pending, chunk...)
		if err != nil {
			return nil, err
		}
		raw := bytes.TrimSuffix(lr.pending, []byte{'\n'})
		lr.pending = nil
		t, stream, partial, content, perr := parseCRILine(raw)
		if perr != nil {
			continue // skip garbage rather than stopping the whole stream
		}
		if lr.cur == nil {
			lr.cur = &logLine{Time: t, Stream: stream}
		}
		lr.cur.Content = append(lr.cur.Content, content...)
		if partial {
			continue
		}
		lr.cur.Content = append(lr.cur.Content, '\n')
		l := lr.cur
		lr.cur = nil
		return l, nil
	}
}

// limitedWriter stops the stream after n bytes.
type limitedWriter struct {
	w io.Writer
	n int64 // < 0: unlimited
}

var errLimit = errors.New("kubelet: log byte limit reached")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n < 0 {
		return l.w.Write(p)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	if err == nil && l.n == 0 {
		err = errLimit
	}
	return n, err
}

func writeLine(w io.Writer, l *logLine, opts logOptions) error {
	if opts.Timestamps {
		if _, err := io.WriteString(w, l.Time.Format(time.RFC3339Nano)+" "); err != nil {
			return err
		}
	}
	_, err := w.Write(l.Content)
	return err
}

// followPoll is how often a follower looks for new lines at the end of a
// file.
const followPoll = 100 * time.Millisecond

// writeLogs copies the container log at path to w as options say. With
// Follow it keeps going until ctx ends or done reports that the container
// will write no more (and the file is drained).
func writeLogs(ctx context.Context, path string, opts logOptions, w io.Writer, done func() bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lw := &limitedWriter{w: w, n: -1}
	if opts.LimitBytes != nil {
		lw.n = *opts.LimitBytes
	}
	flush := func() {
		if fl, ok := w.(interface{ Flush() }); ok {
			fl.Flush()
		}
	}
	lr := &logReader{r: bufio.NewReaderSize(f, 64<<10)}
	var tail []*logLine // ring of the last TailLines lines
	keep := int64(-1)
	if opts.TailLines != nil {
		keep = *opts.TailLines
	}
	for {
		l, err := lr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return err
			}
			break
		}
		if opts.Since != nil && l.Time.Before(*opts.Since) {
			continue
		}
		if keep < 0 {
			if err := writeLine(lw, l, opts); err != nil {
				return ignoreLimit(err)
			}
			continue
		}
		if keep == 0 {
			continue
		}
		if int64(len(tail)) == keep {
			tail = tail[1:]
		}
		tail = append(tail, l)
	}
	for _, l := range tail {
		if err := writeLine(lw, l, opts); err != nil {
			return ignoreLimit(err)
		}
	}
	flush()
	if !opts.Follow {
		return nil
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		l, err := lr.next()
		if err == nil {
			if err := writeLine(lw, l, opts); err != nil {
				return ignoreLimit(err)
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		flush()
		if done != nil && done() {
			// One last read: the container may have written its final
			// lines between our EOF and its exit.
			for {
				l, err := lr.next()
				if err != nil {
					return nil
				}
				if err := writeLine(lw, l, opts); err != nil {
					return ignoreLimit(err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func ignoreLimit(err error) error {
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}
