// Package memtrim gives back the memory a long-running skiff process needed
// only while it started.
//
// Start-up runs every package's init and builds caches, OpenAPI documents and
// clients once: that leaves a heap grown well past what the idle process keeps
// live, and most of the binary's code and read-only data mapped although an
// idle server or agent runs a small part of it (measured: 59 MB of file-backed
// pages at start, 12–15 MB in use afterwards; docs/benchmarks.md).
package memtrim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// AfterStartup returns start-up's garbage heap to the system and asks the
// kernel to reclaim the executable's clean pages. Pages that are used again
// fault back in from the page cache or the file, so nothing is lost but a
// little latency on the first call of code that ran only at start.
func AfterStartup() error {
	debug.FreeOSMemory()
	return PageOutExecutable()
}

// PageOutExecutable applies MADV_PAGEOUT to every read-only mapping of the
// running executable. Kernels before 5.4 lack it; the error says so.
func PageOutExecutable() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || b <= a {
			continue
		}
		// The range is not Go memory, so it goes to the kernel as numbers
		// rather than as a slice.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(a), uintptr(b-a), unix.MADV_PAGEOUT); e != 0 {
			errs = append(errs, fmt.Errorf("madvise(MADV_PAGEOUT) on %s %s: %w", fields[0], fields[1], e))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// After calls AfterStartup once d has passed, unless ctx ends first. A
// failure only costs memory, so it is logged, not returned.
func After(ctx context.Context, d time.Duration, log *slog.Logger) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		if err := AfterStartup(); err != nil {
			log.Info("could not give back start-up memory; the process keeps it resident", "err", err)
		}
	}
}
