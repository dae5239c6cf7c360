package placement

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestPodRequests(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	ctr := func(cpu, mem string) v1.Container {
		return v1.Container{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)}}}
	}
	sidecar := ctr("200m", "100Mi")
	sidecar.RestartPolicy = &always
	tests := []struct {
		name string
		spec v1.PodSpec
		want Resource
	}{
		{"apps summed", v1.PodSpec{Containers: []v1.Container{ctr("100m", "1Mi"), ctr("200m", "2Mi")}},
			Resource{MilliCPU: 300, Memory: 3 << 20, Pods: 1}},
		{"init larger wins per resource", v1.PodSpec{
			InitContainers: []v1.Container{ctr("1", "1Mi")},
			Containers:     []v1.Container{ctr("100m", "5Mi")}},
			Resource{MilliCPU: 1000, Memory: 5 << 20, Pods: 1}},
		{"max of init containers, not sum", v1.PodSpec{
			InitContainers: []v1.Container{ctr("500m", "1Mi"), ctr("600m", "1Mi")},
			Containers:     []v1.Container{ctr("100m", "1Mi")}},
			Resource{MilliCPU: 600, Memory: 1 << 20, Pods: 1}},
		{"sidecar counts with apps and later inits", v1.PodSpec{
			InitContainers: []v1.Container{sidecar, ctr("500m", "1Mi")},
			Containers:     []v1.Container{ctr("100m", "1Mi")}},
			Resource{MilliCPU: 700, Memory: 101 << 20, Pods: 1}},
		{"overhead added", v1.PodSpec{
			Containers: []v1.Container{ctr("100m", "1Mi")},
			Overhead:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("50m")}},
			Resource{MilliCPU: 150, Memory: 1 << 20, Pods: 1}},
	}
	for _, tt := range tests {
		got := PodRequests(&v1.Pod{Spec: tt.spec})
		if got != tt.want {
			t.Errorf("%s: PodRequests = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestFilterResources(t *testing.T) {
	n := node("n1", "2", "4Gi", 3, nil)
	tests := []struct {
		name   string
		placed []*v1.Pod
		pod    *v1.Pod
		want   []string
	}{
		{"fits empty node", nil, pod("p", "2", "4Gi", nil), nil},
		{"cpu short", []*v1.Pod{on(pod("a", "1500m", "", nil), "n1")}, pod("p", "600m", "", nil), []string{ReasonInsufficientCPU}},
		{"cpu exactly fills", []*v1.Pod{on(pod("a", "1500m", "", nil), "n1")}, pod("p", "500m", "", nil), nil},
		{"cpu and memory short", []*v1.Pod{on(pod("a", "1500m", "3Gi", nil), "n1")}, pod("p", "1", "2Gi", nil),
			[]string{ReasonInsufficientCPU, ReasonInsufficientMemory}},
		{"too many pods", []*v1.Pod{on(pod("a", "", "", nil), "n1"), on(pod("b", "", "", nil), "n1"), on(pod("c", "", "", nil), "n1")},
			pod("p", "", "", nil), []string{ReasonTooManyPods}},
		{"zero request fits a full node", []*v1.Pod{on(pod("a", "2", "4Gi", nil), "n1")}, pod("p", "", "", nil), nil},
	}
	for _, tt := range tests {
		s := snapshot([]*v1.Node{n}, tt.placed...)
		_, got := FilterResources(PodRequests(tt.pod), s.Nodes[0])
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: FilterResources = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFilterTaints(t *testing.T) {
	taint := func(k, v string, e v1.TaintEffect) v1.Taint { return v1.Taint{Key: k, Value: v, Effect: e} }
	tests := []struct {
		name   string
		taints []v1.Taint
		tols   []v1.Toleration
		want   Code
		reason string
	}{
		{"no taints", nil, nil, Fit, ""},
		{"NoSchedule untolerated", []v1.Taint{taint("node-role.kubernetes.io/control-plane", "", v1.TaintEffectNoSchedule)}, nil,
			Unresolvable, "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"},
		{"NoExecute untolerated with value", []v1.Taint{taint("gpu", "yes", v1.TaintEffectNoExecute)}, nil,
			Unresolvable, "node(s) had untolerated taint {gpu: yes}"},
		{"PreferNoSchedule ignored", []v1.Taint{taint("a", "", v1.TaintEffectPreferNoSchedule)}, nil, Fit, ""},
		{"Equal matches value", []v1.Taint{taint("gpu", "yes", v1.TaintEffectNoSchedule)},
			[]v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpEqual, Value: "yes", Effect: v1.TaintEffectNoSchedule}}, Fit, ""},
		{"Equal wrong value", []v1.Taint{taint("gpu", "yes", v1.TaintEffectNoSchedule)},
			[]v1.Toleration{{Key: "gpu", Value: "no"}}, Unresolvable, "node(s) had untolerated taint {gpu: yes}"},
		{"Exists any value, any effect", []v1.Taint{taint("gpu", "yes", v1.TaintEffectNoExecute)},
			[]v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpExists}}, Fit, ""},
		{"empty key Exists tolerates all", []v1.Taint{taint("x", "1", v1.TaintEffectNoSchedule), taint("y", "", v1.TaintEffectNoExecute)},
			[]v1.Toleration{{Operator: v1.TolerationOpExists}}, Fit, ""},
		{"effect must match", []v1.Taint{taint("gpu", "", v1.TaintEffectNoExecute)},
			[]v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}},
			Unresolvable, "node(s) had untolerated taint {gpu: }"},
	}
	for _, tt := range tests {
		n := node("n1", "1", "1Gi", 10, nil)
		n.Spec.Taints = tt.taints
		code, reason := FilterTaints(tt.tols, n)
		if code != tt.want || reason != tt.reason {
			t.Errorf("%s: FilterTaints = %v %q, want %v %q", tt.name, code, reason, tt.want, tt.reason)
		}
	}
}

