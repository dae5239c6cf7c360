// Package controllermanager runs skiff's controllers in one process: one
// client, one shared informer factory, every controller built on them and,
// when asked, a Lease-based leader election so that of several copies only
// one acts at a time.
package controllermanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/skiff-org/skiff/pkg/controller/endpoints"
	"github.com/skiff-org/skiff/pkg/controller/endpointslice"
	"github.com/skiff-org/skiff/pkg/controller/garbagecollector"
	"github.com/skiff-org/skiff/pkg/controller/job"
	"github.com/skiff-org/skiff/pkg/controller/namespace"
	"github.com/skiff-org/skiff/pkg/controller/nodeipam"
	"github.com/skiff-org/skiff/pkg/controller/nodelifecycle"
	"github.com/skiff-org/skiff/pkg/controller/rootcacert"
	"github.com/skiff-org/skiff/pkg/controller/serviceaccount"
)

// Lease that elects the acting controller manager.
const (
	LeaseNamespace = "kube-system"
	LeaseName      = "skiff-controller-manager"
)

// Client limits. Controllers run in-process next to the API server, and a
// rollout of 10,000 replicas needs some 20,000 writes (pod creates, status
// and ReplicaSet updates, endpoint changes); at Kubernetes' default of 20 QPS
// that is over 15 minutes, against our goal of 20 seconds. So the defaults
// are high enough never to be the bottleneck; the API server's own limits
// protect it.
const (
	DefaultQPS   = 5000
	DefaultBurst = 10000
)

// Leader election timings (Kubernetes' defaults).
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ErrConfig means the configuration cannot work.
var ErrConfig = errors.New("controllermanager: bad configuration")

// Config is what the controller manager needs.
type Config struct {
	Client                 *rest.Config
	Log                    *slog.Logger
	LeaderElect            bool
	NodeMonitorGracePeriod time.Duration // default 40s
	ClusterCIDR            string        // default 10.42.0.0/16
	NodeCIDRMaskSize       int           // default 24
	QPS                    float32       // default DefaultQPS
	Burst                  int           // default DefaultBurst
	// RootCA is the PEM of the CA that signs the API server's serving
	// certificate, published to every namespace as kube-root-ca.crt. Empty
	// means the root CA publisher does not run.
	RootCA []byte

	// Leader election timings; zero means Kubernetes' defaults. Tests
	// shorten them to see a takeover in seconds.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity names this copy in the Lease; default hostname_uuid.
	Identity string
}

// runner is what every controller is: Run blocks until ctx ends.
type runner interface {
	Run(ctx context.Context, workers int) error
}

type controller struct {
	name    string
	workers int
	r       runner
}

// Run runs the controllers until ctx ends. With LeaderElect it first waits
// to hold the Lease, stops every controller the moment it loses it, and then
// campaigns again, so a copy that lost the Lease never acts on stale state.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil {
		return fmt.Errorf("%w: no client config", ErrConfig)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	rc := rest.CopyConfig(cfg.Client)
	rc.QPS, rc.Burst = cfg.QPS, cfg.Burst
	if rc.QPS == 0 {
		rc.QPS = DefaultQPS
	}
	if rc.Burst == 0 {
		rc.Burst = DefaultBurst
	}
	rc.UserAgent = "skiff-controller-manager"
	// Protobuf, as kube-controller-manager's --kube-api-content-type
	// default: a fraction of JSON's CPU per write and per watch event on
	// both sides.
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("controllermanager: client: %w", err)
	}
	if !cfg.LeaderElect {
		return runControllers(ctx, cfg, rc, client)
	}
	return runElected(ctx, cfg, rc, client)
}

func runElected(ctx context.Context, cfg Config, rc *rest.Config, client kubernetes.Interface) error {
	id := cfg.Identity
	if id == "" {
		host, _ := os.Hostname()
		id = host + "_" + string(uuid.NewUUID())
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, LeaseNamespace, LeaseName,
		client.CoreV1(), client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("controllermanager: lease lock: %w", err)
	}
	log := cfg.Log.With("identity", id)
	for ctx.Err() == nil {
		if err := term(ctx, cfg, rc, client, lock, log); err != nil {
			return err
		}
	}
	return nil
}

// term campaigns for the Lease and, once it holds it, runs the controllers
// until the Lease is lost or ctx ends. It returns after they have stopped.
func term(ctx context.Context, cfg Config, rc *rest.Config, client kubernetes.Interface, lock resourcelock.Interface, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	leading := make(chan context.Context, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            LeaseName,
		LeaseDuration:   or(cfg.LeaseDuration, DefaultLeaseDuration),
		RenewDeadline:   or(cfg.RenewDeadline, DefaultRenewDeadline),
		RetryPeriod:     or(cfg.RetryPeriod, DefaultRetryPeriod),
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			// lctx ends when the Lease is lost. The controllers run on
			// this function's goroutine, so term can wait for them.
			OnStartedLeading: func(lctx context.Context) { leading <- lctx },
			OnStoppedLeading: func() { log.Info("not leading") },
		},
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		le.Run(ctx)
	}()
	select {
	case lctx := <-leading:
		log.Info("acquired lease, starting controllers")
		err := runControllers(lctx, cfg, rc, client)
		cancel() // lost the lease or a controller failed: give the lease up
		<-elected
		return err
	case <-elected:
		return nil
	}
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// runControllers builds fresh informers and every controller, and runs them
// until ctx ends. Fresh caches per term mean a new leader starts from the API
// server's state, not from what it saw when it last led.
func runControllers(ctx context.Context, cfg Config, rc *rest.Config, client kubernetes.Interface) error {
	log := cfg.Log
	factory := informers.NewSharedInformerFactory(client, 0)
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("controllermanager: dynamic client: %w", err)
	}
	// The garbage collector watches every resource for metadata only,
	// through the metadata client (protobuf PartialObjectMetadata), rather
	// than decoding whole objects into maps.
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("controllermanager: metadata client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return fmt.Errorf("controllermanager: discovery client: %w", err)
	}
	ipam, err := nodeipam.New(client, factory, log, cfg.ClusterCIDR, cfg.NodeCIDRMaskSize)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cs := []controller{
		{"endpoints", 5, endpoints.New(client, factory, log)},
		{"endpointslice", 5, endpointslice.New(client, factory, log)},
		{"nodelifecycle", 2, nodelifecycle.New(client, factory, log, cfg.NodeMonitorGracePeriod, nil)},
		{"nodeipam", 1, ipam},
		{"serviceaccount", 2, serviceaccount.New(client, factory, log)},
		{"namespace", 4, namespace.New(client, dyn, disc, factory, log)},
		{"garbagecollector", 10, garbagecollector.New(md, disc, log)},
	}
	if len(cfg.RootCA) > 0 {
		cs = append(cs, controller{"rootcacert", 2, rootcacert.New(client, factory, log, cfg.RootCA)})
	}
	cs = append(cs, replication(client, factory, log)...)
	cs = append(cs, controller{"job", 5, job.New(client, factory, log)})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	factory.Start(ctx.Done())
	errs := make(chan error, len(cs))
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if err := c.r.Run(ctx, c.workers); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("controllermanager: %s: %w", c.name, err)
				cancel()
			}
		})
	}
	wg.Wait()
	factory.Shutdown()
	close(errs)
	return <-errs // nil when every controller ended with ctx
}

// EndpointSliceManagedBy is the managed-by label value of the slices this
// controller manager writes.
const EndpointSliceManagedBy = endpointslice.ManagedBy
