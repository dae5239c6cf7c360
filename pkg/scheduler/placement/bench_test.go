package placement

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// benchSnapshot builds nodes over 3 zones with podsPerNode pods of one
// ReplicaSet already placed on each.
func benchSnapshot(nodes, podsPerNode int) *Snapshot {
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID("rs"), Controller: ptrTo(true)}
	var infos []*NodeInfo
	for i := 0; i < nodes; i++ {
		ni := NewNodeInfo(node(fmt.Sprintf("node-%05d", i), "32", "128Gi", 110, map[string]string{LabelZone: fmt.Sprintf("zone-%d", i%3)}))
		for j := 0; j < podsPerNode; j++ {
			p := pod(fmt.Sprintf("p-%d-%d", i, j), "100m", "128Mi", map[string]string{"app": "web"})
			p.OwnerReferences = []metav1.OwnerReference{owner}
			p.Spec.NodeName = ni.Name()
			ni.AddPod(NewPodInfo(p))
		}
		infos = append(infos, ni)
	}
	return NewSnapshot(infos)
}

// BenchmarkDecide measures filter + score for one pod (no API calls) and
// reports the median time per decision.
func BenchmarkDecide(b *testing.B) {
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID("rs"), Controller: ptrTo(true)}
	plain := pod("new", "200m", "256Mi", map[string]string{"app": "web"})
	owned := pod("new", "200m", "256Mi", map[string]string{"app": "web"})
	owned.OwnerReferences = []metav1.OwnerReference{owner}
	anti := owned.DeepCopy()
	anti.Spec.Affinity = antiAffinity(LabelHostname, "cache") // matches no placed pod, but every pod is checked
	spread := owned.DeepCopy()
	spread.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: LabelZone,
		WhenUnsatisfiable: v1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	cases := []struct {
		nodes, perNode int
		name           string
		pod            *v1.Pod
	}{
		{500, 0, "plain", plain},
		{5000, 0, "plain", plain},
		{50000, 0, "plain", plain},
		{5000, 2, "plain", plain},
		{5000, 20, "plain", plain},
		{5000, 2, "replicaset", owned},
		{5000, 20, "replicaset", owned},
		{5000, 2, "antiaffinity", anti},
		{5000, 2, "zonespread", spread},
	}
	for _, c := range cases {
		for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
			if workers == 1 && runtime.GOMAXPROCS(0) == 1 && c.nodes != 5000 {
				continue
			}
			b.Run(fmt.Sprintf("nodes=%d/placed=%d/%s/workers=%d", c.nodes, c.nodes*c.perNode, c.name, workers), func(b *testing.B) {
				s := benchSnapshot(c.nodes, c.perNode)
				d := NewDecider(workers, 1)
				pi := NewPodInfo(c.pod)
				times := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					if _, err := d.Decide(pi, s); err != nil {
						b.Fatal(err)
					}
					times = append(times, time.Since(t0))
				}
				b.StopTimer()
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-p50")
			})
		}
	}
}
