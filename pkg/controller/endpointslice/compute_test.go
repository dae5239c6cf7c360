package endpointslice

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func svc() *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "svc-uid", CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}},
		},
	}
}

func pod(i int, ready, terminating bool) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%03d", i), Namespace: "ns", UID: types.UID(fmt.Sprintf("uid-%03d", i)), Labels: map[string]string{"app": "web"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec:       v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c"}}},
		Status:     v1.PodStatus{PodIP: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Phase: v1.PodRunning},
	}
	if ready {
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	}
	if terminating {
		p.DeletionTimestamp = &metav1.Time{Time: t0}
	}
	return p
}

func pods(n int) []*v1.Pod {
	var out []*v1.Pod
	for i := range n {
		out = append(out, pod(i, true, false))
	}
	return out
}

// apply plays ch onto slices as the API server would, naming created slices.
func apply(slices []*discovery.EndpointSlice, ch Changes, seq *int) []*discovery.EndpointSlice {
	byName := map[string]*discovery.EndpointSlice{}
	for _, s := range slices {
		byName[s.Name] = s
	}
	for _, s := range ch.Delete {
		delete(byName, s.Name)
	}
	for _, s := range ch.Update {
		byName[s.Name] = s
	}
	for _, s := range ch.Create {
		s = s.DeepCopy()
		*seq++
		s.Name = fmt.Sprintf("%s%05d", s.GenerateName, *seq)
		byName[s.Name] = s
	}
	var out []*discovery.EndpointSlice
	for _, s := range byName {
		out = append(out, s)
	}
	return out
}

func count(slices []*discovery.EndpointSlice) (endpoints int, maxPer int) {
	for _, s := range slices {
		endpoints += len(s.Endpoints)
		maxPer = max(maxPer, len(s.Endpoints))
	}
	return
}

func TestReconcileSizes(t *testing.T) {
	tests := []struct {
		pods       int
		wantSlices int
	}{
		{0, 1}, // placeholder
		{1, 1},
		{100, 1},
		{101, 2},
		{250, 3},
	}
	for _, tt := range tests {
		seq := 0
		got := apply(nil, Reconcile(svc(), pods(tt.pods), nil), &seq)
		n, maxPer := count(got)
		if len(got) != tt.wantSlices || n != tt.pods || maxPer > MaxEndpoints {
			t.Errorf("Reconcile(%d pods) = %d slices, %d endpoints, max %d per slice; want %d slices, %d endpoints", tt.pods, len(got), n, maxPer, tt.wantSlices, tt.pods)
		}
		again := Reconcile(svc(), pods(tt.pods), got)
		if !again.Empty() {
			t.Errorf("Reconcile(%d pods) second pass = %+v, want no changes", tt.pods, again)
		}
		for _, s := range got {
			if s.Labels[discovery.LabelServiceName] != "web" || s.Labels[discovery.LabelManagedBy] != ManagedBy || s.GenerateName != "web-" {
				t.Errorf("slice labels %v generateName %q, want service-name, managed-by and web-", s.Labels, s.GenerateName)
			}
			if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-uid" || s.OwnerReferences[0].Kind != "Service" {
				t.Errorf("slice ownerReferences = %+v, want the Service", s.OwnerReferences)
			}
		}
	}
}

