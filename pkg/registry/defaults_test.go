package registry

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// mustYAML decodes a manifest the way a client would send it.
func mustYAML[T any](t *testing.T, s string) *T {
	t.Helper()
	var out T
	if err := yaml.UnmarshalStrict([]byte(s), &out); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return &out
}

// checkYAML compares obj with a manifest of what it must look like.
func checkYAML[T any](t *testing.T, name string, got *T, want string) {
	t.Helper()
	w := mustYAML[T](t, want)
	if !equality.Semantic.DeepEqual(got, w) {
		g, _ := yaml.Marshal(got)
		t.Errorf("%s: got\n%s\nwant\n%s", name, g, want)
	}
}

func TestDefaultPod(t *testing.T) {
	pod := mustYAML[corev1.Pod](t, `
metadata: {name: web}
spec:
  volumes:
  - name: cfg
    configMap: {name: cfg}
  - name: sec
    secret: {secretName: s}
  - name: scratch
  - name: host
    hostPath: {path: /tmp}
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80}]
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: 100m}
    livenessProbe:
      httpGet: {port: 80}
    env:
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
  - name: side
    image: busybox:1.36
`)
	DefaultPod(pod)
	checkYAML(t, "DefaultPod", pod, `
metadata: {name: web}
spec:
  volumes:
  - name: cfg
    configMap: {name: cfg, defaultMode: 420}
  - name: sec
    secret: {secretName: s, defaultMode: 420}
  - name: scratch
    emptyDir: {}
  - name: host
    hostPath: {path: /tmp, type: ""}
  containers:
  - name: web
    image: nginx
    imagePullPolicy: Always
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    ports: [{containerPort: 80, protocol: TCP}]
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: 100m, memory: 128Mi}
    livenessProbe:
      httpGet: {port: 80, path: /, scheme: HTTP}
      timeoutSeconds: 1
      periodSeconds: 10
      successThreshold: 1
      failureThreshold: 3
    env:
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName, apiVersion: v1}}
  - name: side
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  dnsPolicy: ClusterFirst
  serviceAccountName: default
  serviceAccount: default
  securityContext: {}
  schedulerName: default-scheduler
  enableServiceLinks: true
  priority: 0
  preemptionPolicy: PreemptLowerPriority
`)
}

func TestDefaultImagePullPolicy(t *testing.T) {
	tests := []struct {
		image string
		want  corev1.PullPolicy
	}{
		{"nginx", corev1.PullAlways},
		{"nginx:latest", corev1.PullAlways},
		{"nginx:1.25", corev1.PullIfNotPresent},
		{"registry:5000/nginx", corev1.PullAlways},
		{"registry:5000/nginx:v2", corev1.PullIfNotPresent},
		{"nginx@sha256:abcd", corev1.PullIfNotPresent},
	}
	for _, tt := range tests {
		if got := DefaultImagePullPolicy(tt.image); got != tt.want {
			t.Errorf("DefaultImagePullPolicy(%q) = %s, want %s", tt.image, got, tt.want)
		}
	}
}

func TestDefaultDeployment(t *testing.T) {
	d := mustYAML[appsv1.Deployment](t, `
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1"}]
`)
	DefaultDeployment(d)
	checkYAML(t, "DefaultDeployment", d, `
metadata: {name: web}
spec:
  replicas: 1
  revisionHistoryLimit: 10
  progressDeadlineSeconds: 600
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: "nginx:1"
        imagePullPolicy: IfNotPresent
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      restartPolicy: Always
      terminationGracePeriodSeconds: 30
      dnsPolicy: ClusterFirst
      securityContext: {}
      schedulerName: default-scheduler
      enableServiceLinks: true
`)
	rec := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}
	DefaultDeployment(rec)
	if rec.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("DefaultDeployment(Recreate) set rollingUpdate %v", rec.Spec.Strategy.RollingUpdate)
	}
}

