package replicaset

import (
	"errors"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type podOpt func(*v1.Pod)

func pod(name string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
	p.Spec.NodeName = "n1"
	p.Status.Phase = v1.PodRunning
	for _, o := range opts {
		o(p)
	}
	return p
}

func unscheduled(p *v1.Pod) { p.Spec.NodeName = "" }
func phase(ph v1.PodPhase) podOpt {
	return func(p *v1.Pod) { p.Status.Phase = ph }
}
func readySince(d time.Duration) podOpt {
	return func(p *v1.Pod) {
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(t0.Add(-d))}}
	}
}
func restartsN(n int32) podOpt {
	return func(p *v1.Pod) { p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", RestartCount: n}} }
}
func created(ago time.Duration) podOpt {
	return func(p *v1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(-ago)) }
}
func node(n string) podOpt { return func(p *v1.Pod) { p.Spec.NodeName = n } }
func cost(c string) podOpt {
	return func(p *v1.Pod) { p.Annotations = map[string]string{DeletionCostAnnotation: c} }
}
func lbls(kv ...string) podOpt {
	return func(p *v1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}
func ownedBy(uid string) podOpt {
	return func(p *v1.Pod) {
		tr := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID(uid), Controller: &tr}}
	}
}
func deleting(p *v1.Pod) { ts := metav1.NewTime(t0); p.DeletionTimestamp = &ts }

