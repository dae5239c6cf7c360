package registry

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func running(ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: "c", Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func waiting(reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
}

func terminated(reason string, code int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code}}}
}

func podWith(phase corev1.PodPhase, containers int, statuses ...corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{}
	p.Name = "web"
	p.CreationTimestamp = ago(5 * time.Minute)
	for i := 0; i < containers; i++ {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprint("c", i)})
	}
	p.Status.Phase = phase
	p.Status.ContainerStatuses = statuses
	return p
}

func TestPodRow(t *testing.T) {
	crashing := waiting("CrashLoopBackOff")
	crashing.RestartCount = 5
	crashing.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{FinishedAt: ago(90 * time.Second)}

	initPod := podWith(corev1.PodPending, 1, waiting("PodInitializing"))
	initPod.Spec.InitContainers = []corev1.Container{{Name: "i1"}, {Name: "i2"}}
	initPod.Status.InitContainerStatuses = []corev1.ContainerStatus{
		{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
		{Name: "i2", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
	}
	initFailed := podWith(corev1.PodPending, 1)
	initFailed.Spec.InitContainers = []corev1.Container{{Name: "i1"}}
	initFailed.Status.InitContainerStatuses = []corev1.ContainerStatus{
		{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}},
	}

	deleting := podWith(corev1.PodRunning, 1, running(true))
	deleting.DeletionTimestamp = &metav1.Time{Time: now}

	wide := podWith(corev1.PodRunning, 2, running(true), running(false))
	wide.Spec.NodeName = "node-1"
	wide.Status.PodIPs = []corev1.PodIP{{IP: "10.42.0.5"}}
	wide.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "a"}, {ConditionType: "b"}}
	wide.Status.Conditions = []corev1.PodCondition{{Type: "a", Status: corev1.ConditionTrue}, {Type: "b", Status: corev1.ConditionFalse}}

	completedWithRunning := podWith(corev1.PodRunning, 2, terminated("Completed", 0), running(true))
	completedWithRunning.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}

	tests := []struct {
		name string
		pod  *corev1.Pod
		want []interface{}
	}{
		{"pending", podWith(corev1.PodPending, 1), []interface{}{"web", "0/1", "Pending", "0", "5m", none, none, none, none}},
		{"creating", podWith(corev1.PodPending, 1, waiting("ContainerCreating")), []interface{}{"web", "0/1", "ContainerCreating", "0", "5m", none, none, none, none}},
		{"running", podWith(corev1.PodRunning, 1, running(true)), []interface{}{"web", "1/1", "Running", "0", "5m", none, none, none, none}},
		{"crashloop", podWith(corev1.PodRunning, 1, crashing), []interface{}{"web", "0/1", "CrashLoopBackOff", "5 (90s ago)", "5m", none, none, none, none}},
		{"completed", podWith(corev1.PodSucceeded, 1, terminated("Completed", 0)), []interface{}{"web", "0/1", "Completed", "0", "5m", none, none, none, none}},
		{"error", podWith(corev1.PodFailed, 1, terminated("Error", 1)), []interface{}{"web", "0/1", "Error", "0", "5m", none, none, none, none}},
		{"oomkilled", podWith(corev1.PodRunning, 1, terminated("OOMKilled", 137)), []interface{}{"web", "0/1", "OOMKilled", "0", "5m", none, none, none, none}},
		{"exit code", podWith(corev1.PodFailed, 1, terminated("", 2)), []interface{}{"web", "0/1", "ExitCode:2", "0", "5m", none, none, none, none}},
		{"init running", initPod, []interface{}{"web", "0/1", "Init:1/2", "0", "5m", none, none, none, none}},
		{"init failed", initFailed, []interface{}{"web", "0/1", "Init:ExitCode:3", "0", "5m", none, none, none, none}},
		{"terminating", deleting, []interface{}{"web", "1/1", "Terminating", "0", "5m", none, none, none, none}},
		{"wide", wide, []interface{}{"web", "1/2", "Running", "0", "5m", "10.42.0.5", "node-1", none, "1/2"}},
		{"completed sidecar", completedWithRunning, []interface{}{"web", "1/2", "Running", "0", "5m", none, none, none, none}},
	}
	for _, tt := range tests {
		if got := podRow(tt.pod, now); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: podRow = %#v, want %#v", tt.name, got, tt.want)
		}
	}
}

