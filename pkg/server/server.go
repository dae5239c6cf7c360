package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/pkg/apiserver"
	"github.com/skiff-org/skiff/pkg/pki"
	"github.com/skiff-org/skiff/pkg/registry"
	"github.com/skiff-org/skiff/pkg/satoken"
	"github.com/skiff-org/skiff/pkg/storage"
	skiffversion "github.com/skiff-org/skiff/pkg/version"
)

// Version is what /version reports. The minor version is the Kubernetes API
// level skiff serves, so kubectl's version-skew checks see a peer.
var Version = version.Info{
	Major: skiffversion.Major, Minor: skiffversion.Minor, GitVersion: skiffversion.Skiff, GitCommit: "skiff", GitTreeState: "clean",
	BuildDate: "2026-11-27T00:00:00Z", GoVersion: runtime.Version(), Compiler: runtime.Compiler,
	Platform: runtime.GOOS + "/" + runtime.GOARCH,
}

// Defaults returns the configuration `skiff server` runs with when no flag
// says otherwise.
func Defaults() Config {
	return Config{
		DataDir:                  "/var/lib/skiff",
		BindAddress:              "0.0.0.0",
		HTTPSPort:                6443,
		EtcdClientPort:           2379,
		EtcdPeerPort:             2380,
		ServiceCIDR:              "10.43.0.0/16",
		ClusterCIDR:              "10.42.0.0/16",
		NodePortRange:            "30000-32767",
		ClusterDNS:               "10.43.0.10",
		ClusterDomain:            "cluster.local",
		NodeMonitorGracePeriod:   40 * time.Second,
		DefaultTolerationSeconds: 300,
	}
}

// fillDefaults sets every zero field of cfg to its default.
func fillDefaults(cfg *Config) {
	d := Defaults()
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&cfg.DataDir, d.DataDir)
	set(&cfg.BindAddress, d.BindAddress)
	set(&cfg.ServiceCIDR, d.ServiceCIDR)
	set(&cfg.ClusterCIDR, d.ClusterCIDR)
	set(&cfg.NodePortRange, d.NodePortRange)
	set(&cfg.ClusterDNS, d.ClusterDNS)
	set(&cfg.ClusterDomain, d.ClusterDomain)
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = d.HTTPSPort
	}
	if cfg.EtcdClientPort == 0 {
		cfg.EtcdClientPort = d.EtcdClientPort
	}
	if cfg.EtcdPeerPort == 0 {
		cfg.EtcdPeerPort = d.EtcdPeerPort
	}
	if cfg.NodeMonitorGracePeriod == 0 {
		cfg.NodeMonitorGracePeriod = d.NodeMonitorGracePeriod
	}
	if cfg.DefaultTolerationSeconds == 0 {
		cfg.DefaultTolerationSeconds = d.DefaultTolerationSeconds
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if cfg.AdvertiseAddress == "" {
		cfg.AdvertiseAddress = defaultAdvertiseAddress()
	}
}

