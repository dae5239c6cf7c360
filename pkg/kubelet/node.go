package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// Node heartbeat timing.
const (
	statusReportPeriod = 10 * time.Second // full status even when unchanged
	readinessCheck     = time.Second      // how fast a change of readiness is reported
	leaseRenewPeriod   = 10 * time.Second
	leaseDuration      = 40 // seconds
	nodeLeaseNamespace = "kube-node-lease"
	maxPods            = 110
	labelControlPlane  = "node-role.kubernetes.io/control-plane"
)

// Reserves kept back from capacity for the system and the agent itself.
var (
	memoryReserve = resource.MustParse("100Mi")
	storageShare  = 0.9 // allocatable ephemeral storage is 90% of the filesystem
)

// nodeReadiness is the Ready condition's status, reason and message.
type nodeReadiness struct {
	Ready   bool
	Message string
}

// nodeReady decides whether the node can run pods, from the runtime's
// reported conditions and whether a pod CIDR is known. Pure.
func nodeReady(st *runtimeapi.RuntimeStatus, statusErr error, needCIDR bool, podCIDR string) nodeReadiness {
	if statusErr != nil {
		return nodeReadiness{Message: fmt.Sprintf("container runtime is down: %s", runtimeMessage(statusErr))}
	}
	var problems []string
	for _, c := range st.GetConditions() {
		if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && !c.Status {
			problems = append(problems, fmt.Sprintf("container runtime not ready: %s=false reason:%s message:%s", c.Type, c.Reason, c.Message))
		}
	}
	if needCIDR && podCIDR == "" {
		problems = append(problems, "node has no pod CIDR yet (the controller manager assigns one from the cluster CIDR)")
	}
	if len(problems) > 0 {
		return nodeReadiness{Message: strings.Join(problems, "; ")}
	}
	return nodeReadiness{Ready: true, Message: "kubelet is posting ready status"}
}

// runNode registers the node, then keeps its status and lease fresh.
func (k *Kubelet) runNode(ctx context.Context) {
	for {
		err := k.registerNode(ctx)
		if err == nil {
			break
		}
		k.log.Warn("registering node", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	var last nodeReadiness
	var lastReport, lastLease time.Time
	t := time.NewTicker(readinessCheck)
	defer t.Stop()
	for {
		now := time.Now()
		node, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err == nil {
			k.syncPodCIDR(ctx, node.Spec.PodCIDR)
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, serr := k.rt.Status(sctx, &runtimeapi.StatusRequest{})
			cancel()
			k.mu.Lock()
			cidr := k.podCIDR
			k.mu.Unlock()
			r := nodeReady(st.GetStatus(), serr, strings.HasPrefix(k.runtimeName, "skiff"), cidr)
			if r != last || now.Sub(lastReport) >= statusReportPeriod {
				if err := k.updateNodeStatus(ctx, node, r, now); err != nil {
					k.log.Warn("updating node status", "err", err)
				} else {
					last, lastReport = r, now
				}
			}
		} else if apierrors.IsNotFound(err) {
			// Deleted under us: register again, as Kubernetes' kubelet does.
			_ = k.registerNode(ctx)
		}
		if now.Sub(lastLease) >= leaseRenewPeriod {
			if err := k.renewLease(ctx, now); err != nil {
				k.log.Warn("renewing node lease", "err", err)
			} else {
				lastLease = now
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// syncPodCIDR passes a newly assigned pod CIDR to the runtime.
func (k *Kubelet) syncPodCIDR(ctx context.Context, cidr string) {
	k.mu.Lock()
	same := cidr == k.podCIDR
	k.mu.Unlock()
	if same || cidr == "" {
		return
	}
	_, err := k.rt.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}})
	if err != nil {
		k.log.Warn("passing pod CIDR to the runtime", "cidr", cidr, "err", err)
		return
	}
	k.log.Info("pod CIDR set", "cidr", cidr)
	k.mu.Lock()
	k.podCIDR = cidr
	k.mu.Unlock()
	// Pods waiting for a network may go now.
	k.mu.Lock()
	for uid := range k.workers {
		k.kickLocked(uid)
	}
	k.mu.Unlock()
}

// registerNode creates the Node, or brings an existing one's labels and
// addresses up to date.
func (k *Kubelet) registerNode(ctx context.Context) error {
	want := k.nodeObject()
	node, err := k.client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for key, v := range want.Labels {
			if node.Labels[key] != v {
				node.Labels[key], changed = v, true
			}
		}
		if changed {
			if node, err = k.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	k.log.Info("node registered")
	return k.updateNodeStatus(ctx, node, nodeReadiness{Message: "kubelet is starting"}, time.Now())
}

func (k *Kubelet) nodeObject() *v1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":  k.cfg.NodeName,
		"kubernetes.io/os":        goruntime.GOOS,
		"kubernetes.io/arch":      goruntime.GOARCH,
		"beta.kubernetes.io/os":   goruntime.GOOS,
		"beta.kubernetes.io/arch": goruntime.GOARCH,
	}
	if k.cfg.ControlPlane {
		labels[labelControlPlane] = ""
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels,
		Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}}}
}

