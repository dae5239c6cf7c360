// Package dns is skiff's cluster DNS server. It answers names in the cluster
// domain — services (<svc>.<ns>.svc.<domain>), the endpoints of headless
// services, SRV records for named ports, pod address records — from informer
// caches, and forwards every other name to the host's resolvers. It also
// keeps the kube-dns Service and its endpoints pointing at itself, so that
// pods reach it at the fixed cluster DNS address through the service proxy.
//
// Zone.Answer is the deciding part, a pure function of a query and a
// Catalog; Server is the shell around it.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Sentinel errors.
var (
	ErrConfig    = errors.New("dns: invalid configuration")
	ErrUpstream  = errors.New("dns: upstream resolvers")
	ErrCacheSync = errors.New("dns: caches did not sync")
)

// Config is what the cluster DNS server needs.
type Config struct {
	Client *rest.Config
	Log    *slog.Logger
	// ListenAddr is where to serve, UDP and TCP, e.g. "192.168.1.5:53" (the
	// node's address, which the kube-dns endpoints then name).
	ListenAddr    string
	ClusterDomain string // default cluster.local
	// Upstream are the resolvers ("ip:port") for names outside the domain;
	// default: the name servers in ResolvConf.
	Upstream   []string
	ResolvConf string // default /etc/resolv.conf
	// NodeName names this server's EndpointSlice (kube-dns-<node>).
	NodeName string
	// ServiceIP is the kube-dns ClusterIP; default 10.43.0.10. ManageService
	// false leaves the kube-dns Service and endpoints alone.
	ServiceIP     string
	ManageService bool
	// AdvertiseIP is the address the endpoints name; default ListenAddr's.
	AdvertiseIP string
}

// Server is a running DNS server.
type Server struct {
	cfg      Config
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
	services corelisters.ServiceLister
	slices   cache.Indexer
	synced   []cache.InformerSynced
	zone     *Zone
	fwd      *forwarder
}

// byService indexes slices by namespace/service-name.
const byService = "service"

// Run serves DNS until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil {
		return fmt.Errorf("%w: Client is required", ErrConfig)
	}
	client, err := kubernetes.NewForConfig(cfg.Client)
	if err != nil {
		return fmt.Errorf("dns: client: %w", err)
	}
	s, err := New(client, cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New builds a server on client; cfg.Client is not used.
func New(client kubernetes.Interface, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ListenAddr == "" {
		return nil, fmt.Errorf("%w: ListenAddr is required", ErrConfig)
	}
	host, _, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: ListenAddr %q: %w", ErrConfig, cfg.ListenAddr, err)
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.ServiceIP == "" {
		cfg.ServiceIP = "10.43.0.10"
	}
	if cfg.AdvertiseIP == "" {
		cfg.AdvertiseIP = host
	}
	if cfg.Upstream == nil {
		ups, err := Upstreams(cfg.ResolvConf, cfg.ListenAddr)
		if err != nil {
			cfg.Log.Warn("no upstream resolvers: names outside the cluster domain will fail", "err", err)
		}
		cfg.Upstream = ups
	}
	f := informers.NewSharedInformerFactory(client, 0)
	svcInf := f.Core().V1().Services()
	sliceInf := f.Discovery().V1().EndpointSlices()
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{byService: func(obj any) ([]string, error) {
		s, ok := obj.(*discovery.EndpointSlice)
		if !ok || s.Labels[discovery.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[discovery.LabelServiceName]}, nil
	}}); err != nil {
		return nil, fmt.Errorf("dns: index slices: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		client:   client,
		factory:  f,
		services: svcInf.Lister(),
		slices:   sliceInf.Informer().GetIndexer(),
		synced:   []cache.InformerSynced{svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced},
		fwd:      newForwarder(cfg.Upstream, 2*time.Second),
	}
	s.zone = NewZone(cfg.ClusterDomain, s)
	return s, nil
}

// Service implements Catalog from the informer cache.
func (s *Server) Service(namespace, name string) (*v1.Service, bool) {
	svc, err := s.services.Services(namespace).Get(name)
	return svc, err == nil
}

// Slices implements Catalog from the informer cache.
func (s *Server) Slices(namespace, service string) []*discovery.EndpointSlice {
	objs, _ := s.slices.ByIndex(byService, namespace+"/"+service)
	out := make([]*discovery.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discovery.EndpointSlice))
	}
	return out
}

// ServeDNS answers one query: from the zone, or through the upstreams.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var resp *dns.Msg
	if len(req.Question) == 1 && s.zone.InZone(req.Question[0].Name) {
		resp = s.zone.Answer(req)
	} else {
		_, overTCP := w.RemoteAddr().(*net.TCPAddr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp = s.fwd.exchange(ctx, req, overTCP)
		cancel()
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

// Run starts the informers and the UDP and TCP listeners, keeps kube-dns
// pointing here when ManageService is set, and returns after all of them
// have stopped.
func (s *Server) Run(ctx context.Context) error {
	// One UDP socket per CPU, sharing the port, so that the kernel spreads
	// queries over as many reading goroutines.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	var servers []*dns.Server
	closeAll := func() {
		for _, srv := range servers {
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			} else {
				srv.Listener.Close()
			}
		}
	}
	for range max(1, runtime.GOMAXPROCS(0)) {
		pc, err := lc.ListenPacket(ctx, "udp", s.cfg.ListenAddr)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns: listen udp %s: %w", s.cfg.ListenAddr, err)
		}
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s})
	}
	l, err := net.Listen("tcp", s.cfg.ListenAddr)
	if err != nil {
		closeAll()
		return fmt.Errorf("dns: listen tcp %s: %w", s.cfg.ListenAddr, err)
	}
	servers = append(servers, &dns.Server{Listener: l, Handler: s})
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		closeAll()
		return ErrCacheSync
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(servers)+1)
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("dns: serve: %w", err)
			}
		}()
	}
	if s.cfg.ManageService {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.maintain(ctx)
		}()
	}
	s.cfg.Log.Info("serving cluster DNS", "addr", s.cfg.ListenAddr, "domain", s.cfg.ClusterDomain, "upstreams", s.cfg.Upstream)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	wg.Wait()
	return runErr
}
