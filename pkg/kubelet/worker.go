package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// Timing of the pod workers.
const (
	maxPlanRounds   = 8               // plan/execute rounds in one sync
	errorRetry      = 2 * time.Second // retry after a failed runtime call
	orphanGrace     = 2 * time.Second // grace for containers of pods gone from the API
	criCallTimeout  = 2 * time.Minute // bound for a single runtime call
	removeRetention = 1               // exited instances kept per container besides the newest
)

// podWorker owns one pod: one goroutine syncs it whenever kicked, so a pod's
// syncs never overlap while different pods proceed in parallel.
type podWorker struct {
	uid  types.UID
	kick chan struct{}

	// Owned by the worker goroutine.
	backoffBase map[string]uint32
	errors      map[string]containerError
	written     *v1.Pod // the pod as our last status write returned it
	writtenFrom string  // resourceVersion of the cached pod that write was based on
	events      map[string]bool
}

// kick wakes the worker of uid, starting one if needed.
func (k *Kubelet) kick(uid types.UID) {
	if uid == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kickLocked(uid)
}

func (k *Kubelet) kickLocked(uid types.UID) {
	if k.ctx == nil || k.ctx.Err() != nil {
		return
	}
	w, ok := k.workers[uid]
	if !ok {
		w = &podWorker{uid: uid, kick: make(chan struct{}, 1), backoffBase: map[string]uint32{},
			errors: map[string]containerError{}, events: map[string]bool{}}
		k.workers[uid] = w
		k.wg.Add(1)
		go k.runWorker(w)
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (k *Kubelet) runWorker(w *podWorker) {
	defer k.wg.Done()
	ctx := k.ctx
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
		done, after := k.syncPod(ctx, w)
		if done {
			k.mu.Lock()
			select {
			case <-w.kick: // kicked meanwhile: keep going
				k.mu.Unlock()
				continue
			default:
			}
			delete(k.workers, w.uid)
			k.mu.Unlock()
			k.probes.stopPod(w.uid)
			return
		}
		if after <= 0 {
			after = k.cfg.SyncPeriod
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(after)
	}
}

// syncPod brings one pod a step closer to its spec and reports its status.
// done says the pod is gone and fully cleaned up; after is when to look again.
func (k *Kubelet) syncPod(ctx context.Context, w *podWorker) (done bool, after time.Duration) {
	pod := k.podByUID(w.uid)
	if pod != nil && w.written != nil && pod.ResourceVersion == w.writtenFrom {
		pod = w.written // the cache has not caught up with our own write
	}
	view, err := k.podView(ctx, w.uid)
	if err != nil {
		k.log.Warn("reading pod from runtime", "uid", w.uid, "err", err)
		return false, errorRetry
	}
	if pod == nil {
		return k.cleanupPod(ctx, w, view)
	}
	if pod.Spec.NodeName != k.cfg.NodeName {
		return false, 0
	}

	var p plan
	for round := 0; round < maxPlanRounds; round++ {
		updateBackoffBase(w.backoffBase, &view)
		p = computePlan(syncInput{Pod: pod, View: view, Probes: k.probes.states(w.uid), BackoffBase: w.backoffBase, Now: time.Now()})
		progress, err := k.execute(ctx, w, pod, &view, p)
		if err != nil {
			after = errorRetry
		}
		if !progress {
			break
		}
		if view, err = k.podView(ctx, w.uid); err != nil {
			return false, errorRetry
		}
	}
	k.probes.syncPod(pod, &view)
	k.removeSurplus(ctx, &view)

	st := computeStatus(statusInput{Pod: pod, View: view, Plan: p, Probes: k.probes.states(w.uid), Errors: w.errors,
		RuntimeName: k.runtimeName, HostIPs: k.hostIPs, Now: time.Now()})
	for name, d := range p.BackOff {
		key := fmt.Sprintf("backoff/%s/%d", name, view.latest(name).Attempt)
		if !w.events[key] {
			w.events[key] = true
			k.event(pod, name, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", name, pod.Name, pod.Namespace, pod.UID)
		}
		_ = d
	}
	if !statusEqual(&pod.Status, &st) {
		k.writeStatus(ctx, w, pod, st)
	}

	if p.Terminate && len(view.running()) == 0 && p.DeleteFromAPI {
		// Everything stopped: the API object may go.
		err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			k.log.Warn("deleting terminated pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			return false, errorRetry
		}
		return false, 0 // the watch's delete event leads to cleanupPod
	}
	if p.RequeueAfter > 0 && (after == 0 || p.RequeueAfter < after) {
		after = p.RequeueAfter
	}
	return false, after
}

// writeStatus writes st through pods/status, once more on a conflict with a
// fresh copy.
func (k *Kubelet) writeStatus(ctx context.Context, w *podWorker, pod *v1.Pod, st v1.PodStatus) {
	base := pod.ResourceVersion
	for try := 0; try < 2; try++ {
		up := pod.DeepCopy()
		up.Status = st
		got, err := k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{})
		if err == nil {
			w.written, w.writtenFrom = got, base
			return
		}
		if !apierrors.IsConflict(err) {
			if !apierrors.IsNotFound(err) {
				k.log.Warn("writing pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			}
			return
		}
		fresh, err := k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || fresh.UID != pod.UID {
			return
		}
		// Keep conditions others own that the fresh copy has.
		pod = fresh
	}
}

// execute carries out a plan; progress says the runtime's state changed so
// that planning again may lead further.
func (k *Kubelet) execute(ctx context.Context, w *podWorker, pod *v1.Pod, view *podView, p plan) (progress bool, err error) {
	if len(p.Kill) > 0 {
		k.killContainers(ctx, pod, view, p.Kill)
		progress = true
	}
	for _, id := range p.StopSandboxes {
		if len(view.running()) > 0 && len(p.Kill) == 0 {
			break
		}
		if _, err := k.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			k.log.Warn("stopping sandbox", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			return progress, err
		}
		progress = true
	}
	if p.CreateSandbox {
		if err := k.createSandbox(ctx, pod, p.SandboxAttempt); err != nil {
			return progress, err
		}
		progress = true
	}
	if len(p.Start) > 0 {
		if err := k.setupVolumes(ctx, pod); err != nil {
			for _, s := range p.Start {
				w.errors[s.Name] = containerError{Reason: "CreateContainerConfigError", Message: err.Error()}
			}
			k.event(pod, "", v1.EventTypeWarning, "FailedMount", "%v", err)
			return progress, err
		}
		sb := view.sandbox()
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range p.Start {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cerr := k.startContainer(ctx, pod, sb, s)
				mu.Lock()
				defer mu.Unlock()
				if cerr != nil {
					w.errors[s.Name] = *cerr
					err = errors.New(cerr.Message)
					return
				}
				delete(w.errors, s.Name)
				progress = true
			}()
		}
		wg.Wait()
	}
	if !p.CreateSandbox && len(p.Start) == 0 && !p.Terminate {
		// A running pod: refresh configMap/secret volumes in place.
		if err := k.setupVolumes(ctx, pod); err != nil {
			k.log.Debug("refreshing volumes", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	return progress, err
}

func (k *Kubelet) createSandbox(ctx context.Context, pod *v1.Pod, attempt uint32) error {
	k.mu.Lock()
	cidr := k.podCIDR
	k.mu.Unlock()
	if cidr == "" && !pod.Spec.HostNetwork && k.needsPodCIDR() {
		return errors.New("kubelet: no pod CIDR yet")
	}
	if err := os.MkdirAll(k.podLogDir(pod), 0o755); err != nil {
		return err
	}
	cfg := k.sandboxConfig(pod, attempt)
	cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
	defer cancel()
	if _, err := k.rt.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: cfg}); err != nil {
		k.event(pod, "", v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %s", runtimeMessage(err))
		return err
	}
	return nil
}

func (k *Kubelet) needsPodCIDR() bool {
	return len(k.runtimeName) >= 5 && k.runtimeName[:5] == "skiff"
}

// startContainer pulls, creates and starts one container; the error it
// returns becomes the container's waiting reason.
func (k *Kubelet) startContainer(ctx context.Context, pod *v1.Pod, sb *sandboxInstance, s startAction) *containerError {
	c := findContainer(pod, s.Name)
	if c == nil {
		return &containerError{Reason: "CreateContainerError", Message: "container not in spec"}
	}
	id := s.ExistingID
	if id == "" {
		if cerr := k.ensureImage(ctx, pod, c); cerr != nil {
			return cerr
		}
		podIP := ""
		if sb != nil {
			podIP = sb.IP
		}
		if pod.Spec.HostNetwork {
			podIP = k.cfg.NodeIP
		}
		k.mu.Lock()
		alloc := k.allocatable
		k.mu.Unlock()
		var services []*v1.Service
		if all, err := k.services.List(everything); err == nil {
			services = all
		}
		env, err := buildEnv(envInput{Pod: pod, Container: c, Services: services, Objects: k.objects(ctx),
			PodIP: podIP, PodIPs: nonEmpty(podIP), HostIP: k.cfg.NodeIP, HostIPs: k.hostIPs, Allocatable: alloc})
		if err != nil {
			k.event(pod, c.Name, v1.EventTypeWarning, "Failed", "Error: %v", err)
			return &containerError{Reason: "CreateContainerConfigError", Message: err.Error()}
		}
		mounts, err := k.containerMounts(pod, c, env)
		if err != nil {
			k.event(pod, c.Name, v1.EventTypeWarning, "Failed", "Error: %v", err)
			return &containerError{Reason: "CreateContainerConfigError", Message: err.Error()}
		}
		cfg := k.containerConfig(pod, c, s.Init, s.Attempt, env, mounts)
		cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
		resp, err := k.rt.CreateContainer(cctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.ID, Config: cfg, SandboxConfig: k.sandboxConfig(pod, sb.Attempt)})
		cancel()
		if err != nil {
			k.event(pod, c.Name, v1.EventTypeWarning, "Failed", "Error: %s", runtimeMessage(err))
			return &containerError{Reason: "CreateContainerError", Message: runtimeMessage(err)}
		}
		id = resp.ContainerId
		k.event(pod, c.Name, v1.EventTypeNormal, "Created", "Created container: %s", c.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
	_, err := k.rt.StartContainer(cctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	cancel()
	if err != nil {
		k.event(pod, c.Name, v1.EventTypeWarning, "Failed", "Error: %s", runtimeMessage(err))
		return &containerError{Reason: "RunContainerError", Message: runtimeMessage(err)}
	}
	k.event(pod, c.Name, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := k.runHandler(ctx, pod, c, id, c.Lifecycle.PostStart, gracePeriod(pod, time.Time{})); err != nil {
			k.event(pod, c.Name, v1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %s", msg)
			k.stopContainer(ctx, id, gracePeriod(pod, time.Time{}))
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func findContainer(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// ensureImage applies imagePullPolicy through the CRI image service.
func (k *Kubelet) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container) *containerError {
	spec := &runtimeapi.ImageSpec{Image: c.Image}
	policy := c.ImagePullPolicy
	present := false
	if policy != v1.PullAlways {
		st, err := k.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
		present = err == nil && st.Image != nil
	}
	if present {
		k.eventOnce(pod, c.Name, "Pulled", "Container image %q already present on machine", c.Image)
		return nil
	}
	if policy == v1.PullNever {
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		k.event(pod, c.Name, v1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		return &containerError{Reason: "ErrImageNeverPull", Message: msg}
	}
	k.event(pod, c.Name, v1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, criCallTimeout)
	defer cancel()
	if _, err := k.img.PullImage(cctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
		k.event(pod, c.Name, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %s", c.Image, runtimeMessage(err))
		return &containerError{Reason: "ErrImagePull", Message: runtimeMessage(err)}
	}
	d := time.Since(start).Round(time.Millisecond)
	k.event(pod, c.Name, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s (%s including waiting)", c.Image, d, d)
	return nil
}

// killContainers runs preStop hooks and stops the containers in parallel,
// each with its own grace.
func (k *Kubelet) killContainers(ctx context.Context, pod *v1.Pod, view *podView, kills []killAction) {
	var wg sync.WaitGroup
	for _, kill := range kills {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if kill.Message != "" {
				k.event(pod, kill.Name, v1.EventTypeNormal, "Killing", "%s", kill.Message)
			}
			grace := kill.Grace
			deadline := time.Now().Add(grace)
			if c := findContainer(pod, kill.Name); c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
				if msg, err := k.runHandler(ctx, pod, c, kill.ID, c.Lifecycle.PreStop, grace); err != nil {
					k.event(pod, kill.Name, v1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %s", msg)
				}
				grace = max(time.Until(deadline), 2*time.Second) // as Kubernetes: a short minimum after preStop
			}
			k.stopContainer(ctx, kill.ID, grace)
		}()
	}
	wg.Wait()
}

func (k *Kubelet) stopContainer(ctx context.Context, id string, grace time.Duration) {
	cctx, cancel := context.WithTimeout(ctx, grace+criCallTimeout)
	defer cancel()
	if _, err := k.rt.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: int64(grace / time.Second)}); err != nil {
		k.log.Warn("stopping container", "id", id, "err", err)
	}
}

// removeSurplus removes the old exited instances the pod no longer needs.
// A failure is retried on the next sync.
func (k *Kubelet) removeSurplus(ctx context.Context, view *podView) {
	for _, c := range view.surplus() {
		if _, err := k.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ID}); err != nil {
			k.log.Warn("removing old container", "id", c.ID, "name", c.Name, "err", err)
			continue
		}
		k.forgetContainer(c.ID)
		view.drop(c.ID)
	}
}

// cleanupPod removes everything of a pod that is gone from the API: its
// containers, sandboxes, volumes and logs.
func (k *Kubelet) cleanupPod(ctx context.Context, w *podWorker, view podView) (bool, time.Duration) {
	var kills []killAction
	for _, c := range view.running() {
		kills = append(kills, killAction{ID: c.ID, Name: c.Name, Grace: orphanGrace})
	}
	k.killContainers(ctx, &v1.Pod{}, &view, kills)
	for _, c := range view.Containers {
		if _, err := k.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ID}); err != nil {
			return false, errorRetry
		}
		k.forgetContainer(c.ID)
	}
	for _, sb := range view.Sandboxes {
		if _, err := k.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.ID}); err != nil {
			return false, errorRetry
		}
		if _, err := k.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.ID}); err != nil {
			return false, errorRetry
		}
	}
	k.teardownVolumes(w.uid)
	return true, 0
}

// event records an event on the pod, or on one of its containers.
func (k *Kubelet) event(pod *v1.Pod, container, typ, reason, format string, args ...any) {
	if k.recorder == nil || pod.Name == "" {
		return
	}
	ref := &v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion}
	if container != "" {
		ref.FieldPath = containerFieldPath(pod, container)
	}
	k.recorder.Eventf(ref, typ, reason, format, args...)
}

// eventOnce is event for messages that repeat on every restart and say
// nothing new ("image already present"): Kubernetes repeats them, the
// event sink aggregates, so this only trims noise in tests' eyes.
func (k *Kubelet) eventOnce(pod *v1.Pod, container, reason, format string, args ...any) {
	k.event(pod, container, v1.EventTypeNormal, reason, format, args...)
}

func containerFieldPath(pod *v1.Pod, name string) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return fmt.Sprintf("spec.initContainers{%s}", name)
		}
	}
	return fmt.Sprintf("spec.containers{%s}", name)
}
