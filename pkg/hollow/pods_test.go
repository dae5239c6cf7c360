package hollow

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testPod(uid, node, ip string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uid, Namespace: "default", UID: types.UID(uid)},
		Spec: v1.PodSpec{NodeName: node,
			InitContainers: []v1.Container{{Name: "init", Image: "busybox"}},
			Containers:     []v1.Container{{Name: "a", Image: "busybox"}, {Name: "b", Image: "nginx"}}},
		Status: v1.PodStatus{PodIP: ip},
	}
}

func TestAssignKeepsReleasesAndReuses(t *testing.T) {
	n := &hollowNode{index: 3, name: "hollow-3", ips: map[string]string{}}
	h := &hollow{nodes: map[string]*hollowNode{n.name: n}}
	steps := []struct {
		op   string // assign or release
		pod  *v1.Pod
		want string
	}{
		{"assign", testPod("a", n.name, ""), "10.128.3.2"},
		{"assign", testPod("b", n.name, ""), "10.128.3.3"},
		{"assign", testPod("a", n.name, ""), "10.128.3.2"},           // same pod, same IP
		{"assign", testPod("c", n.name, "10.128.3.9"), "10.128.3.9"}, // keeps the IP it reports
		{"assign", testPod("d", n.name, "10.128.3.9"), "10.128.3.4"}, // taken: a fresh one
		{"assign", testPod("e", n.name, "10.200.0.5"), "10.128.3.5"}, // not in range: a fresh one
		{"release", testPod("a", n.name, ""), ""},
		{"assign", testPod("f", n.name, ""), "10.128.3.2"}, // a's address is free again
	}
	for i, s := range steps {
		if s.op == "release" {
			h.release(s.pod)
			continue
		}
		got, err := n.assign(s.pod)
		if err != nil || got != s.want {
			t.Errorf("step %d: assign(%s, reported %q) = %q, %v; want %q", i, s.pod.UID, s.pod.Status.PodIP, got, err, s.want)
		}
	}
}

func TestAssignRunsOut(t *testing.T) {
	n := &hollowNode{index: 0, name: "hollow-0", ips: map[string]string{}}
	for i := 0; i < 253; i++ {
		if _, err := n.assign(testPod(string(rune('A'+i%26))+string(rune('0'+i/26)), n.name, "")); err != nil {
			t.Fatalf("assign #%d = %v, want an address", i, err)
		}
	}
	if ip, err := n.assign(testPod("last", n.name, "")); err == nil {
		t.Errorf("assign on a full /24 = %q, want an error", ip)
	}
}

func TestRunningStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pod := testPod("a", "hollow-0", "")
	st := runningStatus(pod, "10.128.0.2", "10.127.0.0", now)
	if st.Phase != v1.PodRunning || st.PodIP != "10.128.0.2" || st.HostIP != "10.127.0.0" {
		t.Errorf("runningStatus = phase %s ip %s host %s, want Running 10.128.0.2 10.127.0.0", st.Phase, st.PodIP, st.HostIP)
	}
	if len(st.ContainerStatuses) != 2 || len(st.InitContainerStatuses) != 1 {
		t.Fatalf("runningStatus has %d container and %d init statuses, want 2 and 1", len(st.ContainerStatuses), len(st.InitContainerStatuses))
	}
	if st.InitContainerStatuses[0].State.Terminated == nil || st.ContainerStatuses[1].State.Running == nil || !st.ContainerStatuses[1].Ready {
		t.Errorf("runningStatus: init not terminated or container not running and ready: %+v", st)
	}
	cases := []struct {
		name   string
		status v1.PodStatus
		ip     string
		want   bool
	}{
		{"fresh pod", v1.PodStatus{}, "10.128.0.2", false},
		{"what we wrote", st, "10.128.0.2", true},
		{"other IP", st, "10.128.0.3", false},
		{"not ready", func() v1.PodStatus {
			s := *st.DeepCopy()
			for i := range s.Conditions {
				if s.Conditions[i].Type == v1.PodReady {
					s.Conditions[i].Status = v1.ConditionFalse
				}
			}
			return s
		}(), "10.128.0.2", false},
	}
	for _, c := range cases {
		p := pod.DeepCopy()
		p.Status = c.status
		if got := statusDone(p, c.ip); got != c.want {
			t.Errorf("statusDone(%s, %s) = %v, want %v", c.name, c.ip, got, c.want)
		}
	}
	// A restart of the hollow process keeps the pod's start time.
	pod.Status.StartTime = &metav1.Time{Time: now.Add(-time.Hour)}
	if again := runningStatus(pod, "10.128.0.2", "10.127.0.0", now); !again.StartTime.Time.Equal(now.Add(-time.Hour)) {
		t.Errorf("runningStatus start = %v, want the pod's %v", again.StartTime, now.Add(-time.Hour))
	}
}

func TestAddressing(t *testing.T) {
	cases := []struct {
		i                   int
		node, cidr, podAddr string
	}{
		{0, "10.127.0.0", "10.128.0.0/24", "10.128.0.7"},
		{257, "10.127.1.1", "10.129.1.0/24", "10.129.1.7"},
		{maxNodes - 1, "10.127.127.255", "10.255.255.0/24", "10.255.255.7"},
	}
	for _, c := range cases {
		if got := nodeIP(c.i); got != c.node {
			t.Errorf("nodeIP(%d) = %s, want %s", c.i, got, c.node)
		}
		if got := podCIDR(c.i); got != c.cidr {
			t.Errorf("podCIDR(%d) = %s, want %s", c.i, got, c.cidr)
		}
		if got := podIP(c.i, 7); got != c.podAddr {
			t.Errorf("podIP(%d, 7) = %s, want %s", c.i, got, c.podAddr)
		}
	}
}
