package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// probeKind names the three probes as Kubernetes' events do.
type probeKind string

const (
	liveness  probeKind = "Liveness"
	readiness probeKind = "Readiness"
	startup   probeKind = "Startup"
)

// probeKey identifies one prober goroutine.
type probeKey struct {
	uid         types.UID
	containerID string
	kind        probeKind
}

// probeManager runs one goroutine per probe of every running container and
// keeps what they concluded for the pod workers.
type probeManager struct {
	k *Kubelet

	mu      sync.Mutex
	cancel  map[probeKey]context.CancelFunc
	results map[types.UID]map[string]probeState // by container ID
}

func newProbeManager(k *Kubelet) *probeManager {
	return &probeManager{k: k, cancel: map[probeKey]context.CancelFunc{}, results: map[types.UID]map[string]probeState{}}
}

// states is a copy of the pod's probe results.
func (m *probeManager) states(uid types.UID) map[string]probeState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]probeState, len(m.results[uid]))
	for id, s := range m.results[uid] {
		out[id] = s
	}
	return out
}

// syncPod starts probers for the pod's running containers and stops those of
// containers that are gone.
func (m *probeManager) syncPod(pod *v1.Pod, view *podView) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := map[string]bool{}
	podIP := ""
	if sb := view.sandbox(); sb != nil {
		podIP = sb.IP
	}
	if pod.Spec.HostNetwork {
		podIP = m.k.cfg.NodeIP
	}
	terminating := pod.DeletionTimestamp != nil || isTerminal(pod.Status.Phase)
	probed := make([]*v1.Container, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			probed = append(probed, &pod.Spec.InitContainers[i]) // sidecars are probed like app containers
		}
	}
	for i := range pod.Spec.Containers {
		probed = append(probed, &pod.Spec.Containers[i])
	}
	for _, c := range probed {
		inst := view.latest(c.Name)
		if inst == nil || !inst.running() || terminating {
			continue
		}
		live[inst.ID] = true
		res := m.results[pod.UID]
		if res == nil {
			res = map[string]probeState{}
			m.results[pod.UID] = res
		}
		if _, ok := res[inst.ID]; !ok {
			res[inst.ID] = probeState{Ready: c.ReadinessProbe == nil, Started: c.StartupProbe == nil}
		}
		for kind, p := range map[probeKind]*v1.Probe{liveness: c.LivenessProbe, readiness: c.ReadinessProbe, startup: c.StartupProbe} {
			if p == nil {
				continue
			}
			key := probeKey{pod.UID, inst.ID, kind}
			if _, ok := m.cancel[key]; ok {
				continue
			}
			ctx, cancel := context.WithCancel(m.k.ctx)
			m.cancel[key] = cancel
			m.k.wg.Add(1)
			go func() {
				defer m.k.wg.Done()
				m.run(ctx, pod.DeepCopy(), c.DeepCopy(), inst.ID, inst.StartedAt, podIP, kind, p.DeepCopy())
			}()
		}
	}
	for key, cancel := range m.cancel {
		if key.uid == pod.UID && !live[key.containerID] {
			cancel()
			delete(m.cancel, key)
		}
	}
	for id := range m.results[pod.UID] {
		if !live[id] {
			delete(m.results[pod.UID], id)
		}
	}
}

// stopPod stops all probers of a pod that is gone.
func (m *probeManager) stopPod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, cancel := range m.cancel {
		if key.uid == uid {
			cancel()
			delete(m.cancel, key)
		}
	}
	delete(m.results, uid)
}

// update changes one container's probe state and wakes the pod if it
// changed.
func (m *probeManager) update(uid types.UID, id string, f func(*probeState)) {
	m.mu.Lock()
	res := m.results[uid]
	if res == nil {
		m.mu.Unlock()
		return
	}
	old, ok := res[id]
	if !ok {
		m.mu.Unlock()
		return
	}
	s := old
	f(&s)
	res[id] = s
	m.mu.Unlock()
	if s != old {
		m.k.kick(uid)
	}
}

func (m *probeManager) started(uid types.UID, id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.results[uid][id].Started
}

