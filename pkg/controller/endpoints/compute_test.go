package endpoints

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type podOpt func(*v1.Pod)

func ready(p *v1.Pod) {
	p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(time.Minute))})
}
func terminating(p *v1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0.Add(2 * time.Minute)} }
func noIP(p *v1.Pod)        { p.Status.PodIP = "" }
func labelled(app string) podOpt {
	return func(p *v1.Pod) { p.Labels = map[string]string{"app": app} }
}
func namedPort(name string, port int32) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, v1.ContainerPort{Name: name, ContainerPort: port, Protocol: v1.ProtocolTCP})
	}
}
func hostname(h, sub string) podOpt {
	return func(p *v1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = h, sub }
}

func pod(name, ip string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec:       v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c"}}},
		Status:     v1.PodStatus{PodIP: ip, Phase: v1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func service(opts ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func addr(name, ip string) v1.EndpointAddress {
	n := "n1"
	return v1.EndpointAddress{IP: ip, NodeName: &n, TargetRef: &v1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}}
}

var http8080 = []v1.EndpointPort{{Name: "http", Port: 8080, Protocol: v1.ProtocolTCP}}

func TestSubsets(t *testing.T) {
	named := func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("web") }
	publish := func(s *v1.Service) { s.Spec.PublishNotReadyAddresses = true }
	withHost := addr("a", "10.0.0.1")
	withHost.Hostname = "a"
	tests := []struct {
		name string
		svc  *v1.Service
		pods []*v1.Pod
		want []v1.EndpointSubset
	}{
		{"no pods", service(), nil, nil},
		{"ready and not ready", service(), []*v1.Pod{pod("b", "10.0.0.2"), pod("a", "10.0.0.1", ready)},
			[]v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr("a", "10.0.0.1")}, NotReadyAddresses: []v1.EndpointAddress{addr("b", "10.0.0.2")}, Ports: http8080}}},
		{"pod without IP skipped", service(), []*v1.Pod{pod("a", "", ready, noIP)}, nil},
		{"other labels skipped", service(), []*v1.Pod{pod("a", "10.0.0.1", ready, labelled("db"))}, nil},
		{"terminating excluded", service(), []*v1.Pod{pod("a", "10.0.0.1", ready, terminating)}, nil},
		{"publishNotReady puts all in addresses, terminating too", service(publish),
			[]*v1.Pod{pod("a", "10.0.0.1"), pod("b", "10.0.0.2", terminating)},
			[]v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr("a", "10.0.0.1"), addr("b", "10.0.0.2")}, Ports: http8080}}},
		{"named port resolved per pod", service(named),
			[]*v1.Pod{pod("a", "10.0.0.1", ready, namedPort("web", 8080)), pod("b", "10.0.0.2", ready, namedPort("web", 9090)), pod("c", "10.0.0.3", ready)},
			[]v1.EndpointSubset{
				{Addresses: []v1.EndpointAddress{addr("a", "10.0.0.1")}, Ports: http8080},
				{Addresses: []v1.EndpointAddress{addr("b", "10.0.0.2")}, Ports: []v1.EndpointPort{{Name: "http", Port: 9090, Protocol: v1.ProtocolTCP}}},
			}},
		{"hostname when subdomain is the service", service(),
			[]*v1.Pod{pod("a", "10.0.0.1", ready, hostname("a", "web")), pod("b", "10.0.0.2", ready, hostname("b", "other"))},
			[]v1.EndpointSubset{{Addresses: []v1.EndpointAddress{withHost, addr("b", "10.0.0.2")}, Ports: http8080}}},
		{"succeeded pod skipped", service(), []*v1.Pod{pod("a", "10.0.0.1", func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded })}, nil},
	}
	for _, tt := range tests {
		got, _ := Subsets(tt.svc, tt.pods)
		if !apiequality.Semantic.DeepEqual(got, tt.want) {
			t.Errorf("%s: Subsets() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestSubsetsTriggerTime(t *testing.T) {
	_, got := Subsets(service(), []*v1.Pod{pod("a", "10.0.0.1", ready), pod("b", "10.0.0.2")})
	if want := t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("Subsets() trigger = %v, want %v", got, want)
	}
}

func TestSelectsWithoutSelector(t *testing.T) {
	svc := service(func(s *v1.Service) { s.Spec.Selector = nil })
	if Selects(svc, pod("a", "10.0.0.1")) {
		t.Errorf("Selects(no selector) = true, want false")
	}
}
