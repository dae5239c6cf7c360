package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func testServerConfigArgs(t *testing.T, dir string, httpsPort int) []string {
	return []string{"--data-dir", dir, "--disable-agent", "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--https-port", strconv.Itoa(httpsPort), "--etcd-client-port", strconv.Itoa(freePort(t)),
		"--etcd-peer-port", strconv.Itoa(freePort(t)), "--log-level", "warn"}
}

// TestServerPortInUse starts the server on a port this test holds: it must
// fail, and say which port, who holds it and which flag moves it.
func TestServerPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg, err := parseServerFlags(t, testServerConfigArgs(t, t.TempDir(), port)...)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = runServer(ctx, cfg, &stderr)
	if err == nil {
		t.Fatalf("runServer(port %d in use) = nil, want an error", port)
	}
	want := "port " + strconv.Itoa(port) + " (API server) is in use by"
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "--https-port") {
		t.Errorf("runServer(port in use) printed %q, want a line containing %q and --https-port", stderr.String(), want)
	}
}

// TestServerStartsAndServesKubectl runs `skiff server` in-process on loopback
// ports and drives it with client-go and, when present, the real kubectl.
func TestServerStartsAndServesKubectl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and the API server")
	}
	dir := t.TempDir()
	extra := filepath.Join(t.TempDir(), "home", ".kube", "config")
	args := append(testServerConfigArgs(t, dir, freePort(t)), "--write-kubeconfig", extra)
	cfg, err := parseServerFlags(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServer(ctx, cfg, io.Discard) }()
	returned := false
	defer func() {
		cancel()
		if returned {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runServer after cancel = %v, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("runServer did not return within 20s of cancel")
		}
	}()

	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	deadline := time.Now().Add(60 * time.Second)
	var client kubernetes.Interface
	for {
		select {
		case err := <-done:
			returned = true
			t.Fatalf("runServer returned early: %v", err)
		default:
		}
		if rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig); err == nil {
			if c, err := kubernetes.NewForConfig(rc); err == nil {
				if _, err := c.Discovery().ServerVersion(); err == nil {
					client = c
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not answering with %s within 60s", kubeconfig)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(extra); err != nil {
		t.Errorf("--write-kubeconfig %s: %v", extra, err)
	}
	if _, err := client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace default = %v", err)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("no kubectl on PATH; checked with client-go only")
		return
	}
	out, err := exec.Command(kubectl, "--kubeconfig", extra, "get", "ns", "-o", "name").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "namespace/default") {
		t.Errorf("kubectl get ns = %q, %v, want namespace/default", out, err)
	}
}