func TestDefaultService(t *testing.T) {
	svc := mustYAML[corev1.Service](t, `
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80}, {port: 53, protocol: UDP, targetPort: dns}]
`)
	DefaultService(svc)
	checkYAML(t, "DefaultService(NodePort)", svc, `
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, protocol: TCP, targetPort: 80}, {port: 53, protocol: UDP, targetPort: dns}]
  sessionAffinity: None
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv4]
`)
	cip := mustYAML[corev1.Service](t, `{spec: {clusterIP: 10.43.0.5, sessionAffinity: ClientIP, ports: [{port: 80}]}}`)
	DefaultService(cip)
	checkYAML(t, "DefaultService(ClusterIP)", cip, `
spec:
  type: ClusterIP
  clusterIP: 10.43.0.5
  clusterIPs: [10.43.0.5]
  ports: [{port: 80, protocol: TCP, targetPort: 80}]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  internalTrafficPolicy: Cluster
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv4]
`)
	ext := mustYAML[corev1.Service](t, `{spec: {type: ExternalName, externalName: example.com}}`)
	DefaultService(ext)
	checkYAML(t, "DefaultService(ExternalName)", ext, `{spec: {type: ExternalName, externalName: example.com, sessionAffinity: None}}`)
}

func TestDefaultOthers(t *testing.T) {
	rc := mustYAML[corev1.ReplicationController](t, `
spec:
  template:
    metadata: {labels: {app: a}}
    spec: {containers: [{name: a, image: a:1}]}
`)
	DefaultReplicationController(rc)
	if rc.Spec.Selector["app"] != "a" || rc.Labels["app"] != "a" || *rc.Spec.Replicas != 1 || rc.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("DefaultReplicationController: selector %v labels %v replicas %v restartPolicy %q", rc.Spec.Selector, rc.Labels, *rc.Spec.Replicas, rc.Spec.Template.Spec.RestartPolicy)
	}

	rs := &appsv1.ReplicaSet{}
	DefaultReplicaSet(rs)
	if *rs.Spec.Replicas != 1 {
		t.Errorf("DefaultReplicaSet: replicas %d, want 1", *rs.Spec.Replicas)
	}

	ns := &corev1.Namespace{}
	ns.Name = "team-a"
	prepareNamespace(ns)
	DefaultNamespace(ns)
	if ns.Status.Phase != corev1.NamespaceActive || len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != "kubernetes" || ns.Labels[NamespaceNameLabel] != "team-a" {
		t.Errorf("namespace defaults: %+v", ns)
	}

	sec := &corev1.Secret{}
	DefaultSecret(sec)
	if sec.Type != corev1.SecretTypeOpaque {
		t.Errorf("DefaultSecret: type %q, want Opaque", sec.Type)
	}

	node := &corev1.Node{Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}}}
	node.Spec.PodCIDR = "10.42.3.0/24"
	DefaultNode(node)
	if len(node.Spec.PodCIDRs) != 1 || node.Spec.PodCIDRs[0] != "10.42.3.0/24" {
		t.Errorf("DefaultNode: podCIDRs %v, want [10.42.3.0/24]", node.Spec.PodCIDRs)
	}
	if q := node.Status.Allocatable[corev1.ResourceCPU]; q.String() != "4" {
		t.Errorf("DefaultNode: allocatable cpu %s, want 4", q.String())
	}

	ep := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{{Port: 80}}}}}
	DefaultEndpoints(ep)
	if ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("DefaultEndpoints: protocol %q", ep.Subsets[0].Ports[0].Protocol)
	}

	es := &discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{{}}}
	DefaultEndpointSlice(es)
	if *es.Ports[0].Protocol != corev1.ProtocolTCP || *es.Ports[0].Name != "" {
		t.Errorf("DefaultEndpointSlice: port %+v", es.Ports[0])
	}
}

