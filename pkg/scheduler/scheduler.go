package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	schedlisters "k8s.io/client-go/listers/scheduling/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-org/skiff/pkg/scheduler/placement"
)

// SchedulerName is the spec.schedulerName this scheduler serves (an empty
// name means it too).
const SchedulerName = "default-scheduler"

// ErrNoClient is returned by Run without a client configuration.
var ErrNoClient = errors.New("scheduler: no client configuration")

// Config configures the scheduler.
type Config struct {
	Client *rest.Config
	Log    *slog.Logger
	// Workers is how many goroutines filter and score nodes for one pod on
	// large clusters (default GOMAXPROCS).
	Workers int
	// QPS and Burst limit the scheduler's own API client (default 5000 and
	// 10000: binding 1,000 pods/s takes 1,000 requests/s). Events use a
	// separate, slower client so they never delay binds.
	QPS   float32
	Burst int
	// Binders is how many binds may be in flight at once (default 256).
	// Binds per second never exceed Binders divided by the bind latency,
	// which is tens to hundreds of milliseconds on a busy API server; with
	// 64 the binds fell seconds behind pod creation at 1,000 pods/s.
	Binders int
	// AssumeTTL drops an assumed pod whose bind succeeded but that the watch
	// never showed bound (default 30s).
	AssumeTTL time.Duration
	// Stats, when set, is kept up to date while the scheduler runs.
	Stats *Stats
}

// Run schedules pods until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil {
		return ErrNoClient
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QPS <= 0 {
		cfg.QPS = 5000
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 2 * int(cfg.QPS)
	}
	if cfg.Binders <= 0 {
		cfg.Binders = 256
	}
	if cfg.AssumeTTL <= 0 {
		cfg.AssumeTTL = 30 * time.Second
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	rc := clientConfig(cfg.Client)
	rc.QPS, rc.Burst = cfg.QPS, cfg.Burst
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("scheduler: client: %w", err)
	}
	ec := clientConfig(cfg.Client)
	ec.QPS, ec.Burst = 50, 100
	eventClient, err := kubernetes.NewForConfig(ec)
	if err != nil {
		return fmt.Errorf("scheduler: event client: %w", err)
	}
	s := &scheduler{
		cfg:     cfg,
		log:     cfg.Log,
		stats:   cfg.Stats,
		client:  client,
		cache:   newCache(cfg.AssumeTTL),
		snapper: newSnapshotter(),
		decider: placement.NewDecider(cfg.Workers, uint64(time.Now().UnixNano())),
		now:     time.Now,
		binds:   make(chan bindTask, 4096),
		reports: make(chan report, 1024),
	}
	s.queue = newQueue(s.now, s.priority)
	return s.run(ctx, eventClient)
}

