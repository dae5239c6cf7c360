package deployment

import (
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func deploy(replicas int32, surge, unavailable string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "d-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx:1"}}},
			},
			Strategy:                appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
			ProgressDeadlineSeconds: ptr(int32(600)),
			RevisionHistoryLimit:    ptr(int32(10)),
		},
	}
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ios(surge), MaxUnavailable: ios(unavailable)}
	return d
}

func ios(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

// rs is a ReplicaSet of age minutes with spec replicas and available pods
// (status replicas = spec).
func rs(name string, age int, spec, available int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name),
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Duration(age) * time.Minute)), Annotations: map[string]string{}},
		Spec:   appsv1.ReplicaSetSpec{Replicas: ptr(spec)},
		Status: appsv1.ReplicaSetStatus{Replicas: spec, ReadyReplicas: available, AvailableReplicas: available},
	}
}

func withStatus(r *appsv1.ReplicaSet, replicas, available int32) *appsv1.ReplicaSet {
	r.Status.Replicas, r.Status.AvailableReplicas = replicas, available
	return r
}

func TestFenceposts(t *testing.T) {
	tests := []struct {
		surge, unavail   string
		replicas         int32
		wantS, wantU     int32
		wantErrSubstring string
	}{
		{"25%", "25%", 10, 3, 2, ""}, // 2.5 → surge up, unavailable down
		{"25%", "25%", 4, 1, 1, ""},
		{"25%", "25%", 1, 1, 0, ""},
		{"0", "25%", 3, 0, 1, ""}, // 0.75 rounds to 0, both 0 → unavailable 1
		{"10%", "10%", 5, 1, 0, ""},
		{"0", "0", 5, 0, 1, ""},
		{"3", "1", 10, 3, 1, ""},
		{"100%", "0", 10000, 10000, 0, ""},
		{"25%", "25%", 10000, 2500, 2500, ""},
		{"x%", "1", 10, 0, 0, "maxSurge"},
	}
	for _, tt := range tests {
		s, u, err := Fenceposts(ios(tt.surge), ios(tt.unavail), tt.replicas)
		if tt.wantErrSubstring != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstring) {
				t.Errorf("Fenceposts(%s, %s, %d) err = %v, want one about %s", tt.surge, tt.unavail, tt.replicas, err, tt.wantErrSubstring)
			}
			continue
		}
		if err != nil || s != tt.wantS || u != tt.wantU {
			t.Errorf("Fenceposts(%s, %s, %d) = %d, %d, %v, want %d, %d", tt.surge, tt.unavail, tt.replicas, s, u, err, tt.wantS, tt.wantU)
		}
	}
}

func TestMaxUnavailableCapsAndRecreate(t *testing.T) {
	d := deploy(2, "0", "5")
	if got := MaxUnavailable(d); got != 2 {
		t.Errorf("MaxUnavailable(replicas 2, unavailable 5) = %d, want 2", got)
	}
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if s, u := MaxSurge(d), MaxUnavailable(d); s != 0 || u != 0 {
		t.Errorf("Recreate MaxSurge, MaxUnavailable = %d, %d, want 0, 0", s, u)
	}
}

