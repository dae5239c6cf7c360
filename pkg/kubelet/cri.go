package kubelet

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podLogDir is where the runtime writes a pod's container logs (CRI
// LogDirectory); each container's file is <name>/<attempt>.log under it.
func (k *Kubelet) podLogDir(pod *v1.Pod) string {
	return filepath.Join(k.cfg.DataDir, "logs", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}

// podDir holds a pod's volumes and other per-pod state.
func (k *Kubelet) podDir(uid types.UID) string {
	return filepath.Join(k.cfg.DataDir, "pods", string(uid))
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// podView asks the runtime for everything it has of the pod with uid.
// Statuses of exited containers never change, so they are cached.
func (k *Kubelet) podView(ctx context.Context, uid types.UID) (podView, error) {
	var v podView
	sel := map[string]string{labelPodUID: string(uid)}
	sbs, err := k.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
	if err != nil {
		return v, fmt.Errorf("list sandboxes: %w", err)
	}
	for _, sb := range sbs.Items {
		inst := sandboxInstance{ID: sb.Id, Ready: sb.State == runtimeapi.PodSandboxState_SANDBOX_READY, CreatedAt: unixTime(sb.CreatedAt)}
		if sb.Metadata != nil {
			inst.Attempt = sb.Metadata.Attempt
		}
		if inst.Ready {
			st, err := k.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.Id})
			if err != nil {
				return v, fmt.Errorf("sandbox status: %w", err)
			}
			if n := st.GetStatus().GetNetwork(); n != nil {
				inst.IP = n.Ip
				for _, ip := range n.AdditionalIps {
					inst.IPs = append(inst.IPs, ip.Ip)
				}
			}
		}
		v.Sandboxes = append(v.Sandboxes, inst)
	}
	cs, err := k.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: sel}})
	if err != nil {
		return v, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs.Containers {
		st, err := k.containerStatusCached(ctx, c.Id, c.State)
		if err != nil {
			continue // removed between list and status
		}
		inst := containerInstance{
			ID: c.Id, SandboxID: c.PodSandboxId, Name: c.Labels[labelContainerName], Init: c.Labels[labelContainerType] == "init",
			Attempt: c.GetMetadata().GetAttempt(), Hash: c.Annotations[annotationHash], State: st.State,
			CreatedAt: unixTime(st.CreatedAt), StartedAt: unixTime(st.StartedAt), FinishedAt: unixTime(st.FinishedAt),
			ExitCode: st.ExitCode, Reason: st.Reason, Message: st.Message, ImageRef: st.ImageRef, LogPath: st.LogPath,
		}
		if st.Image != nil {
			inst.Image = st.Image.Image
		}
		if inst.ImageRef == "" {
			inst.ImageRef = st.ImageId
		}
		v.Containers = append(v.Containers, inst)
	}
	v.sortView()
	return v, nil
}

// containerStatusCached returns the CRI status of a container, from cache
// when the container has exited (its status is then final).
func (k *Kubelet) containerStatusCached(ctx context.Context, id string, listed runtimeapi.ContainerState) (*runtimeapi.ContainerStatus, error) {
	k.mu.Lock()
	st, ok := k.exitedStatus[id]
	k.mu.Unlock()
	if ok {
		return st, nil
	}
	resp, err := k.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return nil, err
	}
	st = resp.Status
	if st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		k.mu.Lock()
		k.exitedStatus[id] = st
		k.mu.Unlock()
	}
	return st, nil
}

// forgetContainer drops the cached status of a removed container.
func (k *Kubelet) forgetContainer(id string) {
	k.mu.Lock()
	delete(k.exitedStatus, id)
	k.mu.Unlock()
}

