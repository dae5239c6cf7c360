// Package hollow runs simulated nodes for benchmarks and scale tests: it
// registers many Nodes from one process, keeps their Leases fresh, and moves
// every pod bound to them straight to Running and Ready with a fake pod IP,
// the way KWOK does for Kubernetes. No container ever runs.
package hollow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("hollow: bad configuration")

// LeaseNamespace holds node Leases.
const LeaseNamespace = "kube-node-lease"

// Config says how many nodes to simulate and what they offer.
type Config struct {
	Client     *rest.Config
	Log        *slog.Logger
	Count      int
	NamePrefix string            // default "hollow-"
	CPU        resource.Quantity // default 4
	Memory     resource.Quantity // default 16Gi
	Pods       int               // default 110
	Zones      int               // nodes are spread over this many zones (default 3)
	Labels     map[string]string // extra labels on every node
	// LeaseInterval is how often Leases are renewed (default 10s).
	LeaseInterval time.Duration
	// QPS and Burst of the API client (default 2000 and 4000).
	QPS   float32
	Burst int
	// Workers update pod statuses concurrently (default 128). A thousand
	// real kubelets write in parallel; with 32 the status writes trailed
	// the binds by ~8 s at 10,000 pods.
	Workers int
	// OnReady, when set, is called once every node and Lease is registered.
	OnReady func()
	// Stats, when set, is kept up to date while the nodes run.
	Stats *Stats
}

// Stats counts the writes hollow nodes make, for benchmarks.
type Stats struct {
	Running      atomic.Int64 // pod status writes that reported a pod Running
	StatusErrors atomic.Int64 // pod status writes that failed
	Leases       atomic.Int64 // Lease renewals
}

func (c *Config) defaults() error {
	if c.Client == nil || c.Count <= 0 {
		return fmt.Errorf("%w: need a client and a positive count", ErrConfig)
	}
	if c.Count > maxNodes {
		return fmt.Errorf("%w: at most %d nodes", ErrConfig, maxNodes)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.NamePrefix == "" {
		c.NamePrefix = "hollow-"
	}
	if c.CPU.IsZero() {
		c.CPU = resource.MustParse("4")
	}
	if c.Memory.IsZero() {
		c.Memory = resource.MustParse("16Gi")
	}
	if c.Pods <= 0 {
		c.Pods = 110
	}
	if c.Zones <= 0 {
		c.Zones = 3
	}
	if c.LeaseInterval <= 0 {
		c.LeaseInterval = 10 * time.Second
	}
	if c.QPS <= 0 {
		c.QPS = 2000
	}
	if c.Burst <= 0 {
		c.Burst = 2 * int(c.QPS)
	}
	if c.Workers <= 0 {
		c.Workers = 128
	}
	if c.Stats == nil {
		c.Stats = &Stats{}
	}
	return nil
}

// NodeName is the name of the i-th hollow node.
func NodeName(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i) }

// Run registers the nodes and serves them until ctx ends. The nodes stay
// registered afterwards; their Leases simply stop being renewed.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	rc := rest.CopyConfig(cfg.Client)
	rc.QPS, rc.Burst = cfg.QPS, cfg.Burst
	rc.UserAgent = "skiff-hollow"
	// Protobuf, as kubelets use: a pod status write or watch event costs
	// both sides far less CPU than JSON. Its own connection, so that a
	// thousand nodes' writes do not share one with the component under test.
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	if rc.Dial == nil {
		rc.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("hollow: client: %w", err)
	}
	h := &hollow{cfg: cfg, client: client, nodes: map[string]*hollowNode{}}
	for i := 0; i < cfg.Count; i++ {
		n := &hollowNode{index: i, name: NodeName(cfg.NamePrefix, i), ips: map[string]string{}}
		h.nodes[n.name] = n
		h.order = append(h.order, n)
	}
	if err := h.register(ctx); err != nil {
		return err
	}
	cfg.Log.Info("hollow nodes registered", "count", cfg.Count)
	return h.serve(ctx)
}

