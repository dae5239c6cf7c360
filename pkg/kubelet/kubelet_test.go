package kubelet

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// runKubelet runs a kubelet against a fake API and the fake runtime; the
// returned stop ends it and waits.
func runKubelet(t *testing.T, client *fake.Clientset, cri *fakeCRI, sock, dataDir string) (stop func()) {
	t.Helper()
	k, err := New(Config{Client: client, NodeName: "n1", NodeIP: "192.0.2.10", DataDir: dataDir, RuntimeEndpoint: sock,
		Port: -1, SyncPeriod: 200 * time.Millisecond, RelistPeriod: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Run() did not return after cancel")
		}
	}
}

func newPod(name string, policy v1.RestartPolicy) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{NodeName: "n1", RestartPolicy: policy, Containers: []v1.Container{{Name: "app", Image: "busybox", Command: []string{"sleep", "1000"}}}}}
}

func getPod(t *testing.T, client *fake.Clientset, name string) *v1.Pod {
	t.Helper()
	p, err := client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return p
}

// eventually polls cond up to 10s, reporting what it last saw.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within 10s; last: %s", what, last)
}

func appStatus(p *v1.Pod) v1.ContainerStatus {
	if p == nil || len(p.Status.ContainerStatuses) == 0 {
		return v1.ContainerStatus{}
	}
	return p.Status.ContainerStatuses[0]
}

func TestKubeletPodLifecycle(t *testing.T) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.NodeSpec{PodCIDR: "10.42.0.0/24"}}
	client := fake.NewSimpleClientset(node)
	cri := newFakeCRI()
	sock := cri.serve(t)
	dataDir := t.TempDir()
	stop := runKubelet(t, client, cri, sock, dataDir)
	ctx := context.Background()

	// Node registration: labels and a Ready condition.
	eventually(t, "node ready", func() (bool, string) {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status == v1.ConditionTrue && n.Labels["kubernetes.io/hostname"] == "n1" && n.Status.NodeInfo.ContainerRuntimeVersion == "skiff-process://0.0.1", c.Message
			}
		}
		return false, "no Ready condition"
	})

	// A pod runs.
	if _, err := client.CoreV1().Pods("default").Create(ctx, newPod("web", v1.RestartPolicyAlways), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web running", func() (bool, string) {
		p := getPod(t, client, "web")
		if p == nil {
			return false, "missing"
		}
		ready := findCondition(p.Status.Conditions, v1.PodReady)
		return p.Status.Phase == v1.PodRunning && ready != nil && ready.Status == v1.ConditionTrue && p.Status.PodIP == "10.42.0.9" &&
			p.Status.HostIP == "192.0.2.10", p.Status.String()
	})

	// Its process dies: restarted at once, restartCount 1, lastState says why.
	ids := cri.running("app")
	if len(ids) != 1 {
		t.Fatalf("running app containers = %v, want one", ids)
	}
	cri.exit(ids[0], 1, "")
	eventually(t, "restart", func() (bool, string) {
		cs := appStatus(getPod(t, client, "web"))
		return cs.RestartCount == 1 && cs.State.Running != nil && cs.LastTerminationState.Terminated != nil &&
			cs.LastTerminationState.Terminated.ExitCode == 1 && cs.LastTerminationState.Terminated.Reason == "Error", cs.String()
	})
	// A second death waits in back-off.
	cri.exit(cri.running("app")[0], 2, "")
	eventually(t, "back-off", func() (bool, string) {
		cs := appStatus(getPod(t, client, "web"))
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" &&
			strings.HasPrefix(cs.State.Waiting.Message, "back-off 10s restarting failed container=app pod=web_default"), cs.String()
	})

	// Never + exit 1: Failed, and not restarted.
	if _, err := client.CoreV1().Pods("default").Create(ctx, newPod("job", v1.RestartPolicyNever), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "job running", func() (bool, string) {
		p := getPod(t, client, "job")
		return p != nil && p.Status.Phase == v1.PodRunning, "not yet"
	})
	for _, id := range cri.running("app") {
		cri.mu.Lock()
		pod := cri.containers[id].Labels[labelPodName]
		cri.mu.Unlock()
		if pod == "job" {
			cri.exit(id, 1, "")
		}
	}
	eventually(t, "job failed", func() (bool, string) {
		p := getPod(t, client, "job")
		return p != nil && p.Status.Phase == v1.PodFailed && appStatus(p).RestartCount == 0, p.Status.String()
	})

	// Liveness failure: killed, restarted, with events.
	live := newPod("live", v1.RestartPolicyAlways)
	live.Spec.Containers[0].LivenessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"check"}}},
		PeriodSeconds: 1, FailureThreshold: 1}
	cri.mu.Lock()
	cri.execExit = 1
	cri.mu.Unlock()
	if _, err := client.CoreV1().Pods("default").Create(ctx, live, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "liveness restart", func() (bool, string) {
		cs := appStatus(getPod(t, client, "live"))
		return cs.RestartCount >= 1, cs.String()
	})
	cri.mu.Lock()
	cri.execExit = 0
	cri.mu.Unlock()
	eventually(t, "liveness events", func() (bool, string) {
		evs, _ := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		var unhealthy, killing bool
		var seen []string
		for _, e := range evs.Items {
			seen = append(seen, e.Reason+": "+e.Message)
			if e.InvolvedObject.Name != "live" {
				continue
			}
			unhealthy = unhealthy || e.Reason == "Unhealthy" && e.Message == "Liveness probe failed: probe said no" && e.Type == v1.EventTypeWarning
			killing = killing || e.Reason == "Killing" && e.Message == "Container app failed liveness probe, will be restarted"
		}
		return unhealthy && killing, strings.Join(seen, "; ")
	})

	// Restarting the kubelet adopts the running containers.
	p := getPod(t, client, "live")
	before := appStatus(p)
	cri.mu.Lock()
	creates := cri.creates
	cri.mu.Unlock()
	stop()
	stop = runKubelet(t, client, cri, sock, dataDir)
	defer func() { stop() }()
	time.Sleep(500 * time.Millisecond) // give a wrongly-starting kubelet the chance to create
	cri.mu.Lock()
	after := cri.creates
	cri.mu.Unlock()
	if after != creates {
		t.Errorf("containers created after restart = %d, want 0 (adopted)", after-creates)
	}
	if cs := appStatus(getPod(t, client, "live")); cs.ContainerID != before.ContainerID || cs.RestartCount != before.RestartCount {
		t.Errorf("after restart: %s/%d, want %s/%d", cs.ContainerID, cs.RestartCount, before.ContainerID, before.RestartCount)
	}

	// Graceful deletion: containers stopped, then the pod removed from the API.
	p = getPod(t, client, "live")
	now := metav1.NewTime(time.Now().Add(30 * time.Second))
	p.DeletionTimestamp = &now
	p.DeletionGracePeriodSeconds = ptr.To[int64](30)
	if _, err := client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod deleted", func() (bool, string) {
		_, err := client.CoreV1().Pods("default").Get(ctx, "live", metav1.GetOptions{})
		return apierrors.IsNotFound(err), "still there"
	})
	eventually(t, "containers removed", func() (bool, string) {
		cri.mu.Lock()
		defer cri.mu.Unlock()
		for _, c := range cri.containers {
			if c.Labels[labelPodName] == "live" {
				return false, c.Id
			}
		}
		return true, ""
	})
}