// clientConfig is the scheduler's client configuration: protobuf, which
// costs the API server and the scheduler a fraction of JSON's CPU per bind
// and per watch event, on a connection of its own (client-go otherwise
// shares one HTTP/2 connection between all configs with the same TLS
// settings, and in the all-in-one server that is every component).
func clientConfig(c *rest.Config) *rest.Config {
	rc := rest.CopyConfig(c)
	rc.UserAgent = "skiff-scheduler"
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	if rc.Dial == nil {
		rc.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return rc
}

type bindTask struct {
	item *qItem
	pod  *v1.Pod
	node string
}

type report struct {
	pod *v1.Pod
	msg string
}

// scheduler is the I/O shell: informers into the cache and the queue, one
// decision loop, binders and reporters.
type scheduler struct {
	cfg      Config
	log      *slog.Logger
	stats    *Stats
	client   kubernetes.Interface
	cache    *cache
	snapper  *snapshotter
	decider  *placement.Decider
	queue    *queue
	now      func() time.Time
	recorder record.EventRecorder
	binds    chan bindTask
	reports  chan report

	podLister corelisters.PodLister
	pcLister  schedlisters.PriorityClassLister
	nsLister  corelisters.NamespaceLister
	svcLister corelisters.ServiceLister
	// namespaces and services are rebuilt on change and swapped in whole,
	// so that the decision loop reads them without locks.
	namespaces atomic.Pointer[map[string]labels.Set]
	services   atomic.Pointer[map[string][]labels.Selector]
}

func (s *scheduler) run(ctx context.Context, eventClient kubernetes.Interface) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventClient.CoreV1().Events("")})
	s.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: SchedulerName})

	factory := informers.NewSharedInformerFactory(s.client, 0)
	defer factory.Shutdown()
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	pcInf := factory.Scheduling().V1().PriorityClasses()
	nsInf := factory.Core().V1().Namespaces()
	svcInf := factory.Core().V1().Services()
	s.podLister, s.pcLister = podInf.Lister(), pcInf.Lister()
	s.nsLister, s.svcLister = nsInf.Lister(), svcInf.Lister()
	podInformer := podInf.Informer()
	for _, inf := range []toolscache.SharedIndexInformer{nsInf.Informer(), svcInf.Informer()} {
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.refreshExtras() },
			UpdateFunc: func(any, any) { s.refreshExtras() },
			DeleteFunc: func(any) { s.refreshExtras() },
		}); err != nil {
			return fmt.Errorf("scheduler: handler: %w", err)
		}
	}
	if _, err := nodeInf.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.onNodeAdd,
		UpdateFunc: s.onNodeUpdate,
		DeleteFunc: s.onNodeDelete,
	}); err != nil {
		return fmt.Errorf("scheduler: handler: %w", err)
	}
	_ = pcInf.Informer()
	factory.Start(ctx.Done())
	if err := s.waitSynced(ctx, map[string]toolscache.InformerSynced{
		"pods": podInformer.HasSynced, "nodes": nodeInf.Informer().HasSynced,
		"priorityclasses": pcInf.Informer().HasSynced, "namespaces": nsInf.Informer().HasSynced,
		"services": svcInf.Informer().HasSynced,
	}); err != nil {
		return err
	}
	s.refreshExtras()
	// Pods are handled once priority classes are known, so that the queue
	// orders them right from the start.
	if _, err := podInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.onPodAdd,
		UpdateFunc: s.onPodUpdate,
		DeleteFunc: s.onPodDelete,
	}); err != nil {
		return fmt.Errorf("scheduler: handler: %w", err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced) {
		return fmt.Errorf("scheduler: pod cache did not sync: %w", ctx.Err())
	}
	s.log.Info("scheduler started", "workers", s.cfg.Workers, "qps", s.cfg.QPS, "binders", s.cfg.Binders)

	var wg sync.WaitGroup
	for i := 0; i < s.cfg.Binders; i++ {
		wg.Go(func() { s.binder(ctx) })
	}
	for i := 0; i < 4; i++ {
		wg.Go(func() { s.reporter(ctx) })
	}
	wg.Go(func() { s.housekeeping(ctx) })
	for {
		it := s.queue.Pop(ctx)
		if it == nil {
			break
		}
		s.scheduleOne(ctx, it)
	}
	wg.Wait()
	return nil
}

// syncWarnEvery is how often Run says which caches it still waits for.
const syncWarnEvery = 10 * time.Second

// waitSynced waits for the informers' first lists. A resource the API
// server does not serve (or a watch it keeps failing) would otherwise
// stall the scheduler silently; instead it warns, naming the resources.
func (s *scheduler) waitSynced(ctx context.Context, synced map[string]toolscache.InformerSynced) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	warned := start
	for {
		var waiting []string
		for name, ok := range synced {
			if !ok() {
				waiting = append(waiting, name)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Since(warned) >= syncWarnEvery {
			warned = time.Now()
			sort.Strings(waiting)
			s.log.Warn("scheduler waits for its caches; is the resource served and listable?",
				"resources", waiting, "waited", time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			sort.Strings(waiting)
			return fmt.Errorf("scheduler: caches of %v did not sync: %w", waiting, ctx.Err())
		case <-t.C:
		}
	}
}

// housekeeping releases pods from back-off and expires assumptions that
// the watch never confirmed.
func (s *scheduler) housekeeping(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.queue.Flush()
		s.stats.Queued.Store(int64(s.queue.Len()))
		if i%10 == 0 {
			if n := s.cache.Expire(s.now()); n > 0 {
				s.log.Warn("assumed pods expired without being seen bound", "count", n)
				s.queue.MoveUnschedulable(nil)
			}
		}
	}
}

// scheduleOne decides for one pod. It never waits on the network: the bind
// and any report go to other goroutines.
func (s *scheduler) scheduleOne(ctx context.Context, it *qItem) {
	pod, err := s.podLister.Pods(it.pod.Namespace).Get(it.pod.Name)
	if err != nil || pod.UID != it.pod.UID || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || s.cache.IsPlaced(pod.UID) {
		s.queue.Done(it)
		return
	}
	snap := s.cache.Update(s.snapper)
	snap.NamespaceLabels = *s.namespaces.Load()
	snap.Services = *s.services.Load()
	pi := placement.NewPodInfo(pod)
	node, err := s.decider.Decide(pi, snap)
	s.stats.Attempts.Add(1)
	if err != nil {
		s.stats.Unschedulable.Add(1)
		s.queue.Unschedulable(it)
		msg := err.Error()
		var fe *placement.FitError
		if !errors.As(err, &fe) {
			s.log.Info("pod cannot be scheduled", "pod", it.key, "err", err)
		}
		select {
		case s.reports <- report{pod: pod, msg: msg}:
		default: // reporting is best effort; the pod is retried anyway
		}
		return
	}
	// The assumed copy shares the informer's maps and slices; neither side
	// writes them.
	assumed := *pod
	assumed.Spec.NodeName = node
	api := *pi
	api.Pod = &assumed
	if err := s.cache.Assume(&api, node); err != nil {
		s.queue.Done(it)
		return
	}
	select {
	case s.binds <- bindTask{item: it, pod: pod, node: node}:
	case <-ctx.Done():
	}
}

func (s *scheduler) binder(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-s.binds:
			s.bind(ctx, t)
		}
	}
}

