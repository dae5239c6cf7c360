package hollow

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// syncPod brings one pod bound to a hollow node to its simulated state:
// deleted for real once it is being deleted, otherwise Running and Ready.
func (h *hollow) syncPod(ctx context.Context, lister corelisters.PodLister, key string) error {
	ns, name, _ := strings.Cut(key, "/")
	pod, err := lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	n, mine := h.nodes[pod.Spec.NodeName]
	if !mine {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		zero := int64(0)
		uid := pod.UID
		err := h.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
		h.release(pod)
		return nil
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return nil
	}
	ip, err := n.assign(pod)
	if err != nil {
		return err
	}
	want := runningStatus(pod, ip, nodeIP(n.index), time.Now())
	if statusDone(pod, ip) {
		return nil
	}
	p := pod.DeepCopy()
	p.Status = want
	_, err = h.client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	switch {
	case err == nil:
		h.cfg.Stats.Running.Add(1)
	case apierrors.IsNotFound(err):
		return nil
	default:
		h.cfg.Stats.StatusErrors.Add(1)
	}
	return err
}

// statusDone says whether the pod already shows what a hollow node reports.
func statusDone(pod *v1.Pod, ip string) bool {
	if pod.Status.Phase != v1.PodRunning || pod.Status.PodIP != ip {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func runningStatus(pod *v1.Pod, ip, hostIP string, now time.Time) v1.PodStatus {
	t := metav1.NewTime(now)
	start := t
	if pod.Status.StartTime != nil {
		start = *pod.Status.StartTime
	}
	cond := func(typ v1.PodConditionType) v1.PodCondition {
		return v1.PodCondition{Type: typ, Status: v1.ConditionTrue, LastTransitionTime: t}
	}
	st := v1.PodStatus{
		Phase: v1.PodRunning,
		Conditions: []v1.PodCondition{
			cond(v1.PodReadyToStartContainers), cond(v1.PodInitialized), cond(v1.PodReady),
			cond(v1.ContainersReady), cond(v1.PodScheduled),
		},
		HostIP:    hostIP,
		HostIPs:   []v1.HostIP{{IP: hostIP}},
		PodIP:     ip,
		PodIPs:    []v1.PodIP{{IP: ip}},
		StartTime: &start,
		QOSClass:  pod.Status.QOSClass,
	}
	ready, started := true, true
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, v1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "hollow://" + string(pod.UID) + "/" + c.Name,
			State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: "Completed", StartedAt: t, FinishedAt: t}},
			Ready: true,
		})
	}
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, v1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "hollow://" + string(pod.UID) + "/" + c.Name,
			State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: start}},
			Ready: ready, Started: &started,
		})
	}
	return st
}

// assign returns the pod's IP in the node's range, keeping the one it
// already reports.
func (n *hollowNode) assign(pod *v1.Pod) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	uid := string(pod.UID)
	if ip, ok := n.ips[uid]; ok {
		return ip, nil
	}
	prefix := strings.TrimSuffix(podIP(n.index, 0), "0")
	if ip := pod.Status.PodIP; strings.HasPrefix(ip, prefix) {
		var host int
		if _, err := fmt.Sscanf(ip[len(prefix):], "%d", &host); err == nil && host > 1 && host < 255 && !n.used[host] {
			n.used[host] = true
			n.ips[uid] = ip
			return ip, nil
		}
	}
	for host := 2; host < 255; host++ {
		if !n.used[host] {
			n.used[host] = true
			ip := podIP(n.index, host)
			n.ips[uid] = ip
			return ip, nil
		}
	}
	return "", fmt.Errorf("%w: node %s has no pod IP left", ErrConfig, n.name)
}

// release frees a deleted pod's IP.
func (h *hollow) release(pod *v1.Pod) {
	n, ok := h.nodes[pod.Spec.NodeName]
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	uid := string(pod.UID)
	ip, ok := n.ips[uid]
	if !ok {
		return
	}
	delete(n.ips, uid)
	prefix := strings.TrimSuffix(podIP(n.index, 0), "0")
	var host int
	if _, err := fmt.Sscanf(ip[len(prefix):], "%d", &host); err == nil && host > 0 && host < 256 {
		n.used[host] = false
	}
}