// run is one prober: it waits initialDelaySeconds after the container
// started, then probes every periodSeconds and applies the thresholds.
func (m *probeManager) run(ctx context.Context, pod *v1.Pod, c *v1.Container, id string, startedAt time.Time, podIP string, kind probeKind, p *v1.Probe) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	success := int(max(p.SuccessThreshold, 1))
	failure := int(max(p.FailureThreshold, 1))
	if startedAt.IsZero() {
		startedAt = time.Now()
	}
	wait := time.Until(startedAt.Add(time.Duration(p.InitialDelaySeconds) * time.Second))
	if wait > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var oks, fails int
	for {
		// Liveness and readiness wait until a startup probe has passed.
		if kind == startup || m.started(pod.UID, id) {
			ok, msg := m.k.probeOnce(ctx, pod, c, id, podIP, p)
			if ctx.Err() != nil {
				return
			}
			if ok {
				oks, fails = oks+1, 0
			} else {
				oks, fails = 0, fails+1
				m.k.event(pod, c.Name, v1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", kind, msg)
			}
			switch kind {
			case readiness:
				if oks >= success {
					m.update(pod.UID, id, func(s *probeState) { s.Ready = true })
				} else if fails >= failure {
					m.update(pod.UID, id, func(s *probeState) { s.Ready = false })
				}
			case startup:
				if ok {
					m.update(pod.UID, id, func(s *probeState) { s.Started = true })
					return // a startup probe runs until it first succeeds
				}
				if fails >= failure {
					m.update(pod.UID, id, func(s *probeState) {
						s.Kill, s.KillMessage = true, fmt.Sprintf("Container %s failed startup probe, will be restarted", c.Name)
					})
					return
				}
			case liveness:
				if fails >= failure {
					m.update(pod.UID, id, func(s *probeState) {
						s.Kill, s.KillMessage = true, fmt.Sprintf("Container %s failed liveness probe, will be restarted", c.Name)
					})
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeOnce runs one probe; msg says why it failed.
func (k *Kubelet) probeOnce(ctx context.Context, pod *v1.Pod, c *v1.Container, id, podIP string, p *v1.Probe) (ok bool, msg string) {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := p.ProbeHandler
	switch {
	case h.Exec != nil:
		resp, err := k.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: h.Exec.Command, Timeout: int64(timeout / time.Second)})
		if err != nil {
			return false, runtimeMessage(err)
		}
		if resp.ExitCode != 0 {
			out := strings.TrimSpace(string(resp.Stdout) + string(resp.Stderr))
			if out == "" {
				return false, fmt.Sprintf("command %q exited with %d", strings.Join(h.Exec.Command, " "), resp.ExitCode)
			}
			return false, out
		}
		return true, ""
	case h.HTTPGet != nil:
		return httpProbe(ctx, c, podIP, h.HTTPGet)
	case h.TCPSocket != nil:
		host := h.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		port, err := resolvePort(h.TCPSocket.Port, c)
		if err != nil {
			return false, err.Error()
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	case h.GRPC != nil:
		conn, err := grpc.NewClient(net.JoinHostPort(podIP, strconv.Itoa(int(h.GRPC.Port))), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close()
		svc := ""
		if h.GRPC.Service != nil {
			svc = *h.GRPC.Service
		}
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return false, fmt.Sprintf("failed to connect service %q within %s: %s", net.JoinHostPort(podIP, strconv.Itoa(int(h.GRPC.Port))), timeout, runtimeMessage(err))
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return false, fmt.Sprintf("service unhealthy (responded with %q)", resp.Status.String())
		}
		return true, ""
	}
	return false, "probe has no handler"
}

// resolvePort turns a number or a named container port into a number.
func resolvePort(p intstr.IntOrString, c *v1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("couldn't find port: %s in %s", p.StrVal, c.Name)
}

// probeClient does not follow redirects to other hosts and does not verify
// certificates, as Kubernetes' prober.
var probeClient = &http.Client{
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // probes never verify
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

func httpProbe(ctx context.Context, c *v1.Container, podIP string, g *v1.HTTPGetAction) (bool, string) {
	host := g.Host
	if host == "" {
		host = podIP
	}
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return false, err.Error()
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// runHandler runs a postStart or preStop hook.
func (k *Kubelet) runHandler(ctx context.Context, pod *v1.Pod, c *v1.Container, id string, h *v1.LifecycleHandler, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		resp, err := k.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: h.Exec.Command, Timeout: int64(timeout / time.Second)})
		if err != nil {
			return runtimeMessage(err), err
		}
		if resp.ExitCode != 0 {
			msg := fmt.Sprintf("command '%s' exited with %d: %s", strings.Join(h.Exec.Command, " "), resp.ExitCode, resp.Stderr)
			return msg, fmt.Errorf("kubelet: hook failed: %s", msg)
		}
		return "", nil
	case h.HTTPGet != nil:
		podIP := pod.Status.PodIP
		if ok, msg := httpProbe(ctx, c, podIP, h.HTTPGet); !ok {
			return msg, fmt.Errorf("kubelet: hook failed: %s", msg)
		}
		return "", nil
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		}
		return "", nil
	}
	return "", nil
}