func TestComputeHash(t *testing.T) {
	d := deploy(3, "1", "1")
	h := ComputeHash(&d.Spec.Template, nil)
	if len(h) < 6 || len(h) > 10 || strings.Trim(h, "bcdfghjklmnpqrstvwxz2456789") != "" {
		t.Fatalf("ComputeHash = %q, want 6-10 characters of the safe alphabet", h)
	}
	if again := ComputeHash(d.DeepCopy().Spec.Template.DeepCopy(), nil); again != h {
		t.Errorf("ComputeHash of a copy = %q, want %q", again, h)
	}
	if c0 := ComputeHash(&d.Spec.Template, ptr(int32(0))); c0 == h {
		t.Errorf("ComputeHash with collisionCount 0 = %q, same as without", c0)
	}
	if c1, c0 := ComputeHash(&d.Spec.Template, ptr(int32(1))), ComputeHash(&d.Spec.Template, ptr(int32(0))); c1 == c0 {
		t.Errorf("ComputeHash collisionCount 1 = collisionCount 0 = %q", c1)
	}
	d2 := deploy(3, "1", "1")
	d2.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	if h2 := ComputeHash(&d2.Spec.Template, nil); h2 == h {
		t.Errorf("ComputeHash of another image = %q, same as before", h2)
	}
	newRS := NewReplicaSet(d)
	if newRS.Name != "web-"+h || newRS.Spec.Template.Labels[HashLabel] != h || newRS.Spec.Selector.MatchLabels[HashLabel] != h || newRS.Labels[HashLabel] != h {
		t.Errorf("NewReplicaSet = %s labels %v selector %v, want web-%s with the hash label everywhere", newRS.Name, newRS.Spec.Template.Labels, newRS.Spec.Selector, h)
	}
	if !EqualIgnoreHash(&newRS.Spec.Template, &d.Spec.Template) {
		t.Error("EqualIgnoreHash(new RS template, deployment template) = false, want true")
	}
	if ref := metav1.GetControllerOf(newRS); ref == nil || ref.UID != d.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("NewReplicaSet controller ref = %+v, want the deployment, blocking", ref)
	}
	if d.Spec.Template.Labels[HashLabel] != "" {
		t.Error("NewReplicaSet changed the deployment's template labels")
	}
}

func TestNewRSReplicas(t *testing.T) {
	tests := []struct {
		name string
		d    *appsv1.Deployment
		new  *appsv1.ReplicaSet
		old  []*appsv1.ReplicaSet
		want int32
	}{
		{"fresh deployment gets everything", deploy(10, "25%", "25%"), rs("n", 0, 0, 0), nil, 10},
		{"surge 3 on top of 10 old", deploy(10, "25%", "25%"), rs("n", 0, 0, 0), []*appsv1.ReplicaSet{rs("o", 5, 10, 10)}, 3},
		{"surge used up", deploy(10, "25%", "25%"), rs("n", 0, 3, 0), []*appsv1.ReplicaSet{rs("o", 5, 10, 10)}, 3},
		{"room after old shrank", deploy(10, "25%", "25%"), rs("n", 0, 3, 3), []*appsv1.ReplicaSet{rs("o", 5, 5, 5)}, 8},
		{"never above replicas", deploy(10, "25%", "25%"), rs("n", 0, 9, 9), []*appsv1.ReplicaSet{rs("o", 5, 0, 0)}, 10},
		{"surge 0 waits for old to shrink", deploy(4, "0", "1"), rs("n", 0, 0, 0), []*appsv1.ReplicaSet{rs("o", 5, 4, 4)}, 0},
	}
	for _, tt := range tests {
		all := append(append([]*appsv1.ReplicaSet(nil), tt.old...), tt.new)
		if got := NewRSReplicas(tt.d, all, tt.new); got != tt.want {
			t.Errorf("%s: NewRSReplicas = %d, want %d", tt.name, got, tt.want)
		}
	}
	d := deploy(5, "1", "1")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if got := NewRSReplicas(d, nil, rs("n", 0, 0, 0)); got != 5 {
		t.Errorf("Recreate: NewRSReplicas = %d, want 5", got)
	}
}

func steps(ss []Step) map[string]int32 {
	out := map[string]int32{}
	for _, s := range ss {
		out[s.RS.Name] = s.To
	}
	return out
}