func TestPrepareAndQOS(t *testing.T) {
	res := func(req, lim string) corev1.ResourceRequirements {
		r := corev1.ResourceRequirements{}
		if req != "" {
			r.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req), corev1.ResourceMemory: resource.MustParse("64Mi")}
		}
		if lim != "" {
			r.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim), corev1.ResourceMemory: resource.MustParse("64Mi")}
		}
		return r
	}
	tests := []struct {
		name string
		res  []corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{"nothing", []corev1.ResourceRequirements{{}}, corev1.PodQOSBestEffort},
		{"requests only", []corev1.ResourceRequirements{res("100m", "")}, corev1.PodQOSBurstable},
		{"equal", []corev1.ResourceRequirements{res("1", "1")}, corev1.PodQOSGuaranteed},
		{"limits only", []corev1.ResourceRequirements{res("", "1")}, corev1.PodQOSGuaranteed},
		{"lower request", []corev1.ResourceRequirements{res("500m", "1")}, corev1.PodQOSBurstable},
		{"one without", []corev1.ResourceRequirements{res("1", "1"), {}}, corev1.PodQOSBurstable},
	}
	for _, tt := range tests {
		pod := &corev1.Pod{}
		for _, r := range tt.res {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Resources: r})
		}
		pod.Status.Phase = corev1.PodRunning
		preparePod(pod)
		if pod.Status.QOSClass != tt.want || pod.Status.Phase != corev1.PodPending {
			t.Errorf("%s: preparePod gives qos %s phase %s, want %s Pending", tt.name, pod.Status.QOSClass, pod.Status.Phase, tt.want)
		}
	}
}

func TestAddDefaultTolerations(t *testing.T) {
	secs := int64(300)
	tests := []struct {
		name string
		have []corev1.Toleration
		want int // tolerations added
	}{
		{"none", nil, 2},
		{"tolerates all", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, 0},
		{"not-ready", []corev1.Toleration{{Key: TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, 1},
		{"NoSchedule only", []corev1.Toleration{{Key: TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, 2},
	}
	for _, tt := range tests {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: tt.have}}
		AddDefaultTolerations(pod, secs)
		added := pod.Spec.Tolerations[len(tt.have):]
		if len(added) != tt.want {
			t.Errorf("%s: AddDefaultTolerations added %v, want %d", tt.name, added, tt.want)
		}
		for _, a := range added {
			if a.Effect != corev1.TaintEffectNoExecute || a.Operator != corev1.TolerationOpExists || *a.TolerationSeconds != secs {
				t.Errorf("%s: added %+v", tt.name, a)
			}
		}
	}
}

func TestPrepareServiceUpdate(t *testing.T) {
	old := mustYAML[corev1.Service](t, `
spec:
  type: NodePort
  clusterIP: 10.43.0.7
  clusterIPs: [10.43.0.7]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports: [{port: 80, nodePort: 30080, protocol: TCP}]
`)
	svc := mustYAML[corev1.Service](t, `{spec: {type: NodePort, ports: [{port: 80}]}}`)
	prepareServiceUpdate(svc, old)
	if svc.Spec.ClusterIP != "10.43.0.7" || svc.Spec.Ports[0].NodePort != 30080 || len(svc.Spec.ClusterIPs) != 1 {
		t.Errorf("prepareServiceUpdate kept clusterIP %q clusterIPs %v nodePort %d", svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.Ports[0].NodePort)
	}
	toCIP := mustYAML[corev1.Service](t, `{spec: {type: ClusterIP, externalTrafficPolicy: Cluster, ports: [{port: 80, nodePort: 30080}]}}`)
	prepareServiceUpdate(toCIP, old)
	if toCIP.Spec.Ports[0].NodePort != 0 || toCIP.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("prepareServiceUpdate to ClusterIP kept nodePort %d, externalTrafficPolicy %q", toCIP.Spec.Ports[0].NodePort, toCIP.Spec.ExternalTrafficPolicy)
	}
}

func TestDefaultSecretFoldsStringData(t *testing.T) {
	s := &corev1.Secret{Data: map[string][]byte{"a": []byte("old"), "b": []byte("keep")}, StringData: map[string]string{"a": "new", "c": "x"}}
	DefaultSecret(s)
	want := map[string]string{"a": "new", "b": "keep", "c": "x"}
	for k, v := range want {
		if string(s.Data[k]) != v {
			t.Errorf("DefaultSecret: data[%s] = %q, want %q", k, s.Data[k], v)
		}
	}
	if s.StringData != nil || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("DefaultSecret: stringData %v type %q, want nil Opaque", s.StringData, s.Type)
	}
}
