package registry

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// validateCase decodes obj (and old, if any) as the resource's type,
// defaults both as the handler does, and returns the validation errors.
func validateCase(t *testing.T, group, res, obj, old string) field.ErrorList {
	t.Helper()
	r := Lookup(group, res)
	decode := func(s string) runtime.Object {
		o := r.New()
		if err := yaml.UnmarshalStrict([]byte(s), o); err != nil {
			t.Fatalf("%s: yaml: %v", res, err)
		}
		r.Default(o)
		return o
	}
	o := decode(obj)
	if old == "" {
		return r.Validate(o, nil)
	}
	return r.Validate(o, decode(old))
}

// errStrings joins the errors' first lines (a pod update error goes on
// with a diff of the specs).
func errStrings(errs field.ErrorList) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i], _, _ = strings.Cut(e.Error(), "\n")
	}
	return strings.Join(s, "\n")
}

const deployBase = `
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1"}]
`

func deploy(mod string) string {
	return strings.Replace(deployBase, "spec:\n  selector", "spec:\n"+mod+"  selector", 1)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, group, res string
		obj, old         string
		want             []string
	}{
		{"valid deployment", "apps", "deployments", deployBase, "", nil},
		{"image required", "apps", "deployments",
			strings.Replace(deployBase, `image: "nginx:1"`, `image: ""`, 1), "",
			[]string{"spec.template.spec.containers[0].image: Required value"}},
		{"selector mismatch", "apps", "deployments",
			strings.Replace(deployBase, "labels: {app: web}", "labels: {app: api}", 1), "",
			[]string{"spec.template.metadata.labels: Invalid value: {\"app\":\"api\"}: `selector` does not match template `labels`"}},
		{"selector required", "apps", "deployments",
			strings.Replace(deployBase, "  selector: {matchLabels: {app: web}}\n", "", 1), "",
			[]string{"spec.selector: Required value",
				"spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"}},
		{"empty selector", "apps", "deployments",
			strings.Replace(deployBase, "selector: {matchLabels: {app: web}}", "selector: {}", 1), "",
			[]string{"spec.selector: Invalid value: {}: empty selector is invalid for deployment"}},
		{"negative replicas", "apps", "deployments", deploy("  replicas: -1\n"), "",
			[]string{"spec.replicas: Invalid value: -1: must be greater than or equal to 0"}},
		{"surge and unavailable zero", "apps", "deployments",
			deploy("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n"), "",
			[]string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"}},
		{"unavailable over 100%", "apps", "deployments",
			deploy("  strategy: {rollingUpdate: {maxUnavailable: 150%}}\n"), "",
			[]string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"}},
		{"recreate with rollingUpdate", "apps", "deployments",
			deploy("  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n"), "",
			[]string{"spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"}},
		{"restartPolicy Never in template", "apps", "deployments",
			strings.Replace(deployBase, "containers:", "restartPolicy: Never\n      containers:", 1), "",
			[]string{"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""}},
		{"selector immutable", "apps", "deployments",
			strings.NewReplacer("{app: web}", "{app: web, v: \"2\"}").Replace(deployBase), deployBase,
			[]string{"spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"}},
		{"replicaset immutable selector", "apps", "replicasets",
			strings.NewReplacer("{app: web}", "{app: web, v: \"2\"}").Replace(deployBase), deployBase,
			[]string{"spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"}},
		{"rc without template labels", "", "replicationcontrollers", `
spec:
  selector: {app: a}
  template:
    spec: {containers: [{name: a, image: a}]}
`, "", []string{"spec.template.metadata.labels: Invalid value: null: `selector` does not match template `labels`"}},

		{"no containers", "", "pods", `{metadata: {name: p}, spec: {containers: []}}`, "",
			[]string{"spec.containers: Required value"}},
		{"container names", "", "pods", `
spec:
  containers:
  - {name: Web, image: a}
  - {name: x, image: a}
  - {name: x, image: a}
`, "", []string{
			"spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
			"spec.containers[2].name: Duplicate value: \"x\""}},
		{"ports", "", "pods", `
spec:
  containers:
  - name: a
    image: a
    ports:
    - {containerPort: 70000, name: http}
    - {containerPort: 80, name: http, protocol: HTTP}
`, "", []string{
			"spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
			"spec.containers[0].ports[1].name: Duplicate value: \"http\"",
			"spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""}},
		{"resources", "", "pods", `
spec:
  containers:
  - name: a
    image: a
    resources:
      requests: {cpu: "2", memory: -1Mi}
      limits: {cpu: "1"}
`, "", []string{
			"spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
			"spec.containers[0].resources.requests[memory]: Invalid value: \"-1Mi\": must be greater than or equal to 0"}},
		{"env and mounts", "", "pods", `
spec:
  volumes: [{name: data}, {name: data}]
  containers:
  - name: a
    image: a
    env: [{name: ""}, {name: "A=B"}]
    volumeMounts: [{name: nope, mountPath: /x}, {name: data, mountPath: /x}]
`, "", []string{
			"spec.volumes[1].name: Duplicate value: \"data\"",
			"spec.containers[0].env[0].name: Required value",
			"spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
			"spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
			"spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/x\": must be unique"}},
		{"subPathExpr", "", "pods", `
spec:
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: a
    image: a
    volumeMounts: [{name: data, mountPath: /x, subPath: a, subPathExpr: "$(POD)"}, {name: data, mountPath: /y, subPathExpr: "../$(POD)"}, {name: data, mountPath: /z, subPathExpr: "logs/$(POD)"}]
`, "", []string{
			"spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: \"$(POD)\": subPathExpr and subPath are mutually exclusive",
			"spec.containers[0].volumeMounts[1].subPathExpr: Invalid value: \"../$(POD)\": must not contain '..'"}},
		{"two volume sources", "", "pods", `
spec:
  volumes: [{name: v, emptyDir: {}, hostPath: {path: /x}}]
  containers: [{name: a, image: a}]
`, "", []string{"spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type"}},
		{"probes", "", "pods", `
spec:
  containers:
  - name: a
    image: a
    livenessProbe: {successThreshold: 2, exec: {command: [x]}}
    readinessProbe: {periodSeconds: -1}
`, "", []string{
			"spec.containers[0].readinessProbe: Required value: must specify a handler type",
			"spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
			"spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"}},
		{"policies", "", "pods", `{spec: {restartPolicy: Sometimes, dnsPolicy: Weird, containers: [{name: a, image: a}]}}`, "", []string{
			"spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
			"spec.dnsPolicy: Unsupported value: \"Weird\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""}},
		{"bad toleration", "", "pods", `
spec:
  containers: [{name: a, image: a}]
  tolerations: [{key: k, operator: Exists, value: v}, {operator: Equal, value: v}]
`, "", []string{
			"spec.tolerations[0].operator: Invalid value: {\"key\":\"k\",\"operator\":\"Exists\",\"value\":\"v\"}: value must be empty when `operator` is 'Exists'",
			"spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""}},
		{"pod update image ok", "", "pods", `{spec: {containers: [{name: a, image: "b:2"}]}}`, `{spec: {containers: [{name: a, image: "b:1"}]}}`, nil},
		{"pod binding", "", "pods", `{spec: {nodeName: n1, containers: [{name: a, image: a}]}}`, `{spec: {containers: [{name: a, image: a}]}}`, nil},
		{"pod update nodeName", "", "pods", `{spec: {nodeName: n2, containers: [{name: a, image: a}]}}`, `{spec: {nodeName: n1, containers: [{name: a, image: a}]}}`,
			[]string{"spec: Forbidden: " + podUpdateForbiddenMsg}},

		{"service without ports", "", "services", `{spec: {selector: {app: a}}}`, "", []string{"spec.ports: Required value"}},
		{"headless without ports", "", "services", `{spec: {clusterIP: None}}`, "", nil},
		{"service ports", "", "services", `
spec:
  ports: [{name: a, port: 80}, {name: a, port: 80}, {port: 0, name: b, nodePort: 30001}]
`, "", []string{
			"spec.ports[1].name: Duplicate value: \"a\"",
			"spec.ports[1]: Duplicate value: {\"protocol\":\"TCP\",\"port\":80,\"targetPort\":0}",
			"spec.ports[2].port: Invalid value: 0: must be between 1 and 65535, inclusive",
			"spec.ports[2].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
			"spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"}},
		{"service type", "", "services", `{spec: {type: Magic, ports: [{port: 80}]}}`, "",
			[]string{"spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""}},
		{"clusterIP immutable", "", "services", `{spec: {clusterIP: 10.43.0.2, ports: [{port: 80}]}}`, `{spec: {clusterIP: 10.43.0.1, ports: [{port: 80}]}}`,
			[]string{"spec.clusterIPs[0]: Invalid value: [\"10.43.0.2\"]: may not change once set"}},

		{"clusterIP allocated", "", "services", `{spec: {clusterIP: 10.43.0.2, clusterIPs: [10.43.0.2], ports: [{port: 80}]}}`, `{spec: {ports: [{port: 80}]}}`, nil},
		{"clusterIP changed, old without clusterIPs", "", "services", `{spec: {clusterIP: 10.43.0.2, ports: [{port: 80}]}}`, `{spec: {clusterIP: 10.43.0.1, ports: [{port: 80}]}}`,
			[]string{"spec.clusterIPs[0]: Invalid value: [\"10.43.0.2\"]: may not change once set"}},
		{"configmap keys", "", "configmaps", `{data: {"a b": x, ok: y}, binaryData: {ok: eQ==}}`, "", []string{
			"data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
			"data[ok]: Invalid value: \"ok\": duplicate of key present in binaryData"}},
		{"configmap immutable", "", "configmaps", `{immutable: true, data: {a: "2"}}`, `{immutable: true, data: {a: "1"}}`,
			[]string{"data: Forbidden: field is immutable when `immutable` is set"}},
		{"tls secret", "", "secrets", `{type: kubernetes.io/tls, data: {tls.crt: eA==}}`, "",
			[]string{"data[tls.key]: Required value"}},
		{"dockerconfigjson", "", "secrets", `{type: kubernetes.io/dockerconfigjson, data: {.dockerconfigjson: eA==}}`, "",
			[]string{"data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": invalid character 'x' looking for beginning of value"}},
		{"secret type immutable", "", "secrets", `{type: Opaque}`, `{type: kubernetes.io/basic-auth, data: {username: eA==}}`,
			[]string{"type: Invalid value: \"Opaque\": field is immutable"}},
		{"node podCIDR change", "", "nodes", `{spec: {podCIDRs: [10.42.1.0/24]}}`, `{spec: {podCIDRs: [10.42.0.0/24]}}`,
			[]string{"spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"}},
		{"node taint", "", "nodes", `{spec: {taints: [{key: a, effect: Bad}]}}`, "",
			[]string{"spec.taints[0].effect: Unsupported value: \"Bad\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\""}},
		{"event namespace", "", "events", `{metadata: {name: e, namespace: a}, involvedObject: {kind: Pod, name: p, namespace: b}}`, "",
			[]string{"involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"}},
		{"events.k8s.io event", "events.k8s.io", "events", `{metadata: {name: e, namespace: a}, regarding: {namespace: a}, eventTime: "2025-01-01T00:00:00.000000Z", type: Normal, reason: R, action: A, reportingController: c, reportingInstance: i}`, "", nil},
		{"events.k8s.io event missing", "events.k8s.io", "events", `{metadata: {name: e, namespace: a}, regarding: {namespace: a}, type: Odd}`, "", []string{
			"eventTime: Required value",
			"reportingController: Required value",
			"reportingInstance: Required value",
			"action: Required value",
			"type: Invalid value: \"\": has invalid value: Odd",
			"reason: Required value"}},
		{"lease", "coordination.k8s.io", "leases", `{spec: {leaseDurationSeconds: 0}}`, "",
			[]string{"spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"}},
		{"endpointslice", "discovery.k8s.io", "endpointslices", `{addressType: IPv4, endpoints: [{addresses: ["::1"]}, {addresses: []}]}`, "", []string{
			"endpoints[0].addresses[0]: Invalid value: \"::1\": must be an IPv4 address",
			"endpoints[1].addresses: Required value: must contain at least 1 address"}},
		{"priorityclass too high", "scheduling.k8s.io", "priorityclasses", `{metadata: {name: big}, value: 1000000001}`, "",
			[]string{"value: Forbidden: maximum allowed value of a user defined priority is 1000000000"}},
		{"priorityclass system", "scheduling.k8s.io", "priorityclasses", `{metadata: {name: system-x}, value: 1}`, "",
			[]string{"metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-x is not a known system priority class"}},
		{"priorityclass value change", "scheduling.k8s.io", "priorityclasses", `{metadata: {name: a}, value: 2}`, `{metadata: {name: a}, value: 1}`,
			[]string{"value: Forbidden: may not be changed in an update."}},
		{"namespace finalizer", "", "namespaces", `{spec: {finalizers: [custom]}}`, "",
			[]string{"spec.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"}},
	}
	for _, tt := range tests {
		got := errStrings(validateCase(t, tt.group, tt.res, tt.obj, tt.old))
		if want := strings.Join(tt.want, "\n"); got != want {
			t.Errorf("%s: Validate =\n%s\nwant\n%s", tt.name, got, want)
		}
	}
}

func TestValidateObjectMeta(t *testing.T) {
	tests := []struct {
		res, name, generateName, namespace string
		want                               string
	}{
		{"pods", "web-1.a", "", "default", ""},
		{"pods", "", "", "default", "metadata.name: Required value: name or generateName is required"},
		{"pods", "Web", "", "default", "metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"},
		{"services", "1web", "", "default", "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"},
		{"namespaces", "a.b", "", "", "metadata.name: Invalid value: \"a.b\": must not contain dots"},
		{"namespaces", "a", "", "default", "metadata.namespace: Forbidden: not allowed on this type"},
		{"pods", "a", "", "", "metadata.namespace: Required value"},
		{"pods", "web-abcde", "web-", "default", ""},
	}
	for _, tt := range tests {
		r := Lookup("", tt.res)
		obj := r.New()
		m := obj.(interface {
			SetName(string)
			SetGenerateName(string)
			SetNamespace(string)
		})
		m.SetName(tt.name)
		m.SetGenerateName(tt.generateName)
		m.SetNamespace(tt.namespace)
		if got := errStrings(ValidateObjectMeta(r, mustAccessor(obj))); got != tt.want {
			t.Errorf("ValidateObjectMeta(%s %q) = %q, want %q", tt.res, tt.name, got, tt.want)
		}
	}

	pod := &corev1.Pod{}
	pod.Name, pod.Namespace, pod.UID, pod.ResourceVersion = "a", "default", "1", "5"
	pod.Labels = map[string]string{"bad key!": "x"}
	old := pod.DeepCopy()
	pod.UID = "2"
	want := "metadata.uid: Invalid value: \"2\": field is immutable\n" +
		"metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
	if got := errStrings(ValidateObjectMetaUpdate(Lookup("", "pods"), pod, old)); got != want {
		t.Errorf("ValidateObjectMetaUpdate = %q, want %q", got, want)
	}
}

func TestValidateGlobalDefault(t *testing.T) {
	a := &schedulingv1.PriorityClass{GlobalDefault: true}
	a.Name = "a"
	b := a.DeepCopy()
	b.Name = "b"
	if errs := ValidateGlobalDefault(b, []*schedulingv1.PriorityClass{a}); errStrings(errs) != "globalDefault: Forbidden: PriorityClass a is already marked as default. Only one default can exist" {
		t.Errorf("ValidateGlobalDefault = %v", errs)
	}
	if errs := ValidateGlobalDefault(a, []*schedulingv1.PriorityClass{a}); len(errs) != 0 {
		t.Errorf("ValidateGlobalDefault(self) = %v, want none", errs)
	}
	for _, pc := range SystemPriorityClasses() {
		if errs := validatePriorityClassObj(pc, nil); len(errs) != 0 {
			t.Errorf("validate(%s) = %v, want none", pc.Name, errs)
		}
	}
}

func mustAccessor(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(err)
	}
	return m
}
