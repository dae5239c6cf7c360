package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/hollow"
	"github.com/skiff-org/skiff/pkg/scheduler"
)

// env is a control plane with our scheduler and some hollow nodes.
type env struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	c      *testcluster.Cluster
}

func start(t *testing.T) *env {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- scheduler.Run(ctx, scheduler.Config{Client: c.Config}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler.Run = %v", err)
		}
	})
	return &env{t: t, ctx: ctx, client: c.Client, c: c}
}

// hollowNodes starts count hollow nodes named prefix0...; it returns once
// they are registered.
func (e *env) hollowNodes(prefix string, count int, cpu, mem string, labels map[string]string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- hollow.Run(ctx, hollow.Config{Client: e.c.Config, Count: count, NamePrefix: prefix,
			CPU: resource.MustParse(cpu), Memory: resource.MustParse(mem), Labels: labels, Workers: 8,
			OnReady: func() { close(ready) }})
	}()
	e.t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		e.t.Fatalf("hollow.Run = %v", err)
	case <-time.After(60 * time.Second):
		e.t.Fatalf("hollow nodes not ready after 60s")
	}
}

func mkPod(name, cpu string, labels map[string]string, mutate func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}}},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func (e *env) create(p *v1.Pod) {
	e.t.Helper()
	if _, err := e.client.CoreV1().Pods(p.Namespace).Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create pod %s: %v", p.Name, err)
	}
}

// waitFor polls until cond holds or the deadline passes.
func (e *env) waitFor(what string, d time.Duration, cond func() (bool, error)) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %s (last error %v)", what, lastErr)
}

func (e *env) nodeOf(name string) string {
	e.t.Helper()
	var node string
	e.waitFor("pod "+name+" bound", 30*time.Second, func() (bool, error) {
		p, err := e.client.CoreV1().Pods("default").Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		node = p.Spec.NodeName
		return node != "", nil
	})
	return node
}

func TestPlacementRules(t *testing.T) {
	e := start(t)
	e.hollowNodes("small-", 2, "1", "2Gi", map[string]string{"size": "small"})
	e.hollowNodes("big-", 2, "8", "16Gi", map[string]string{"size": "big"})
	tainted, err := e.client.CoreV1().Nodes().Get(e.ctx, "big-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tainted.Spec.Taints = []v1.Taint{{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule}}
	if _, err := e.client.CoreV1().Nodes().Update(e.ctx, tainted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.create(mkPod("selector", "100m", nil, func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"size": "small"} }))
	e.create(mkPod("toleration", "100m", nil, func(p *v1.Pod) {
		p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "gpu", Effect: v1.TaintEffectNoSchedule}}
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{
			NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{"big-1"}}}}}}}}
	}))
	e.create(mkPod("large", "4", nil, nil))
	for i := 0; i < 4; i++ {
		e.create(mkPod(fmt.Sprintf("web-%d", i), "100m", map[string]string{"app": "web"}, func(p *v1.Pod) {
			p.Spec.Tolerations = []v1.Toleration{{Operator: v1.TolerationOpExists}}
			p.Spec.Affinity = &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: "kubernetes.io/hostname"}}}}
		}))
	}
	if n := e.nodeOf("selector"); !strings.HasPrefix(n, "small-") {
		t.Errorf("pod with nodeSelector size=small landed on %s", n)
	}
	if n := e.nodeOf("toleration"); n != "big-1" {
		t.Errorf("pod tolerating big-1's taint and pinned to it landed on %s", n)
	}
	if n := e.nodeOf("large"); n != "big-0" {
		t.Errorf("pod requesting 4 cpu landed on %s, want big-0 (the only untainted node with room)", n)
	}
	seen := map[string]string{}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("web-%d", i)
		n := e.nodeOf(name)
		if other, ok := seen[n]; ok {
			t.Errorf("anti-affine pods %s and %s share node %s", other, name, n)
		}
		seen[n] = name
	}
	// Hollow nodes run what is bound to them.
	e.waitFor("pod selector running with an IP", 30*time.Second, func() (bool, error) {
		p, err := e.client.CoreV1().Pods("default").Get(e.ctx, "selector", metav1.GetOptions{})
		return err == nil && p.Status.Phase == v1.PodRunning && p.Status.PodIP != "", err
	})
}

func TestUnschedulableThenNodeJoins(t *testing.T) {
	e := start(t)
	e.hollowNodes("n-", 2, "1", "2Gi", nil)
	e.create(mkPod("huge", "3", nil, nil))
	want := "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
	e.waitFor("PodScheduled=False condition", 30*time.Second, func() (bool, error) {
		p, err := e.client.CoreV1().Pods("default").Get(e.ctx, "huge", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == "Unschedulable" {
				if c.Message != want {
					return false, fmt.Errorf("message %q, want %q", c.Message, want)
				}
				return true, nil
			}
		}
		return false, nil
	})
	e.waitFor("FailedScheduling event", 30*time.Second, func() (bool, error) {
		evs, err := e.client.CoreV1().Events("default").List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "huge" && ev.Reason == "FailedScheduling" && ev.Type == v1.EventTypeWarning && ev.Message == want {
				return true, nil
			}
		}
		return false, nil
	})
	// Cordon n-0; a new big node joins: the pod goes there at once.
	cordon(t, e, "n-0")
	e.hollowNodes("big-", 1, "4", "8Gi", nil)
	if n := e.nodeOf("huge"); n != "big-0" {
		t.Errorf("pod landed on %s, want big-0", n)
	}
	for i := 0; i < 6; i++ {
		e.create(mkPod(fmt.Sprintf("small-%d", i), "10m", nil, nil))
	}
	for i := 0; i < 6; i++ {
		if n := e.nodeOf(fmt.Sprintf("small-%d", i)); n == "n-0" {
			t.Errorf("pod small-%d landed on cordoned node n-0", i)
		}
	}
	e.waitFor("Scheduled event", 30*time.Second, func() (bool, error) {
		evs, err := e.client.CoreV1().Events("default").List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "huge" && ev.Reason == "Scheduled" && ev.Message == "Successfully assigned default/huge to big-0" {
				return true, nil
			}
		}
		return false, nil
	})
}

func cordon(t *testing.T, e *env, name string) {
	t.Helper()
	patch := []byte(`{"spec":{"unschedulable":true}}`)
	if _, err := e.client.CoreV1().Nodes().Patch(e.ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("cordon %s: %v", name, err)
	}
}