func TestFilterUnschedulableAndReady(t *testing.T) {
	cordoned := node("n1", "1", "1Gi", 10, nil)
	cordoned.Spec.Unschedulable = true
	p := pod("p", "", "", nil)
	if code, r := FilterUnschedulable(p, cordoned); code != Unresolvable || r != ReasonUnschedulable {
		t.Errorf("FilterUnschedulable(cordoned) = %v %q, want Unresolvable %q", code, r, ReasonUnschedulable)
	}
	tolerant := pod("p", "", "", nil)
	tolerant.Spec.Tolerations = []v1.Toleration{{Key: TaintUnschedulable, Operator: v1.TolerationOpExists}}
	if code, _ := FilterUnschedulable(tolerant, cordoned); code != Fit {
		t.Errorf("FilterUnschedulable(tolerating pod) = %v, want Fit", code)
	}
	notReady := node("n2", "1", "1Gi", 10, nil)
	notReady.Status.Conditions[0].Status = v1.ConditionUnknown
	if code, r := FilterReady(notReady); code != Unresolvable || r != ReasonNotReady {
		t.Errorf("FilterReady(unknown) = %v %q, want Unresolvable %q", code, r, ReasonNotReady)
	}
	noConds := node("n3", "1", "1Gi", 10, nil)
	noConds.Status.Conditions = nil
	if code, _ := FilterReady(noConds); code != Fit {
		t.Errorf("FilterReady(no conditions) = %v, want Fit", code)
	}
}