// hollowNode is one simulated node.
type hollowNode struct {
	index int
	name  string
	mu    sync.Mutex
	lease *coordinationv1.Lease
	ips   map[string]string // pod UID -> IP
	used  [256]bool         // host part of the node's /24
}

type hollow struct {
	cfg    Config
	client kubernetes.Interface
	nodes  map[string]*hollowNode // read-only after Run starts
	order  []*hollowNode
}

// forEach runs fn over all nodes with bounded concurrency and returns the
// first error.
func (h *hollow) forEach(ctx context.Context, fn func(context.Context, *hollowNode) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	work := make(chan *hollowNode)
	for i := 0; i < min(h.cfg.Workers, len(h.order)); i++ {
		wg.Go(func() {
			for n := range work {
				if err := fn(ctx, n); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, n := range h.order {
		select {
		case work <- n:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func (h *hollow) register(ctx context.Context) error {
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LeaseNamespace}}
	if _, err := h.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("hollow: namespace %s: %w", LeaseNamespace, err)
	}
	return h.forEach(ctx, func(ctx context.Context, n *hollowNode) error {
		if err := h.registerNode(ctx, n); err != nil {
			return fmt.Errorf("hollow: node %s: %w", n.name, err)
		}
		if err := h.renewLease(ctx, n, time.Now()); err != nil {
			return fmt.Errorf("hollow: lease %s: %w", n.name, err)
		}
		return nil
	})
}

func (h *hollow) registerNode(ctx context.Context, n *hollowNode) error {
	want := h.nodeObject(n, time.Now())
	nodes := h.client.CoreV1().Nodes()
	got, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = nodes.Get(ctx, n.name, metav1.GetOptions{})
		if err == nil {
			got.Labels, got.Spec.PodCIDR, got.Spec.PodCIDRs = want.Labels, want.Spec.PodCIDR, want.Spec.PodCIDRs
			got, err = nodes.Update(ctx, got, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return err
	}
	// Some servers drop status on create; write it through the subresource.
	got.Status = want.Status
	_, err = nodes.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	return err
}

// nodeIP is the node's own fake address; pods get addresses in podCIDR.
func nodeIP(i int) string { return fmt.Sprintf("10.%d.%d.%d", 127-i/65536%64, i/256%256, i%256) }

// maxNodes is how many nodes the fake pod ranges (10.128.0.0/9) allow.
const maxNodes = 1 << 15

func podCIDR(i int) string { return fmt.Sprintf("10.%d.%d.0/24", 128+i/256, i%256) }

func podIP(i, host int) string { return fmt.Sprintf("10.%d.%d.%d", 128+i/256, i%256, host) }

func (h *hollow) nodeObject(n *hollowNode, now time.Time) *v1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":        n.name,
		"kubernetes.io/os":              "linux",
		"kubernetes.io/arch":            "amd64",
		"topology.kubernetes.io/zone":   fmt.Sprintf("zone-%d", n.index%h.cfg.Zones),
		"topology.kubernetes.io/region": "hollow",
		"node.skiff.dev/hollow":         "true",
	}
	for k, v := range h.cfg.Labels {
		labels[k] = v
	}
	res := v1.ResourceList{
		v1.ResourceCPU:              h.cfg.CPU,
		v1.ResourceMemory:           h.cfg.Memory,
		v1.ResourcePods:             *resource.NewQuantity(int64(h.cfg.Pods), resource.DecimalSI),
		v1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	t := metav1.NewTime(now)
	cond := func(typ v1.NodeConditionType, status v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		return v1.NodeCondition{Type: typ, Status: status, Reason: reason, Message: msg, LastHeartbeatTime: t, LastTransitionTime: t}
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels},
		Spec:       v1.NodeSpec{PodCIDR: podCIDR(n.index), PodCIDRs: []string{podCIDR(n.index)}},
		Status: v1.NodeStatus{
			Capacity:    res,
			Allocatable: res,
			Phase:       v1.NodeRunning,
			Conditions: []v1.NodeCondition{
				cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "hollow node is posting ready status"),
				cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "hollow node has sufficient memory available"),
				cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "hollow node has no disk pressure"),
				cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "hollow node has sufficient PID available"),
			},
			Addresses: []v1.NodeAddress{
				{Type: v1.NodeInternalIP, Address: nodeIP(n.index)},
				{Type: v1.NodeHostName, Address: n.name},
			},
			NodeInfo: v1.NodeSystemInfo{
				MachineID:               n.name,
				SystemUUID:              n.name,
				BootID:                  n.name,
				KernelVersion:           "hollow",
				OSImage:                 "skiff hollow node",
				ContainerRuntimeVersion: "hollow://1.0",
				KubeletVersion:          "v1.35.0-skiff-hollow",
				KubeProxyVersion:        "v1.35.0-skiff-hollow",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
		},
	}
}

