package storage

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Embedded is an etcd server running inside this process.
type Embedded struct {
	etcd *embed.Etcd
}

// StartEmbedded starts a single-member etcd with its data under dir, listening
// on loopback only, and returns a Store that talks to it in-process (no gRPC
// round trip through the network stack).
func StartEmbedded(ctx context.Context, dir string, clientPort, peerPort int) (*Embedded, *Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("storage: create etcd data dir: %w", err)
	}
	for _, p := range []int{clientPort, peerPort} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return nil, nil, fmt.Errorf("storage: etcd port %d is in use (%v); stop the process holding it or pass --etcd-client-port/--etcd-peer-port", p, err)
		}
		l.Close()
	}
	cfg := embed.NewConfig()
	cfg.Name = "skiff"
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	curl := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	purl := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg.ListenClientUrls = []url.URL{curl}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls = []url.URL{purl}
	cfg.AdvertisePeerUrls = []url.URL{purl}
	cfg.InitialCluster = "skiff=" + purl.String()
	cfg.InitialElectionTickAdvance = true
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.QuotaBackendBytes = 8 << 30
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "0" // the API server compacts by itself
	log.SetOutput(io.Discard)         // grpc's default logger is noisy
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("storage: start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, nil, fmt.Errorf("storage: embedded etcd in %s not ready after 30s", dir)
	case <-ctx.Done():
		e.Close()
		return nil, nil, ctx.Err()
	}
	return &Embedded{etcd: e}, New(v3client.New(e.Server)), nil
}

// Close stops the etcd server.
func (e *Embedded) Close() { e.etcd.Close() }

// Dial connects to an external etcd cluster.
func Dial(ctx context.Context, endpoints []string) (*Store, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Context: ctx, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("storage: connect to etcd %v: %w", endpoints, err)
	}
	s := New(c)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.Revision(cctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("storage: etcd %v does not answer (%v); check --etcd-servers", endpoints, err)
	}
	return s, nil
}

// DataDir is where the embedded etcd keeps its files under a skiff data dir.
func DataDir(skiffDir string) string { return filepath.Join(skiffDir, "etcd") }
