package memtrim

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rssFileKB reads RssFile from /proc/self/status.
func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return n
		}
	}
	t.Skip("kernel reports no RssFile")
	return 0
}

func TestPageOutExecutableShrinksFileBackedRSS(t *testing.T) {
	before := rssFileKB(t)
	err := PageOutExecutable()
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("kernel without MADV_PAGEOUT (needs Linux 5.4): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	t.Logf("RssFile %d kB -> %d kB", before, after)
	if after >= before {
		t.Fatalf("RssFile did not shrink: %d kB before, %d kB after", before, after)
	}
}
