package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	skiffversion "github.com/skiff-org/skiff/pkg/version"
)

// Version is the kubelet version the node reports.
const Version = skiffversion.Skiff

// Sentinel errors.
var (
	ErrConfig  = errors.New("kubelet: invalid configuration")
	ErrRuntime = errors.New("kubelet: container runtime unavailable")
)

// Config is what a kubelet needs to run one node.
type Config struct {
	Client          kubernetes.Interface
	RestConfig      *rest.Config // its CA authenticates callers of the HTTPS server
	NodeName        string
	NodeIP          string // InternalIP; default: the first non-loopback IPv4
	DataDir         string // pod volumes and logs live below
	RuntimeEndpoint string // CRI unix socket path
	ClusterDNS      string
	ClusterDomain   string // default cluster.local
	Port            int    // HTTPS port, default 10250; < 0 disables the server
	ControlPlane    bool   // label the node node-role.kubernetes.io/control-plane
	// SyncPeriod is how often a running pod is synced without an event,
	// which also refreshes configMap and secret volumes (default 10s).
	SyncPeriod time.Duration
	// RelistPeriod is how often the runtime is listed to notice container
	// exits (default 1s).
	RelistPeriod time.Duration
	Log          *slog.Logger
}

// Kubelet runs the pods bound to one node.
type Kubelet struct {
	cfg      Config
	log      *slog.Logger
	client   kubernetes.Interface
	rt       runtimeapi.RuntimeServiceClient
	img      runtimeapi.ImageServiceClient
	conn     *grpc.ClientConn
	recorder record.EventRecorder
	pods     cache.SharedIndexInformer
	services listersv1.ServiceLister
	hostname string
	hostIPs  []string
	probes   *probeManager
	tokens   tokens

	runtimeName    string
	runtimeVersion string

	mu           sync.Mutex
	workers      map[types.UID]*podWorker
	exitedStatus map[string]*runtimeapi.ContainerStatus
	allocatable  v1.ResourceList
	podCIDR      string
	ctx          context.Context
	wg           sync.WaitGroup
}

// New checks cfg and connects to the runtime; Run does the work.
func New(cfg Config) (*Kubelet, error) {
	if cfg.Client == nil || cfg.NodeName == "" || cfg.DataDir == "" || cfg.RuntimeEndpoint == "" {
		return nil, fmt.Errorf("%w: Client, NodeName, DataDir and RuntimeEndpoint are required", ErrConfig)
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.Port == 0 {
		cfg.Port = 10250
	}
	if cfg.SyncPeriod == 0 {
		cfg.SyncPeriod = 10 * time.Second
	}
	if cfg.RelistPeriod == 0 {
		cfg.RelistPeriod = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeIP == "" {
		cfg.NodeIP = defaultNodeIP()
	}
	conn, err := grpc.NewClient("unix://"+cfg.RuntimeEndpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRuntime, cfg.RuntimeEndpoint, err)
	}
	hostname, _ := os.Hostname()
	k := &Kubelet{
		cfg:          cfg,
		log:          cfg.Log.With("node", cfg.NodeName),
		client:       cfg.Client,
		conn:         conn,
		rt:           runtimeapi.NewRuntimeServiceClient(conn),
		img:          runtimeapi.NewImageServiceClient(conn),
		hostname:     hostname,
		hostIPs:      []string{cfg.NodeIP},
		workers:      map[types.UID]*podWorker{},
		exitedStatus: map[string]*runtimeapi.ContainerStatus{},
		runtimeName:  "skiff-process",
	}
	k.probes = newProbeManager(k)
	return k, nil
}

// Run registers the node and runs pods until ctx ends; it returns after
// every goroutine it started has stopped.
func (k *Kubelet) Run(ctx context.Context) error {
	defer k.conn.Close()
	k.ctx = ctx
	if err := os.MkdirAll(k.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	// The runtime may still be starting (the built-in one starts alongside).
	if err := k.waitRuntime(ctx); err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	k.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: k.cfg.NodeName})

	podFactory := informers.NewSharedInformerFactoryWithOptions(k.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
	}))
	k.pods = podFactory.Core().V1().Pods().Informer()
	if err := k.pods.AddIndexers(cache.Indexers{"uid": func(obj any) ([]string, error) {
		return []string{string(obj.(*v1.Pod).UID)}, nil
	}}); err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if p, ok := obj.(*v1.Pod); ok {
			k.kick(p.UID)
		}
	}
	k.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue})
	factory := informers.NewSharedInformerFactory(k.client, 0)
	k.services = factory.Core().V1().Services().Lister()
	podFactory.Start(ctx.Done())
	factory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer factory.Shutdown()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); k.runNode(ctx) }()

	if !cache.WaitForCacheSync(ctx.Done(), k.pods.HasSynced, factory.Core().V1().Services().Informer().HasSynced) {
		wg.Wait()
		return ctx.Err()
	}
	// Pods the runtime still has but the API no longer binds here (deleted
	// while the agent was down) get a worker too, which cleans them up.
	k.adoptRuntimePods(ctx)

	wg.Add(1)
	go func() { defer wg.Done(); k.relist(ctx) }()
	if k.cfg.Port > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.serve(ctx); err != nil {
				k.log.Error("kubelet server stopped", "err", err)
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	k.wg.Wait() // pod workers and probers
	return nil
}

// waitRuntime asks the runtime for its version until it answers.
func (k *Kubelet) waitRuntime(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := k.rt.Version(cctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			if v.RuntimeName != "" {
				k.runtimeName = v.RuntimeName
			}
			k.runtimeVersion = v.RuntimeVersion
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s did not answer Version for 30s (is the runtime running?): %w", ErrRuntime, k.cfg.RuntimeEndpoint, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// podByUID is the API's pod with uid, or nil when it is gone.
func (k *Kubelet) podByUID(uid types.UID) *v1.Pod {
	objs, err := k.pods.GetIndexer().ByIndex("uid", string(uid))
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*v1.Pod)
}

// adoptRuntimePods starts a worker for every pod the runtime has.
func (k *Kubelet) adoptRuntimePods(ctx context.Context) {
	resp, err := k.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		k.log.Warn("listing runtime sandboxes", "err", err)
		return
	}
	for _, sb := range resp.Items {
		if uid := sb.Labels[labelPodUID]; uid != "" {
			k.kick(types.UID(uid))
		}
	}
}

// relist notices container state changes the runtime made on its own (a
// process exiting) and wakes the pods concerned: a poll-based PLEG.
func (k *Kubelet) relist(ctx context.Context) {
	last := map[string]runtimeapi.ContainerState{}
	t := time.NewTicker(k.cfg.RelistPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := k.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			continue
		}
		now := make(map[string]runtimeapi.ContainerState, len(resp.Containers))
		for _, c := range resp.Containers {
			now[c.Id] = c.State
			if prev, ok := last[c.Id]; !ok || prev != c.State {
				if ok || c.State == runtimeapi.ContainerState_CONTAINER_EXITED {
					k.kick(types.UID(c.Labels[labelPodUID]))
				}
			}
		}
		last = now
	}
}

func defaultNodeIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