func TestRollingScaleDown(t *testing.T) {
	tests := []struct {
		name string
		d    *appsv1.Deployment
		new  *appsv1.ReplicaSet
		old  []*appsv1.ReplicaSet
		want map[string]int32
	}{
		{"new not available yet: keep old", deploy(10, "25%", "25%"), rs("n", 0, 3, 0), []*appsv1.ReplicaSet{rs("o", 5, 10, 10)}, map[string]int32{"o": 8}},
		{"floor of 8 available", deploy(10, "25%", "25%"), rs("n", 0, 3, 1), []*appsv1.ReplicaSet{rs("o", 5, 8, 8)}, map[string]int32{"o": 7}},
		{"unhealthy old pods go first, within the budget", deploy(10, "25%", "25%"), rs("n", 0, 3, 0), []*appsv1.ReplicaSet{rs("o", 5, 10, 6)}, map[string]int32{"o": 8}},
		{"unhealthy old pods go even below the floor", deploy(10, "25%", "25%"), rs("n", 0, 3, 3), []*appsv1.ReplicaSet{rs("o", 5, 10, 4)}, map[string]int32{"o": 5}},
		{"at the floor: nothing", deploy(10, "25%", "25%"), rs("n", 0, 3, 0), []*appsv1.ReplicaSet{rs("o", 5, 8, 8)}, map[string]int32{}},
		{"oldest first", deploy(4, "2", "2"), rs("n", 0, 1, 1), []*appsv1.ReplicaSet{rs("young", 2, 2, 2), rs("old", 9, 2, 2)}, map[string]int32{"old": 0, "young": 1}},
		{"new fully available: old to zero", deploy(4, "1", "1"), rs("n", 0, 4, 4), []*appsv1.ReplicaSet{rs("o", 5, 1, 1)}, map[string]int32{"o": 0}},
		{"status lagging a scale-down does not count", deploy(6, "2", "1"), rs("n", 0, 3, 2), []*appsv1.ReplicaSet{withStatus(rs("o", 5, 5, 6), 6, 6)}, map[string]int32{"o": 3}},
		{"no old", deploy(4, "1", "1"), rs("n", 0, 4, 4), nil, map[string]int32{}},
	}
	for _, tt := range tests {
		if got := steps(RollingScaleDown(tt.d, tt.new, tt.old)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: RollingScaleDown = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRollingInvariant drives a whole rollout with the core alone, pods
// becoming available instantly, and checks every step stays between
// replicas - maxUnavailable available and replicas + maxSurge total.
func TestRollingInvariant(t *testing.T) {
	for _, c := range []struct {
		replicas       int32
		surge, unavail string
	}{{10, "25%", "25%"}, {10, "0", "1"}, {10, "3", "0"}, {7, "50%", "10%"}, {1, "25%", "25%"}, {100, "1", "0"}} {
		d := deploy(c.replicas, c.surge, c.unavail)
		old := rs("old", 10, c.replicas, c.replicas)
		newRS := rs("new", 0, 0, 0)
		maxS, maxU := MaxSurge(d), MaxUnavailable(d)
		for i := 0; ; i++ {
			if i > 1000 {
				t.Fatalf("%v: rollout did not finish", c)
			}
			all := []*appsv1.ReplicaSet{old, newRS}
			if n := NewRSReplicas(d, all, newRS); n != replicas(newRS) {
				newRS.Spec.Replicas = ptr(n)
			} else if ss := RollingScaleDown(d, newRS, []*appsv1.ReplicaSet{old}); len(ss) > 0 {
				old.Spec.Replicas = ptr(ss[0].To)
			} else if replicas(old) == 0 && replicas(newRS) == c.replicas {
				break
			} else {
				t.Fatalf("%v: stuck at old %d new %d", c, replicas(old), replicas(newRS))
			}
			total := replicas(old) + replicas(newRS)
			// The rollout's view: available is what status says before pods move.
			avail := min(old.Status.AvailableReplicas, replicas(old)) + newRS.Status.AvailableReplicas
			if total > c.replicas+maxS {
				t.Fatalf("%v: step %d runs %d pods, above %d + %d", c, i, total, c.replicas, maxS)
			}
			if avail < c.replicas-maxU {
				t.Fatalf("%v: step %d has %d available, below %d - %d", c, i, avail, c.replicas, maxU)
			}
			// Pods follow: old pods go at once, new ones become available.
			for _, r := range all {
				r.Status.Replicas, r.Status.AvailableReplicas = replicas(r), replicas(r)
			}
		}
	}
}

func TestScaleProportional(t *testing.T) {
	// Mid-rollout of 10 (surge 3): old 8, new 5. Scaling to 20 adds
	// (20+5) - 13 = 12 pods split by the old size each was given.
	d := deploy(20, "25%", "25%")
	old := rs("old", 10, 8, 8)
	newRS := rs("new", 1, 5, 0)
	for _, r := range []*appsv1.ReplicaSet{old, newRS} {
		SetReplicasAnnotations(r, 10, 13)
	}
	got := steps(Scale(d, newRS, []*appsv1.ReplicaSet{old}))
	if got["old"]+got["new"] != 25 || got["old"] <= 8 || got["new"] <= 5 {
		t.Errorf("Scale(10→20 mid-rollout) = %v, want both grown to 25 in total", got)
	}
	// Only one active ReplicaSet: it takes the whole size.
	single := rs("only", 1, 3, 3)
	if got := steps(Scale(deploy(7, "1", "1"), single, nil)); got["only"] != 7 {
		t.Errorf("Scale(single 3→7) = %v, want only: 7", got)
	}
	// Scale to zero mid-rollout.
	d0 := deploy(0, "25%", "25%")
	if got := steps(Scale(d0, newRS, []*appsv1.ReplicaSet{old})); got["old"] != 0 || got["new"] != 0 || len(got) != 2 {
		t.Errorf("Scale(→0) = %v, want both 0", got)
	}
}

func TestScalingEvent(t *testing.T) {
	r := rs("a", 1, 3, 3)
	SetReplicasAnnotations(r, 3, 4)
	if ScalingEvent(deploy(3, "1", "1"), []*appsv1.ReplicaSet{r}) {
		t.Error("ScalingEvent(same size) = true, want false")
	}
	if !ScalingEvent(deploy(5, "1", "1"), []*appsv1.ReplicaSet{r}) {
		t.Error("ScalingEvent(3→5) = false, want true")
	}
}

func TestSetNewRSAnnotations(t *testing.T) {
	d := deploy(3, "1", "1")
	d.Annotations = map[string]string{ChangeCauseAnnotation: "kubectl set image", RevisionAnnotation: "7", lastAppliedAnnotation: "{}"}
	fresh := rs("n", 0, 0, 0)
	SetNewRSAnnotations(d, fresh, 3, false)
	want := map[string]string{ChangeCauseAnnotation: "kubectl set image", RevisionAnnotation: "3", DesiredReplicasAnnotation: "3", MaxReplicasAnnotation: "4"}
	if !reflect.DeepEqual(fresh.Annotations, want) {
		t.Errorf("SetNewRSAnnotations(new) = %v, want %v", fresh.Annotations, want)
	}
	// Rollback: revision 1 comes back as 4 and remembers 1.
	back := rs("o", 9, 0, 0)
	back.Annotations[RevisionAnnotation] = "1"
	if !SetNewRSAnnotations(d, back, 4, true) || back.Annotations[RevisionAnnotation] != "4" || back.Annotations[RevisionHistoryAnnotation] != "1" {
		t.Errorf("SetNewRSAnnotations(rollback) = %v, want revision 4, history 1", back.Annotations)
	}
	if SetNewRSAnnotations(d, back, 4, true) {
		t.Error("SetNewRSAnnotations twice reports a change")
	}
}

func TestCleanup(t *testing.T) {
	var old []*appsv1.ReplicaSet
	for i, rev := range []string{"3", "1", "2", "4"} {
		r := rs("rev"+rev, 10-i, 0, 0)
		r.Annotations[RevisionAnnotation] = rev
		old = append(old, r)
	}
	busy := rs("rev0", 20, 1, 1)
	busy.Annotations[RevisionAnnotation] = "0"
	old = append(old, busy)
	got := names(Cleanup(old, 2))
	if want := []string{"rev1", "rev2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Cleanup(limit 2) = %v, want %v (rev0 still has pods)", got, want)
	}
	if got := Cleanup(old, 10); len(got) != 0 {
		t.Errorf("Cleanup(limit 10) = %v, want none", names(got))
	}
}

func names(rss []*appsv1.ReplicaSet) []string {
	var out []string
	for _, r := range rss {
		out = append(out, r.Name)
	}
	return out
}

func TestSplit(t *testing.T) {
	d := deploy(3, "1", "1")
	cur := NewReplicaSet(d)
	cur.CreationTimestamp = metav1.NewTime(t0)
	other := deploy(3, "1", "1")
	other.Spec.Template.Spec.Containers[0].Image = "nginx:0"
	prev := NewReplicaSet(other)
	prev.CreationTimestamp = metav1.NewTime(t0.Add(-time.Hour))
	newRS, old := Split(d, []*appsv1.ReplicaSet{prev, cur})
	if newRS != cur || len(old) != 1 || old[0] != prev {
		t.Errorf("Split = %v, %v, want %s, [%s]", newRS.Name, names(old), cur.Name, prev.Name)
	}
}