func (s *scheduler) bind(ctx context.Context, t bindTask) {
	pod := t.pod
	b := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: t.node},
	}
	s.stats.InFlight.Add(1)
	start := time.Now()
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	s.stats.InFlight.Add(-1)
	if err != nil {
		s.stats.BindErrors.Add(1)
		s.cache.Forget(pod.UID)
		if ctx.Err() != nil {
			return
		}
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			// Deleted, or bound by someone else: the watch will tell.
			s.queue.Done(t.item)
		} else {
			s.log.Warn("bind failed", "pod", t.item.key, "node", t.node, "err", err)
			s.queue.Backoff(t.item)
		}
		s.queue.MoveUnschedulable(nil)
		return
	}
	s.stats.Bound.Add(1)
	s.stats.BindNanos.Add(int64(time.Since(start)))
	s.cache.FinishBinding(pod.UID, s.now())
	s.queue.Done(t.item)
	s.recorder.Eventf(pod, v1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, t.node)
}

// reporter tells the user why a pod waits: a FailedScheduling event and
// the PodScheduled=False condition.
func (s *scheduler) reporter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.reports:
			s.recorder.Event(r.pod, v1.EventTypeWarning, "FailedScheduling", r.msg)
			if err := s.setUnschedulable(ctx, r.pod, r.msg); err != nil && ctx.Err() == nil {
				s.log.Debug("pod condition not updated", "pod", podKey(r.pod), "err", err)
			}
		}
	}
}

func (s *scheduler) setUnschedulable(ctx context.Context, pod *v1.Pod, msg string) error {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable && c.Message == msg {
			return nil
		}
	}
	p := pod.DeepCopy()
	cond := v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable,
		Message: msg, LastTransitionTime: metav1.NewTime(s.now())}
	found := false
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type != v1.PodScheduled {
			continue
		}
		if c.Status == cond.Status {
			cond.LastTransitionTime = c.LastTransitionTime
		}
		*c, found = cond, true
	}
	if !found {
		p.Status.Conditions = append(p.Status.Conditions, cond)
	}
	_, err := s.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// priority is the pod's priority: spec.priority as the API server resolved
// it, else its PriorityClass, else the global default class, else 0.
func (s *scheduler) priority(pod *v1.Pod) int32 {
	if pod.Spec.Priority != nil {
		return *pod.Spec.Priority
	}
	if name := pod.Spec.PriorityClassName; name != "" {
		if pc, err := s.pcLister.Get(name); err == nil {
			return pc.Value
		}
		return 0
	}
	pcs, _ := s.pcLister.List(labels.Everything())
	for _, pc := range pcs {
		if pc.GlobalDefault {
			return pc.Value
		}
	}
	return 0
}

func (s *scheduler) refreshExtras() {
	ns := map[string]labels.Set{}
	if s.nsLister != nil {
		list, _ := s.nsLister.List(labels.Everything())
		for _, n := range list {
			ns[n.Name] = labels.Set(n.Labels)
		}
	}
	svc := map[string][]labels.Selector{}
	if s.svcLister != nil {
		list, _ := s.svcLister.List(labels.Everything())
		for _, sv := range list {
			if len(sv.Spec.Selector) > 0 {
				svc[sv.Namespace] = append(svc[sv.Namespace], labels.SelectorFromSet(sv.Spec.Selector))
			}
		}
	}
	s.namespaces.Store(&ns)
	s.services.Store(&svc)
}