// sandboxConfig is the CRI description of a pod's sandbox.
func (k *Kubelet) sandboxConfig(pod *v1.Pod, attempt uint32) *runtimeapi.PodSandboxConfig {
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	if pod.Spec.HostNetwork {
		hostname = k.hostname
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: k.podLogDir(pod),
		DnsConfig:    k.dnsConfig(pod),
		Labels:       map[string]string{labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace},
		Annotations:  map[string]string{annotationGrace: strconv.FormatInt(int64(gracePeriod(pod, time.Time{})/time.Second), 10)},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions(pod)},
		},
	}
	for k, v := range pod.Labels {
		if _, ok := cfg.Labels[k]; !ok {
			cfg.Labels[k] = v
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch p.Protocol {
			case v1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case v1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{Protocol: proto, ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	return cfg
}

func namespaceOptions(pod *v1.Pod) *runtimeapi.NamespaceOption {
	o := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	if pod.Spec.HostNetwork {
		o.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		o.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		o.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostIPC {
		o.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return o
}

// dnsConfig applies the pod's dnsPolicy: cluster DNS first (the default),
// the node's resolver (Default, or ClusterFirst on the host network), or
// only the pod's own dnsConfig (None); pod.spec.dnsConfig is merged in.
func (k *Kubelet) dnsConfig(pod *v1.Pod) *runtimeapi.DNSConfig {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	if policy == v1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = v1.DNSDefault
	}
	var cfg *runtimeapi.DNSConfig
	switch policy {
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		if k.cfg.ClusterDNS != "" {
			d := k.cfg.ClusterDomain
			cfg = &runtimeapi.DNSConfig{
				Servers:  []string{k.cfg.ClusterDNS},
				Searches: []string{pod.Namespace + ".svc." + d, "svc." + d, d},
				Options:  []string{"ndots:5"},
			}
		}
	case v1.DNSNone:
		cfg = &runtimeapi.DNSConfig{}
	}
	if pc := pod.Spec.DNSConfig; pc != nil {
		if cfg == nil {
			cfg = &runtimeapi.DNSConfig{}
		}
		cfg.Servers = append(cfg.Servers, pc.Nameservers...)
		cfg.Searches = append(cfg.Searches, pc.Searches...)
		for _, o := range pc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			cfg.Options = append(cfg.Options, opt)
		}
	}
	return cfg
}

// containerConfig is the CRI description of one container instance.
func (k *Kubelet) containerConfig(pod *v1.Pod, c *v1.Container, init bool, attempt uint32, env []envVar, mounts []*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	kind := "app"
	if init {
		kind = "init"
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:      &runtimeapi.ImageSpec{Image: c.Image},
		Command:    expandCommand(c.Command, env),
		Args:       expandCommand(c.Args, env),
		WorkingDir: c.WorkingDir,
		Mounts:     mounts,
		Labels: map[string]string{labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace,
			labelContainerName: c.Name, labelContainerType: kind},
		Annotations: map[string]string{annotationHash: containerHash(c), annotationRestarts: strconv.Itoa(int(attempt)),
			annotationGrace: strconv.FormatInt(int64(gracePeriod(pod, time.Time{})/time.Second), 10)},
		LogPath:   filepath.Join(c.Name, strconv.Itoa(int(attempt))+".log"),
		Stdin:     c.Stdin,
		StdinOnce: c.StdinOnce,
		Tty:       c.TTY,
		Linux:     &runtimeapi.LinuxContainerConfig{Resources: linuxResources(c), SecurityContext: securityContext(pod, c)},
	}
	for _, e := range env {
		cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: e.Name, Value: []byte(e.Value)})
	}
	return cfg
}

// linuxResources maps requests and limits onto cgroup settings the way
// Kubernetes does: shares from the cpu request, quota from the cpu limit.
func linuxResources(c *v1.Container) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000}
	if q, ok := c.Resources.Requests[v1.ResourceCPU]; ok {
		r.CpuShares = max(2, q.MilliValue()*1024/1000)
	} else {
		r.CpuShares = 2
	}
	if q, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		r.CpuQuota = max(1000, q.MilliValue()*100000/1000)
	}
	if q, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		r.MemoryLimitInBytes = q.Value()
	}
	return r
}

func securityContext(pod *v1.Pod, c *v1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = psc.SupplementalGroups
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *csc.RunAsUser}
		}
		if csc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *csc.RunAsGroup}
		}
		if csc.Privileged != nil {
			sc.Privileged = *csc.Privileged
		}
		if csc.ReadOnlyRootFilesystem != nil {
			sc.ReadonlyRootfs = *csc.ReadOnlyRootFilesystem
		}
	}
	return sc
}

// runtimeReason turns a CRI error into a short message for a waiting reason.
func runtimeMessage(err error) string {
	s := err.Error()
	if i := strings.Index(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return s
}