func TestReconcileOnePodChangeTouchesOneSlice(t *testing.T) {
	seq := 0
	ps := pods(250)
	cur := apply(nil, Reconcile(svc(), ps, nil), &seq)
	ps[120] = pod(120, false, false)
	ch := Reconcile(svc(), ps, cur)
	if len(ch.Update) != 1 || len(ch.Create) != 0 || len(ch.Delete) != 0 {
		t.Fatalf("Reconcile(one pod not ready) = %d creates %d updates %d deletes, want 0 1 0", len(ch.Create), len(ch.Update), len(ch.Delete))
	}
	// Removing pods keeps the others where they are; emptied slices go.
	cur = apply(cur, ch, &seq)
	ch = Reconcile(svc(), ps[:50], cur)
	cur = apply(cur, ch, &seq)
	if n, _ := count(cur); n != 50 {
		t.Errorf("after scale down: %d endpoints, want 50", n)
	}
	for _, s := range cur {
		if len(s.Endpoints) == 0 {
			t.Errorf("after scale down: empty slice %s kept", s.Name)
		}
	}
	cur = apply(cur, Reconcile(svc(), ps[:1], cur), &seq)
	if n, _ := count(cur); n != 1 || len(cur) != 1 {
		t.Errorf("after scale to one: %d slices %d endpoints, want 1 and 1", len(cur), n)
	}
	// Scale to zero leaves a placeholder.
	cur = apply(cur, Reconcile(svc(), nil, cur), &seq)
	if n, _ := count(cur); n != 0 || len(cur) != 1 || len(cur[0].Ports) != 0 {
		t.Errorf("after scale to zero: %d slices %d endpoints, want one empty placeholder", len(cur), n)
	}
}

func TestEndpointConditions(t *testing.T) {
	publish := svc()
	publish.Spec.PublishNotReadyAddresses = true
	tests := []struct {
		name                        string
		svc                         *v1.Service
		pod                         *v1.Pod
		ready, serving, terminating bool
	}{
		{"ready", svc(), pod(1, true, false), true, true, false},
		{"not ready", svc(), pod(1, false, false), false, false, false},
		{"terminating ready", svc(), pod(1, true, true), false, true, true},
		{"terminating not ready", svc(), pod(1, false, true), false, false, true},
		{"publish not ready", publish, pod(1, false, false), true, true, false},
	}
	for _, tt := range tests {
		c := Endpoint(tt.svc, tt.pod).Conditions
		if *c.Ready != tt.ready || *c.Serving != tt.serving || *c.Terminating != tt.terminating {
			t.Errorf("%s: Endpoint().Conditions = ready %v serving %v terminating %v, want %v %v %v", tt.name, *c.Ready, *c.Serving, *c.Terminating, tt.ready, tt.serving, tt.terminating)
		}
	}
}

func TestReconcileNamedPortsSplitSlices(t *testing.T) {
	s := svc()
	s.Spec.Ports[0].TargetPort = intstr.FromString("web")
	a, b := pod(1, true, false), pod(2, true, false)
	a.Spec.Containers[0].Ports = []v1.ContainerPort{{Name: "web", ContainerPort: 8080}}
	b.Spec.Containers[0].Ports = []v1.ContainerPort{{Name: "web", ContainerPort: 9090}}
	ch := Reconcile(s, []*v1.Pod{a, b}, nil)
	if len(ch.Create) != 2 {
		t.Fatalf("Reconcile(two port numbers) creates %d slices, want 2", len(ch.Create))
	}
	for _, sl := range ch.Create {
		if len(sl.Endpoints) != 1 || len(sl.Ports) != 1 {
			t.Errorf("slice %+v, want one endpoint and one port", sl)
		}
	}
}

func TestTrackerCaughtUp(t *testing.T) {
	tr := newTracker()
	if !tr.caughtUp("ns/web", nil) {
		t.Fatalf("caughtUp(no writes) = false, want true")
	}
	tr.wrote("ns/web", &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", ResourceVersion: "10"}})
	old := &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", ResourceVersion: "9"}}
	tests := []struct {
		cached []*discovery.EndpointSlice
		want   bool
	}{
		{nil, false},
		{[]*discovery.EndpointSlice{old}, false},
		{[]*discovery.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Name: "web-1", ResourceVersion: "10"}}}, true},
	}
	for _, tt := range tests {
		if got := tr.caughtUp("ns/web", tt.cached); got != tt.want {
			t.Errorf("caughtUp(%v) = %v, want %v", tt.cached, got, tt.want)
		}
	}
}
