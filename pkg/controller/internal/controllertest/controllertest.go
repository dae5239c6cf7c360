// Package controllertest holds what the integration tests of the replica
// controllers share when they run against a real API server: a client that
// is never the bottleneck, a stand-in kubelet that makes pods ready, a way to
// run controllers for a while, and polling. It is for tests only.
package controllertest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Timeout is how long Eventually waits.
const Timeout = 45 * time.Second

// Log is the controllers' logger: discarded, unless SKIFF_TEST_LOG (info)
// or SKIFF_CONTROLLER_DEBUG (debug) asks for it on stderr.
func Log() *slog.Logger {
	if os.Getenv("SKIFF_CONTROLLER_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Client talks protobuf at the controller manager's QPS and burst, so that
// neither the client's rate limit nor JSON decoding slows a test down.
func Client(cfg *rest.Config) kubernetes.Interface {
	rc := rest.CopyConfig(cfg)
	rc.QPS, rc.Burst = 5000, 10000
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return kubernetes.NewForConfigOrDie(rc)
}

// Runner is a controller.
type Runner interface {
	Run(ctx context.Context, workers int) error
}

// Run starts f and runs each controller with the given number of workers
// until stop is called; stop returns once they and f have ended.
func Run(f informers.SharedInformerFactory, workers int, controllers ...Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	var wg sync.WaitGroup
	for _, c := range controllers {
		wg.Go(func() { _ = c.Run(ctx, workers) })
	}
	return func() {
		cancel()
		wg.Wait()
		f.Shutdown()
	}
}

// FakeKubelet marks every new pod Running and Ready delay after it sees the
// pod, until the test ends. It times from when it sees the pod because
// creationTimestamp has whole seconds only.
func FakeKubelet(t testing.TB, cfg *rest.Config, delay time.Duration) {
	FakeKubeletFunc(t, cfg, delay, func(p *v1.Pod) {
		p.Status.Phase = v1.PodRunning
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	})
}

// FakeKubeletFunc is FakeKubelet with the status change of its choice: set
// changes a copy of each new pod (its phase, say Succeeded or Failed for a
// Job's pods), which then is written to the pod's status.
func FakeKubeletFunc(t testing.TB, cfg *rest.Config, delay time.Duration, set func(*v1.Pod)) {
	client := Client(cfg)
	f := informers.NewSharedInformerFactory(client, 0)
	ctx, cancel := context.WithCancel(context.Background())
	type seen struct {
		pod *v1.Pod
		at  time.Time
	}
	work := make(chan seen, 100000)
	f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { work <- seen{obj.(*v1.Pod), time.Now()} },
	})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case w := <-work:
					if wait := time.Until(w.at.Add(delay)); wait > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(wait):
						}
					}
					p := w.pod.DeepCopy()
					set(p)
					_, _ = client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
		})
	}
	f.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		f.Shutdown()
	})
}

// Eventually polls cond every 50 ms until it holds, and fails the test with
// cond's last message when it has not within Timeout.
func Eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in %v; last: %s", what, Timeout, last)
}

// OwnedPods lists the live pods in ns whose controller has uid; nil on a
// list error, which it logs (the callers poll).
func OwnedPods(t testing.TB, c kubernetes.Interface, ns string, uid types.UID) []v1.Pod {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Logf("list pods: %v", err)
		return nil
	}
	var out []v1.Pod
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == uid && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}
