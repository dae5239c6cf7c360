package kubelet

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

func TestExpandVars(t *testing.T) {
	vars := map[string]string{"A": "a", "B": "bee"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "a"},
		{"x$(A)y$(B)z", "xaybeez"},
		{"$(MISSING)", "$(MISSING)"},
		{"$$(A)", "$(A)"},
		{"$$", "$"},
		{"$(A", "$(A"},
		{"cost $5", "cost $5"},
		{"end$", "end$"},
		{"$$$(A)", "$a"},
	}
	for _, tt := range tests {
		if got := expandVars(tt.in, lookup); got != tt.want {
			t.Errorf("expandVars(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestServiceEnv(t *testing.T) {
	svcs := []*v1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web-app", Namespace: "ns"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.7",
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: v1.ProtocolUDP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "ns"}, Spec: v1.ServiceSpec{ClusterIP: "None", Ports: []v1.ServicePort{{Port: 1}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "elsewhere"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.9", Ports: []v1.ServicePort{{Port: 1}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.1",
			Ports: []v1.ServicePort{{Name: "https", Port: 443, Protocol: v1.ProtocolTCP}}}},
	}
	env := serviceEnv(svcs, "ns", true)
	want := map[string]string{
		"WEB_APP_SERVICE_HOST":          "10.43.0.7",
		"WEB_APP_SERVICE_PORT":          "80",
		"WEB_APP_SERVICE_PORT_HTTP":     "80",
		"WEB_APP_SERVICE_PORT_DNS":      "53",
		"WEB_APP_PORT":                  "tcp://10.43.0.7:80",
		"WEB_APP_PORT_80_TCP":           "tcp://10.43.0.7:80",
		"WEB_APP_PORT_80_TCP_PROTO":     "tcp",
		"WEB_APP_PORT_80_TCP_PORT":      "80",
		"WEB_APP_PORT_80_TCP_ADDR":      "10.43.0.7",
		"WEB_APP_PORT_53_UDP":           "udp://10.43.0.7:53",
		"WEB_APP_PORT_53_UDP_PROTO":     "udp",
		"WEB_APP_PORT_53_UDP_PORT":      "53",
		"WEB_APP_PORT_53_UDP_ADDR":      "10.43.0.7",
		"KUBERNETES_SERVICE_HOST":       "10.43.0.1",
		"KUBERNETES_SERVICE_PORT":       "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT":               "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP":       "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":  "443",
		"KUBERNETES_PORT_443_TCP_ADDR":  "10.43.0.1",
	}
	if len(env) != len(want) {
		t.Errorf("serviceEnv() has %d vars, want %d: %v", len(env), len(want), env)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("serviceEnv()[%s] = %q, want %q", k, env[k], v)
		}
	}
	off := serviceEnv(svcs, "ns", false)
	if _, ok := off["WEB_APP_SERVICE_HOST"]; ok || off["KUBERNETES_SERVICE_HOST"] != "10.43.0.1" {
		t.Errorf("serviceEnv(links off) = %v, want only the kubernetes service", off)
	}
}

type fakeObjects struct {
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
}

func (f fakeObjects) ConfigMap(ns, name string) (*v1.ConfigMap, error) {
	if c, ok := f.cms[ns+"/"+name]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f fakeObjects) Secret(ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func TestBuildEnv(t *testing.T) {
	objs := fakeObjects{
		cms:     map[string]*v1.ConfigMap{"ns/cfg": {Data: map[string]string{"MODE": "fast", "bad-key": "x", "LEVEL": "3"}}},
		secrets: map[string]*v1.Secret{"ns/sec": {Data: map[string][]byte{"password": []byte("hunter2")}}},
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1", Labels: map[string]string{"app": "web", "tier": "fe"}},
		Spec: v1.PodSpec{NodeName: "n1", ServiceAccountName: "sa", EnableServiceLinks: ptr.To(true)}}
	c := &v1.Container{Name: "c",
		Command: []string{"echo", "$(GREETING)", "$$(GREETING)"},
		EnvFrom: []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}},
			{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}, Optional: ptr.To(true)}}},
		Env: []v1.EnvVar{
			{Name: "NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "GREETING", Value: "hi $(NAME) in $(CFG_MODE) via $(WEB_SERVICE_HOST)"},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "LABELS", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
			{Name: "IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "PW", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
			{Name: "OPT", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "missing"}, Key: "k", Optional: ptr.To(true)}}},
			{Name: "MEM", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "WEB_SERVICE_HOST", Value: "overridden"},
		},
		Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}},
	}
	pod.Spec.Containers = []v1.Container{*c}
	svcs := []*v1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.7", Ports: []v1.ServicePort{{Port: 80}}}}}
	env, err := buildEnv(envInput{Pod: pod, Container: c, Services: svcs, Objects: objs, PodIP: "10.42.0.3",
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m")}})
	if err != nil {
		t.Fatalf("buildEnv() error = %v", err)
	}
	got := map[string]string{}
	for _, e := range env {
		got[e.Name] = e.Value
	}
	want := map[string]string{
		"NAME":             "p",
		"GREETING":         "hi p in fast via 10.43.0.7",
		"APP":              "web",
		"LABELS":           "app=\"web\"\ntier=\"fe\"",
		"IP":               "10.42.0.3",
		"PW":               "hunter2",
		"MEM":              "64",
		"CPU":              "2",
		"CFG_MODE":         "fast",
		"CFG_LEVEL":        "3",
		"WEB_SERVICE_HOST": "overridden",
		"WEB_SERVICE_PORT": "80",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("buildEnv()[%s] = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"OPT"} {
		if _, ok := got[k]; ok {
			t.Errorf("buildEnv() set %s, want it unset", k)
		}
	}
	cmd := expandCommand(c.Command, env)
	if cmd[1] != "hi p in fast via 10.43.0.7" || cmd[2] != "$(GREETING)" {
		t.Errorf("expandCommand() = %q, want expanded and escaped", cmd)
	}

	c.Env = append(c.Env, v1.EnvVar{Name: "REQ", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "missing"}, Key: "k"}}})
	if _, err := buildEnv(envInput{Pod: pod, Container: c, Objects: objs}); err == nil {
		t.Errorf("buildEnv(missing required secret) error = nil, want error")
	}
}