const leaseDurationSeconds = 40

// renewLease creates the node's Lease or moves its renewTime to now.
func (h *hollow) renewLease(ctx context.Context, n *hollowNode, now time.Time) error {
	leases := h.client.CoordinationV1().Leases(LeaseNamespace)
	n.mu.Lock()
	l := n.lease
	n.mu.Unlock()
	mt := metav1.NewMicroTime(now)
	if l == nil {
		dur := int32(leaseDurationSeconds)
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: LeaseNamespace},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &n.name, LeaseDurationSeconds: &dur, RenewTime: &mt},
		}
		got, err := leases.Create(ctx, l, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = leases.Get(ctx, n.name, metav1.GetOptions{})
			if err == nil {
				got.Spec.RenewTime = &mt
				got, err = leases.Update(ctx, got, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return err
		}
		n.setLease(got)
		return nil
	}
	l = l.DeepCopy()
	l.Spec.RenewTime = &mt
	got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	h.cfg.Stats.Leases.Add(1)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		n.setLease(nil) // start over next time from the server's copy
	}
	if err != nil {
		return err
	}
	n.setLease(got)
	return nil
}

func (n *hollowNode) setLease(l *coordinationv1.Lease) {
	n.mu.Lock()
	n.lease = l
	n.mu.Unlock()
}

// serve renews Leases and drives pods until ctx ends.
func (h *hollow) serve(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(h.client, 0)
	defer factory.Shutdown()
	podInf := factory.Core().V1().Pods()
	lister := podInf.Lister()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer q.ShutDown()
	enqueue := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		p, ok := obj.(*v1.Pod)
		if !ok {
			return
		}
		if _, mine := h.nodes[p.Spec.NodeName]; mine {
			q.Add(p.Namespace + "/" + p.Name)
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*v1.Pod); ok {
				h.release(p)
			}
		},
	}); err != nil {
		return fmt.Errorf("hollow: handler: %w", err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced) {
		return fmt.Errorf("hollow: pod cache did not sync: %w", ctx.Err())
	}
	if h.cfg.OnReady != nil {
		h.cfg.OnReady()
	}
	var wg sync.WaitGroup
	for i := 0; i < h.cfg.Workers; i++ {
		wg.Go(func() {
			for {
				key, quit := q.Get()
				if quit {
					return
				}
				if err := h.syncPod(ctx, lister, key); err != nil && ctx.Err() == nil {
					h.cfg.Log.Debug("pod sync failed", "pod", key, "err", err)
					q.AddRateLimited(key)
				} else {
					q.Forget(key)
				}
				q.Done(key)
			}
		})
	}
	wg.Go(func() { h.leaseLoop(ctx) })
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
	return nil
}

// leaseLoop renews every Lease once per interval, spread evenly over it so
// that a thousand nodes make a steady trickle rather than a burst.
func (h *hollow) leaseLoop(ctx context.Context) {
	step := h.cfg.LeaseInterval / time.Duration(len(h.order))
	t := time.NewTicker(max(step, time.Millisecond))
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n := h.order[i%len(h.order)]
			if err := h.renewLease(ctx, n, now); err != nil && ctx.Err() == nil {
				h.cfg.Log.Debug("lease renewal failed", "node", n.name, "err", err)
			}
		}
	}
}
