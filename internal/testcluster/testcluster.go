// Package testcluster starts a real control plane (embedded etcd and the HTTPS
// API server, optionally the scheduler and controllers) inside a test process,
// on loopback ports, so that integration tests drive real components.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/pkg/server"
)

// Cluster is a running control plane.
type Cluster struct {
	Config     *rest.Config         // admin credentials over HTTPS
	Client     kubernetes.Interface // typed client built from Config
	Kubeconfig string               // path of the admin kubeconfig, for kubectl
	DataDir    string
	URL        string
	Server     server.Config // the configuration it runs with, for Restart

	stop    func()
	stopErr error // a stop that timed out
}

// Options choose what runs besides etcd and the API server. The agent never
// runs in a testcluster.
type Options struct {
	Scheduler   bool
	Controllers bool
	// Tweak, when set, may change the server's configuration before start.
	Tweak func(*server.Config)
	// Log receives the server's logs; discarded when nil unless SKIFF_TEST_LOG is set.
	Log *slog.Logger
}

// Start starts a cluster in a temporary directory and stops it when the test
// ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	// A free port is found by listening and closing, so a test package
	// running in parallel may take it before etcd or the API server binds
	// it: then start again on other ports.
	for attempt := 1; ; attempt++ {
		c := &Cluster{}
		c.DataDir, c.Server = t.TempDir(), config(t, opts)
		c.Server.DataDir = c.DataDir
		err := c.start()
		if err == nil {
			t.Cleanup(func() {
				c.Stop()
				if c.stopErr != nil {
					t.Error(c.stopErr)
				}
			})
			return c
		}
		if !strings.Contains(err.Error(), "in use") || attempt == 5 {
			t.Fatalf("testcluster: %v", err)
		}
		t.Logf("testcluster: %v; starting again on other ports", err)
	}
}

func config(t testing.TB, opts Options) server.Config {
	cfg := server.Defaults()
	cfg.BindAddress = "127.0.0.1"
	cfg.AdvertiseAddress = "127.0.0.1"
	cfg.HTTPSPort = freePort(t)
	cfg.EtcdClientPort = freePort(t)
	cfg.EtcdPeerPort = freePort(t)
	cfg.DisableAgent = true
	cfg.DisableScheduler = !opts.Scheduler
	cfg.DisableControllers = !opts.Controllers
	cfg.Log = opts.Log
	if cfg.Log == nil {
		if os.Getenv("SKIFF_TEST_LOG") != "" {
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		} else {
			cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
	}
	if opts.Tweak != nil {
		opts.Tweak(&cfg)
	}
	return cfg
}

func (c *Cluster) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *server.Running, 1)
	done := make(chan error, 1)
	go func() { done <- server.RunWith(ctx, c.Server, func(r *server.Running) { ready <- r }) }()
	select {
	case r := <-ready:
		c.Config = r.Admin
		c.Kubeconfig = r.Kubeconfig
		c.URL = r.URL
	case err := <-done:
		cancel()
		return fmt.Errorf("server did not start: %w", err)
	case <-time.After(60 * time.Second):
		cancel()
		return errors.New("server not ready after 60s")
	}
	c.Client = kubernetes.NewForConfigOrDie(c.Config)
	c.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			c.stopErr = errors.New("testcluster: server did not stop within 30s")
		}
	}
	return nil
}

// Stop stops the cluster; its data stays until the test ends.
func (c *Cluster) Stop() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// Restart stops the cluster and starts it again on the same data and ports.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop()
	if c.stopErr != nil {
		t.Error(c.stopErr)
	}
	if err := c.start(); err != nil {
		t.Fatalf("testcluster: restart: %v", err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testcluster: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