// defaultAdvertiseAddress is the address of the default route's interface,
// else the first non-loopback IPv4, else loopback.
func defaultAdvertiseAddress() string {
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil { // no packet is sent
		ip := c.LocalAddr().(*net.UDPAddr).IP.String()
		c.Close()
		return ip
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

// Running is a started server: its clients and where its files are.
type Running struct {
	URL        string       // https://127.0.0.1:PORT, for components in this process
	Admin      *rest.Config // admin credentials over loopback
	Kubeconfig string       // DataDir/admin.kubeconfig
	Bundle     *pki.Bundle
	Ready      time.Duration // from Run to /readyz ok
}

// Run starts the server and blocks until ctx ends. ready, when not nil, is
// called once the API server answers.
func Run(ctx context.Context, cfg Config) error {
	return RunWith(ctx, cfg, nil)
}

// RunWith is Run with a callback once the API server is ready.
func RunWith(ctx context.Context, cfg Config, ready func(*Running)) error {
	start := time.Now()
	go apiserver.WarmUp() // server-side apply's type tables, off the start path
	fillDefaults(&cfg)
	log := cfg.Log
	_, svcNet, err := net.ParseCIDR(cfg.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("server: --service-cluster-ip-range %q is not a CIDR: %w", cfg.ServiceCIDR, err)
	}
	portMin, portMax, err := parsePortRange(cfg.NodePortRange)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: cannot create data dir %s: %w; pass a writable --data-dir", cfg.DataDir, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.HTTPSPort)))
	if err != nil {
		return fmt.Errorf("server: cannot listen on %s:%d (%v); stop the process using the port (`ss -ltnp 'sport = :%d'` shows it) or pass --https-port", cfg.BindAddress, cfg.HTTPSPort, err, cfg.HTTPSPort)
	}
	defer ln.Close()

	firstSvcIP := nthIP(svcNet, 1)
	hosts := []string{cfg.AdvertiseAddress, firstSvcIP}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	bundle, err := pki.Ensure(cfg.DataDir, hosts)
	if err != nil {
		return err
	}
	saTokens, err := satoken.LoadOrCreate(filepath.Join(cfg.DataDir, "service-account.key"), satoken.DefaultIssuer)
	if err != nil {
		return err
	}

	var store *storage.Store
	if len(cfg.EtcdServers) > 0 {
		if store, err = storage.Dial(ctx, cfg.EtcdServers); err != nil {
			return err
		}
	} else {
		var etcd *storage.Embedded
		etcd, store, err = storage.StartEmbedded(ctx, storage.DataDir(cfg.DataDir), cfg.EtcdClientPort, cfg.EtcdPeerPort)
		if err != nil {
			return err
		}
		defer etcd.Close()
	}

	kubeletTransport, err := kubeletTransport(bundle)
	if err != nil {
		return err
	}
	resources := registry.All()
	api, err := apiserver.New(apiserver.Config{
		Store: store, Resources: resources, Token: bundle.Token, ClientCA: bundle.CAPool(), CAPEM: bundle.CAPEM,
		ServiceAccountTokens: saTokens,
		ServiceCIDR:          svcNet, NodePortMin: portMin, NodePortMax: portMax,
		DefaultTolerationSeconds: cfg.DefaultTolerationSeconds,
		OpenAPI:                  openAPIHandler(resources, log),
		KubeletTransport:         kubeletTransport,
		Bootstrap:                apiserver.BootstrapConfig{AdvertiseIP: cfg.AdvertiseAddress, Port: cfg.HTTPSPort},
		Version:                  Version,
		Log:                      log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := api.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- err
		}
	}()
	srv := &http.Server{Handler: api, TLSConfig: bundle.ServerTLS(), ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: nil}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("server: serving HTTPS: %w", err)
		}
	}()
	for !api.Ready() {
		select {
		case err := <-errc:
			cancel()
			srv.Close()
			wg.Wait()
			return err
		case <-ctx.Done():
			srv.Close()
			wg.Wait()
			return nil
		case <-time.After(2 * time.Millisecond):
		}
	}
	localURL := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPSPort))
	kubeconfig := filepath.Join(cfg.DataDir, "admin.kubeconfig")
	if err := bundle.WriteKubeconfig(kubeconfig, localURL); err != nil {
		return err
	}
	if cfg.WriteKubeconfig != "" {
		if err := bundle.WriteKubeconfig(cfg.WriteKubeconfig, localURL); err != nil {
			return err
		}
	}
	admin := bundle.AdminRESTConfig(localURL)
	admin.QPS, admin.Burst = 5000, 10000
	run := &Running{URL: localURL, Admin: admin, Kubeconfig: kubeconfig, Bundle: bundle, Ready: time.Since(start)}
	log.Info("skiff server ready", "url", "https://"+net.JoinHostPort(cfg.AdvertiseAddress, strconv.Itoa(cfg.HTTPSPort)),
		"kubeconfig", kubeconfig, "joinToken", filepath.Join(cfg.DataDir, "join-token"),
		"startup", run.Ready.Round(time.Millisecond).String())
	if ready != nil {
		ready(run)
	}
	startComponents(ctx, &wg, errc, cfg, run)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	srv.Shutdown(shutdown)
	srv.Close()
	wg.Wait()
	return err
}

func parsePortRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a <= 0 || b > 65535 || a > b {
		return 0, 0, fmt.Errorf("server: --service-node-port-range %q must look like 30000-32767", s)
	}
	return a, b, nil
}

func nthIP(n *net.IPNet, i int) string {
	ip := n.IP.To4()
	v := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	v += uint32(i)
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
}

// kubeletTransport is how the API server reaches kubelets for logs, exec and
// port-forward: it authenticates with the admin client certificate, and, as
// Kubernetes does by default, does not verify the kubelets' serving
// certificates, which they sign themselves.
func kubeletTransport(b *pki.Bundle) (http.RoundTripper, error) {
	cert, err := tls.X509KeyPair(b.AdminCertPEM(), b.AdminKeyPEM())
	if err != nil {
		return nil, fmt.Errorf("server: admin client certificate: %w", err)
	}
	return &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}, nil
}