func TestServiceRow(t *testing.T) {
	svc := func(typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
		s := &corev1.Service{}
		s.Name = "web"
		s.CreationTimestamp = ago(3*time.Minute + 12*time.Second)
		s.Spec.Type = typ
		s.Spec.ClusterIP = "10.43.0.10"
		s.Spec.ClusterIPs = []string{"10.43.0.10"}
		s.Spec.Ports = ports
		s.Spec.Selector = map[string]string{"app": "web"}
		return s
	}
	lb := svc(corev1.ServiceTypeLoadBalancer, corev1.ServicePort{Port: 443, NodePort: 31443, Protocol: "TCP"})
	lbReady := lb.DeepCopy()
	lbReady.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	ext := svc(corev1.ServiceTypeExternalName)
	ext.Spec.ClusterIP, ext.Spec.ClusterIPs, ext.Spec.ExternalName, ext.Spec.Selector = "", nil, "example.com", nil

	tests := []struct {
		svc  *corev1.Service
		want []interface{}
	}{
		{svc(corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80, Protocol: "TCP"}),
			[]interface{}{"web", "ClusterIP", "10.43.0.10", none, "80/TCP", "3m12s", "app=web"}},
		{svc(corev1.ServiceTypeNodePort, corev1.ServicePort{Port: 80, NodePort: 30080, Protocol: "TCP"}, corev1.ServicePort{Port: 53, Protocol: "UDP"}),
			[]interface{}{"web", "NodePort", "10.43.0.10", none, "80:30080/TCP,53/UDP", "3m12s", "app=web"}},
		{lb, []interface{}{"web", "LoadBalancer", "10.43.0.10", "<pending>", "443:31443/TCP", "3m12s", "app=web"}},
		{lbReady, []interface{}{"web", "LoadBalancer", "10.43.0.10", "192.0.2.1", "443:31443/TCP", "3m12s", "app=web"}},
		{ext, []interface{}{"web", "ExternalName", none, "example.com", none, "3m12s", none}},
	}
	for _, tt := range tests {
		if got := serviceRow(tt.svc, now); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("serviceRow(%s) = %#v, want %#v", tt.svc.Spec.Type, got, tt.want)
		}
	}
}

