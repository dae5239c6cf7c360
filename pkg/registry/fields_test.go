package registry

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestFields(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace = "p", "ns"
	pod.Spec = corev1.PodSpec{NodeName: "n1", RestartPolicy: "Always", SchedulerName: "default-scheduler", ServiceAccountName: "default", HostNetwork: true}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}}, NominatedNodeName: "n2"}

	node := &corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}
	node.Name = "n1"

	ev := &corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "p", UID: "u", APIVersion: "v1", ResourceVersion: "7", FieldPath: "spec"},
		Reason: "Started", Type: "Normal", ReportingController: "kubelet"}
	ev.Name, ev.Namespace = "e", "ns"
	evFields := fields.Set{
		"metadata.name": "e", "metadata.namespace": "ns",
		"involvedObject.kind": "Pod", "involvedObject.namespace": "ns", "involvedObject.name": "p", "involvedObject.uid": "u",
		"involvedObject.apiVersion": "v1", "involvedObject.resourceVersion": "7", "involvedObject.fieldPath": "spec",
		"reason": "Started", "reportingComponent": "kubelet", "source": "kubelet", "type": "Normal",
	}
	ev2 := &eventsv1.Event{Regarding: ev.InvolvedObject, Reason: "Started", Type: "Normal", ReportingController: "kubelet"}
	ev2.Name, ev2.Namespace = "e", "ns"

	sec := &corev1.Secret{Type: corev1.SecretTypeTLS}
	sec.Name, sec.Namespace = "s", "ns"
	ns := &corev1.Namespace{Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}
	ns.Name = "ns"
	rs := &appsv1.ReplicaSet{Status: appsv1.ReplicaSetStatus{Replicas: 3}}
	rs.Name, rs.Namespace = "r", "ns"
	rc := &corev1.ReplicationController{Status: corev1.ReplicationControllerStatus{Replicas: 2}}
	rc.Name, rc.Namespace = "r", "ns"
	svc := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "None", Type: corev1.ServiceTypeClusterIP}}
	svc.Name, svc.Namespace = "s", "ns"

	tests := []struct {
		f    func(runtime.Object) fields.Set
		obj  runtime.Object
		want fields.Set
	}{
		{podFields, pod, fields.Set{"metadata.name": "p", "metadata.namespace": "ns", "spec.nodeName": "n1", "spec.restartPolicy": "Always",
			"spec.schedulerName": "default-scheduler", "spec.serviceAccountName": "default", "spec.hostNetwork": "true",
			"status.phase": "Running", "status.podIP": "10.0.0.1", "status.nominatedNodeName": "n2"}},
		{nodeFields, node, fields.Set{"metadata.name": "n1", "spec.unschedulable": "true"}},
		{coreEventFields, ev, evFields},
		{eventsV1Fields, ev2, evFields},
		{secretFields, sec, fields.Set{"metadata.name": "s", "metadata.namespace": "ns", "type": "kubernetes.io/tls"}},
		{namespaceFields, ns, fields.Set{"metadata.name": "ns", "status.phase": "Terminating"}},
		{replicaSetFields, rs, fields.Set{"metadata.name": "r", "metadata.namespace": "ns", "status.replicas": "3"}},
		{rcFields, rc, fields.Set{"metadata.name": "r", "metadata.namespace": "ns", "status.replicas": "2"}},
		{serviceFields, svc, fields.Set{"metadata.name": "s", "metadata.namespace": "ns", "spec.clusterIP": "None", "spec.type": "ClusterIP"}},
	}
	for _, tt := range tests {
		if got := tt.f(tt.obj); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Fields(%T) = %v, want %v", tt.obj, got, tt.want)
		}
	}
	sel := fields.ParseSelectorOrDie("spec.nodeName=n1,status.phase!=Succeeded")
	if !sel.Matches(podFields(pod)) {
		t.Errorf("selector %v does not match pod fields", sel)
	}
}