func TestFilterNodeAffinity(t *testing.T) {
	n := node("n1", "1", "1Gi", 10, map[string]string{"disk": "ssd", "gen": "5"})
	req := func(key string, op v1.NodeSelectorOperator, vals ...string) v1.NodeSelectorRequirement {
		return v1.NodeSelectorRequirement{Key: key, Operator: op, Values: vals}
	}
	terms := func(ts ...v1.NodeSelectorTerm) *v1.Affinity {
		return &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: ts}}}
	}
	expr := func(rs ...v1.NodeSelectorRequirement) v1.NodeSelectorTerm {
		return v1.NodeSelectorTerm{MatchExpressions: rs}
	}
	tests := []struct {
		name     string
		selector map[string]string
		affinity *v1.Affinity
		want     Code
	}{
		{"no constraints", nil, nil, Fit},
		{"nodeSelector match", map[string]string{"disk": "ssd"}, nil, Fit},
		{"nodeSelector mismatch", map[string]string{"disk": "hdd"}, nil, Unresolvable},
		{"In", nil, terms(expr(req("disk", v1.NodeSelectorOpIn, "hdd", "ssd"))), Fit},
		{"In miss", nil, terms(expr(req("disk", v1.NodeSelectorOpIn, "hdd"))), Unresolvable},
		{"NotIn", nil, terms(expr(req("disk", v1.NodeSelectorOpNotIn, "hdd"))), Fit},
		{"NotIn absent key", nil, terms(expr(req("zone", v1.NodeSelectorOpNotIn, "a"))), Fit},
		{"NotIn hit", nil, terms(expr(req("disk", v1.NodeSelectorOpNotIn, "ssd"))), Unresolvable},
		{"Exists", nil, terms(expr(req("disk", v1.NodeSelectorOpExists))), Fit},
		{"DoesNotExist hit", nil, terms(expr(req("disk", v1.NodeSelectorOpDoesNotExist))), Unresolvable},
		{"Gt", nil, terms(expr(req("gen", v1.NodeSelectorOpGt, "4"))), Fit},
		{"Gt equal fails", nil, terms(expr(req("gen", v1.NodeSelectorOpGt, "5"))), Unresolvable},
		{"Lt", nil, terms(expr(req("gen", v1.NodeSelectorOpLt, "6"))), Fit},
		{"Lt not a number", nil, terms(expr(req("disk", v1.NodeSelectorOpLt, "6"))), Unresolvable},
		{"expressions ANDed", nil, terms(expr(req("disk", v1.NodeSelectorOpIn, "ssd"), req("gen", v1.NodeSelectorOpIn, "4"))), Unresolvable},
		{"terms ORed", nil, terms(expr(req("disk", v1.NodeSelectorOpIn, "hdd")), expr(req("gen", v1.NodeSelectorOpIn, "5"))), Fit},
		{"empty term matches nothing", nil, terms(v1.NodeSelectorTerm{}), Unresolvable},
		{"matchFields name", nil, terms(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{req("metadata.name", v1.NodeSelectorOpIn, "n1")}}), Fit},
		{"matchFields other name", nil, terms(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{req("metadata.name", v1.NodeSelectorOpIn, "n2")}}), Unresolvable},
		{"selector and affinity both apply", map[string]string{"disk": "hdd"}, terms(expr(req("disk", v1.NodeSelectorOpExists))), Unresolvable},
	}
	for _, tt := range tests {
		p := pod("p", "", "", nil)
		p.Spec.NodeSelector = tt.selector
		p.Spec.Affinity = tt.affinity
		if code, _ := FilterNodeAffinity(p, n); code != tt.want {
			t.Errorf("%s: FilterNodeAffinity = %v, want %v", tt.name, code, tt.want)
		}
	}
}

func TestFilterHostPorts(t *testing.T) {
	withPort := func(ip string, proto v1.Protocol, port int32) *v1.Pod {
		p := pod("p", "", "", nil)
		p.Spec.Containers[0].Ports = []v1.ContainerPort{{HostIP: ip, Protocol: proto, HostPort: port, ContainerPort: 80}}
		return p
	}
	tests := []struct {
		name     string
		existing *v1.Pod
		incoming *v1.Pod
		want     Code
	}{
		{"same port tcp", withPort("", "", 8080), withPort("", v1.ProtocolTCP, 8080), Unschedulable},
		{"different protocol", withPort("", v1.ProtocolUDP, 8080), withPort("", v1.ProtocolTCP, 8080), Fit},
		{"different port", withPort("", "", 8080), withPort("", "", 8081), Fit},
		{"distinct ips", withPort("10.0.0.1", "", 8080), withPort("10.0.0.2", "", 8080), Fit},
		{"wildcard vs specific", withPort("0.0.0.0", "", 8080), withPort("10.0.0.2", "", 8080), Unschedulable},
		{"no host port", pod("a", "", "", nil), withPort("", "", 8080), Fit},
	}
	for _, tt := range tests {
		s := snapshot([]*v1.Node{node("n1", "1", "1Gi", 10, nil)}, on(tt.existing, "n1"))
		if code, _ := FilterHostPorts(NewPodInfo(tt.incoming).Ports, s.Nodes[0]); code != tt.want {
			t.Errorf("%s: FilterHostPorts = %v, want %v", tt.name, code, tt.want)
		}
	}
}