// capacity measures the host: cpus, memory, the data dir's filesystem.
func (k *Kubelet) capacity() (capacity, allocatable v1.ResourceList) {
	capacity = v1.ResourceList{
		v1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		v1.ResourcePods: *resource.NewQuantity(maxPods, resource.DecimalSI),
	}
	allocatable = capacity.DeepCopy()
	if mem := memTotal(); mem > 0 {
		capacity[v1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
		alloc := max(mem-memoryReserve.Value(), 0)
		allocatable[v1.ResourceMemory] = *resource.NewQuantity(alloc, resource.BinarySI)
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(k.cfg.DataDir, &fs) == nil {
		total := int64(fs.Blocks) * fs.Bsize
		capacity[v1.ResourceEphemeralStorage] = *resource.NewQuantity(total, resource.BinarySI)
		allocatable[v1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(float64(total)*storageShare), resource.BinarySI)
	}
	return capacity, allocatable
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb * 1024
		}
	}
	return 0
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func osImage() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// updateNodeStatus writes capacity, addresses, node info and conditions.
func (k *Kubelet) updateNodeStatus(ctx context.Context, node *v1.Node, r nodeReadiness, now time.Time) error {
	node = node.DeepCopy()
	capacity, allocatable := k.capacity()
	k.mu.Lock()
	k.allocatable = allocatable
	k.mu.Unlock()
	st := &node.Status
	st.Capacity, st.Allocatable = capacity, allocatable
	st.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: k.cfg.NodeIP}, {Type: v1.NodeHostName, Address: k.hostname}}
	st.DaemonEndpoints.KubeletEndpoint.Port = int32(max(k.cfg.Port, 0))
	st.NodeInfo = v1.NodeSystemInfo{
		MachineID:               readTrim("/etc/machine-id"),
		SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
		BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           readTrim("/proc/sys/kernel/osrelease"),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: k.runtimeName + "://" + k.runtimeVersion,
		KubeletVersion:          Version,
		OperatingSystem:         goruntime.GOOS,
		Architecture:            goruntime.GOARCH,
	}
	hb := metav1.NewTime(now)
	set := func(t v1.NodeConditionType, status v1.ConditionStatus, reason, msg string) {
		for i := range st.Conditions {
			c := &st.Conditions[i]
			if c.Type != t {
				continue
			}
			if c.Status != status {
				c.LastTransitionTime = hb
			}
			c.Status, c.Reason, c.Message, c.LastHeartbeatTime = status, reason, msg, hb
			return
		}
		st.Conditions = append(st.Conditions, v1.NodeCondition{Type: t, Status: status, Reason: reason, Message: msg, LastHeartbeatTime: hb, LastTransitionTime: hb})
	}
	set(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
	set(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
	set(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
	if r.Ready {
		set(v1.NodeReady, v1.ConditionTrue, "KubeletReady", r.Message)
	} else {
		set(v1.NodeReady, v1.ConditionFalse, "KubeletNotReady", r.Message)
	}
	_, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// renewLease creates or renews the node's Lease in kube-node-lease.
func (k *Kubelet) renewLease(ctx context.Context, now time.Time) error {
	leases := k.client.CoordinationV1().Leases(nodeLeaseNamespace)
	t := metav1.NewMicroTime(now)
	l, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: nodeLeaseNamespace},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(k.cfg.NodeName), LeaseDurationSeconds: ptr.To[int32](leaseDuration), RenewTime: &t},
		}
		if node, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{}); err == nil {
			l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
		}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptr.To(k.cfg.NodeName)
	l.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDuration)
	l.Spec.RenewTime = &t
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}