func names(pods []*v1.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func TestRankForDeletion(t *testing.T) {
	tests := []struct {
		name string
		pods []*v1.Pod
		want []string // least valuable first
	}{
		{"unassigned before assigned", []*v1.Pod{pod("a", readySince(time.Hour)), pod("b", unscheduled, phase(v1.PodPending))}, []string{"b", "a"}},
		{"pending before unknown before running", []*v1.Pod{
			pod("run", readySince(time.Hour)), pod("unk", phase(v1.PodUnknown)), pod("pend", phase(v1.PodPending))},
			[]string{"pend", "unk", "run"}},
		{"not ready before ready", []*v1.Pod{pod("r", readySince(time.Hour)), pod("nr")}, []string{"nr", "r"}},
		{"lower deletion cost first", []*v1.Pod{pod("hi", cost("10"), readySince(time.Hour)), pod("lo", cost("-5"), readySince(time.Hour))}, []string{"lo", "hi"}},
		{"doubled-up node first", []*v1.Pod{
			pod("alone", node("n1"), readySince(time.Hour)), pod("x1", node("n2"), readySince(time.Hour)), pod("x2", node("n2"), readySince(time.Hour))},
			[]string{"x2", "x1", "alone"}},
		{"ready for less time first", []*v1.Pod{pod("old", readySince(10*time.Hour)), pod("new", readySince(time.Minute))}, []string{"new", "old"}},
		{"ready times in one power of two fall to restarts", []*v1.Pod{
			pod("calm", readySince(70*time.Second), restartsN(0)), pod("flaky", readySince(100*time.Second), restartsN(3))},
			[]string{"flaky", "calm"}},
		{"more restarts first", []*v1.Pod{pod("r0", restartsN(0)), pod("r5", restartsN(5))}, []string{"r5", "r0"}},
		{"newer first", []*v1.Pod{pod("older", created(5*time.Hour)), pod("newer", created(time.Minute))}, []string{"newer", "older"}},
		{"ties by name, descending", []*v1.Pod{pod("a"), pod("c"), pod("b")}, []string{"c", "b", "a"}},
	}
	for _, tt := range tests {
		got := names(RankForDeletion(tt.pods, t0))
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: RankForDeletion = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestComputePlan(t *testing.T) {
	three := []*v1.Pod{pod("a", readySince(time.Hour)), pod("b", phase(v1.PodPending)), pod("c", readySince(time.Hour))}
	many := make([]*v1.Pod, 0, 700)
	for i := range 700 {
		many = append(many, pod(string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	tests := []struct {
		name       string
		want       int
		pods       []*v1.Pod
		wantCreate int
		wantDelete []string
	}{
		{"steady", 3, three, 0, nil},
		{"scale up", 5, three, 2, nil},
		{"from zero", 3, nil, 3, nil},
		{"scale down picks pending", 2, three, 0, []string{"b"}},
		{"to zero", 0, three, 0, []string{"b", "c", "a"}},
		{"burst caps creation", 10000, three, BurstReplicas, nil},
	}
	for _, tt := range tests {
		got := ComputePlan(tt.want, tt.pods, t0)
		if got.Create != tt.wantCreate || (len(tt.wantDelete) > 0 || len(got.Delete) > 0) && !reflect.DeepEqual(names(got.Delete), tt.wantDelete) {
			t.Errorf("%s: ComputePlan(%d) = create %d delete %v, want create %d delete %v",
				tt.name, tt.want, got.Create, names(got.Delete), tt.wantCreate, tt.wantDelete)
		}
	}
	if got := ComputePlan(0, many, t0); len(got.Delete) != BurstReplicas {
		t.Errorf("ComputePlan(0, 700 pods) deletes %d, want %d", len(got.Delete), BurstReplicas)
	}
}

func TestBatches(t *testing.T) {
	tests := []struct {
		n, active int
		want      []int
	}{
		{0, 0, nil}, {1, 0, []int{1}}, {3, 0, []int{1, 2}}, {4, 0, []int{1, 2, 1}}, {10, 0, []int{1, 2, 4, 3}},
		{500, 0, []int{1, 2, 4, 8, 16, 32, 64, 128, 245}},
		// Running pods show the template is admitted: start at their number.
		{10, 3, []int{3, 6, 1}},
		{500, 500, []int{128, 256, 116}},
		{500, 9000, []int{128, 256, 116}},
	}
	for _, tt := range tests {
		if got := Batches(tt.n, tt.active); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Batches(%d, %d) = %v, want %v", tt.n, tt.active, got, tt.want)
		}
	}
}

func TestClaim(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})
	pods := []*v1.Pod{
		pod("mine", lbls("app", "web"), ownedBy("me")),
		pod("relabelled", lbls("app", "other"), ownedBy("me")),
		pod("orphan", lbls("app", "web")),
		pod("orphan-deleting", lbls("app", "web"), deleting),
		pod("orphan-nomatch", lbls("app", "db")),
		pod("theirs", lbls("app", "web"), ownedBy("them")),
	}
	owned, adopt, release := Claim("me", sel, pods)
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"owned", names(owned), []string{"mine"}},
		{"adopt", names(adopt), []string{"orphan"}},
		{"release", names(release), []string{"relabelled"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("Claim %s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestAvailableAndCount(t *testing.T) {
	pods := []*v1.Pod{
		pod("long", lbls("app", "web", "v", "1"), readySince(time.Minute)),
		pod("fresh", lbls("app", "web", "v", "1"), readySince(4*time.Second)),
		pod("notready", lbls("app", "web")),
	}
	got := Count(pods, map[string]string{"app": "web", "v": "1"}, 10, t0)
	want := Counts{Replicas: 3, FullyLabeled: 2, Ready: 2, Available: 1, Recheck: 6 * time.Second}
	if got != want {
		t.Errorf("Count(minReady=10) = %+v, want %+v", got, want)
	}
	got = Count(pods, map[string]string{"app": "web"}, 0, t0)
	want = Counts{Replicas: 3, FullyLabeled: 3, Ready: 2, Available: 2}
	if got != want {
		t.Errorf("Count(minReady=0) = %+v, want %+v", got, want)
	}
}

func TestStatusReplicaFailure(t *testing.T) {
	quota := errors.New(`pods "web-x" is forbidden: exceeded quota`)
	st := Status(appsv1.ReplicaSetStatus{}, 4, Counts{Replicas: 1}, quota, t0)
	if len(st.Conditions) != 1 || st.Conditions[0].Type != appsv1.ReplicaSetReplicaFailure ||
		st.Conditions[0].Reason != "FailedCreate" || st.Conditions[0].Message != quota.Error() {
		t.Fatalf("Status(quota error).Conditions = %+v, want one ReplicaFailure FailedCreate", st.Conditions)
	}
	if st.ObservedGeneration != 4 || st.Replicas != 1 {
		t.Errorf("Status = %+v, want observedGeneration 4 replicas 1", st)
	}
	later := Status(st, 4, Counts{Replicas: 1}, quota, t0.Add(time.Minute))
	if !later.Conditions[0].LastTransitionTime.Equal(&st.Conditions[0].LastTransitionTime) {
		t.Errorf("repeated failure moved lastTransitionTime to %v", later.Conditions[0].LastTransitionTime)
	}
	if cleared := Status(st, 4, Counts{Replicas: 2}, nil, t0); len(cleared.Conditions) != 0 {
		t.Errorf("Status(no error).Conditions = %+v, want none", cleared.Conditions)
	}
}

func TestExpectations(t *testing.T) {
	e := NewExpectations()
	if !e.Satisfied("ns/rs", t0) {
		t.Fatal("Satisfied with no record = false, want true")
	}
	e.ExpectCreations("ns/rs", 2, t0)
	e.CreationObserved("ns/rs")
	if e.Satisfied("ns/rs", t0) {
		t.Error("Satisfied after 1 of 2 creations = true, want false")
	}
	if !e.Satisfied("ns/rs", t0.Add(ExpectationsTTL+time.Second)) {
		t.Error("Satisfied after the TTL = false, want true")
	}
	e.CreationObserved("ns/rs")
	if !e.Satisfied("ns/rs", t0) {
		t.Error("Satisfied after 2 of 2 creations = false, want true")
	}
	e.ExpectDeletions("ns/rs", []string{"ns/a", "ns/b"}, t0)
	e.DeletionObserved("ns/rs", "ns/a")
	e.DeletionObserved("ns/rs", "ns/a") // deletionTimestamp, then removal
	if e.Satisfied("ns/rs", t0) {
		t.Error("Satisfied after seeing one pod's deletion twice = true, want false")
	}
	e.DeletionObserved("ns/rs", "ns/b")
	if !e.Satisfied("ns/rs", t0) {
		t.Error("Satisfied after both deletions = false, want true")
	}
}