func TestOtherRows(t *testing.T) {
	node := &corev1.Node{}
	node.Name = "n1"
	node.CreationTimestamp = ago(50 * time.Hour)
	node.Labels = map[string]string{"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "", "kubernetes.io/role": "edge"}
	node.Spec.Unschedulable = true
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.2"}}
	node.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.33.0-skiff", OSImage: "Debian", KernelVersion: "6.1"}

	notReady := &corev1.Node{}
	notReady.Name = "n2"
	notReady.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}

	replicas := int32(3)
	d := &appsv1.Deployment{}
	d.Name = "web"
	d.CreationTimestamp = ago(time.Hour)
	d.Spec.Replicas = &replicas
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "a", Image: "nginx:1"}, {Name: "b", Image: "busybox"}}
	d.Status = appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2, Replicas: 3}

	rs := &appsv1.ReplicaSet{}
	rs.Name = "web-abc"
	rs.CreationTimestamp = ago(time.Hour)
	rs.Spec.Replicas = &replicas
	rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	rs.Spec.Template.Spec.Containers = []corev1.Container{{Name: "a", Image: "nginx:1"}}
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 1}

	ep := &corev1.Endpoints{}
	ep.Name = "web"
	ep.CreationTimestamp = ago(time.Minute)
	ep.Subsets = []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}, {IP: "10.0.0.3"}, {IP: "10.0.0.4"}},
		Ports:     []corev1.EndpointPort{{Port: 80}},
	}}

	ev := &corev1.Event{}
	ev.Name = "web.123"
	ev.InvolvedObject = corev1.ObjectReference{Kind: "Pod", Name: "web", FieldPath: "spec.containers{c}"}
	ev.Reason, ev.Message, ev.Type = "Pulled", " pulled image \n", "Normal"
	ev.Source = corev1.EventSource{Component: "kubelet", Host: "n1"}
	ev.FirstTimestamp, ev.LastTimestamp, ev.Count = ago(10*time.Minute), ago(30*time.Second), 4

	ev2 := &eventsv1.Event{}
	ev2.Name = "web.456"
	ev2.Regarding = corev1.ObjectReference{Kind: "Deployment", Name: "web"}
	ev2.Reason, ev2.Note, ev2.Type = "ScalingReplicaSet", "Scaled up", "Normal"
	ev2.ReportingController, ev2.ReportingInstance = "deployment-controller", "skiff"
	ev2.EventTime = metav1.NewMicroTime(now.Add(-2 * time.Minute))

	holder := "n1"
	lease := &coordinationv1.Lease{}
	lease.Name = "n1"
	lease.CreationTimestamp = ago(40 * time.Second)
	lease.Spec.HolderIdentity = &holder

	port, name, proto := int32(80), "http", corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4}
	slice.Name = "web-x"
	slice.CreationTimestamp = ago(time.Minute)
	slice.Ports = []discoveryv1.EndpointPort{{Port: &port, Name: &name, Protocol: &proto}}
	slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.2"}}}

	sec := &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"a": nil, "b": nil}}
	sec.Name = "s"
	sec.CreationTimestamp = ago(3 * 24 * time.Hour)
	cm := &corev1.ConfigMap{Data: map[string]string{"a": ""}, BinaryData: map[string][]byte{"b": nil}}
	cm.Name = "c"
	cm.CreationTimestamp = ago(time.Second)
	ns := &corev1.Namespace{Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	ns.Name = "default"

	tests := []struct {
		row  func(runtime.Object, time.Time) []interface{}
		obj  runtime.Object
		want []interface{}
	}{
		{nodeRow, node, []interface{}{"n1", "Ready,SchedulingDisabled", "control-plane,edge,master", "2d2h", "v1.33.0-skiff", "192.168.1.2", none, "Debian", "6.1", unknown}},
		{nodeRow, notReady, []interface{}{"n2", "NotReady", none, unknown, "", none, none, unknown, unknown, unknown}},
		{deploymentRow, d, []interface{}{"web", "2/3", int64(3), int64(2), "60m", "a,b", "nginx:1,busybox", "app=web"}},
		{replicaSetRow, rs, []interface{}{"web-abc", int64(3), int64(3), int64(1), "60m", "a", "nginx:1", "app=web"}},
		{endpointsRow, ep, []interface{}{"web", "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...", "60s"}},
		{coreEventRow, ev, []interface{}{"30s", "Normal", "Pulled", "pod/web", "spec.containers{c}", "kubelet, n1", "pulled image", "10m", int64(4), "web.123"}},
		{eventsV1Row, ev2, []interface{}{"2m", "Normal", "ScalingReplicaSet", "deployment/web", "", "deployment-controller, skiff", "Scaled up", "2m", int64(1), "web.456"}},
		{leaseRow, lease, []interface{}{"n1", "n1", "40s"}},
		{endpointSliceRow, slice, []interface{}{"web-x", "IPv4", "80", "10.0.0.1,10.0.0.2", "60s"}},
		{secretRow, sec, []interface{}{"s", "Opaque", int64(2), "3d"}},
		{configMapRow, cm, []interface{}{"c", int64(2), "1s"}},
		{namespaceRow, ns, []interface{}{"default", "Active", unknown}},
	}
	for _, tt := range tests {
		if got := tt.row(tt.obj, now); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("row(%T) = %#v, want %#v", tt.obj, got, tt.want)
		}
	}
}

func TestScale(t *testing.T) {
	d := &appsv1.Deployment{}
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	d.Status.Replicas = 2
	deploymentScale.SetReplicas(d, 5)
	if spec, status, sel := deploymentScale.Get(d); spec != 5 || status != 2 || sel != "app=web" {
		t.Errorf("deploymentScale.Get = %d, %d, %q, want 5, 2, app=web", spec, status, sel)
	}
	rc := &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Selector: map[string]string{"a": "b"}}}
	if spec, _, sel := rcScale.Get(rc); spec != 1 || sel != "a=b" {
		t.Errorf("rcScale.Get = %d, %q, want 1, a=b", spec, sel)
	}
	rs := &appsv1.ReplicaSet{}
	replicaSetScale.SetReplicas(rs, 0)
	if spec, _, _ := replicaSetScale.Get(rs); spec != 0 {
		t.Errorf("replicaSetScale.Get = %d, want 0", spec)
	}
}
