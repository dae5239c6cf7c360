package registry

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Column helpers. Descriptions come from the API types' own field docs, as
// Kubernetes' tables carry them.
func column(name, typ, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc}
}

func wideColumn(name, typ, desc string) metav1.TableColumnDefinition {
	c := column(name, typ, desc)
	c.Priority = 1
	return c
}

var (
	nameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}
	ageColumn = column("Age", "string", metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"])
)

const (
	none    = "<none>"
	unknown = "<unknown>"
)

var podColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
	column("Status", "string", "The aggregate status of the containers in this pod."),
	column("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
	ageColumn,
	wideColumn("IP", "string", corev1.PodStatus{}.SwaggerDoc()["podIP"]),
	wideColumn("Node", "string", corev1.PodSpec{}.SwaggerDoc()["nodeName"]),
	wideColumn("Nominated Node", "string", corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"]),
	wideColumn("Readiness Gates", "string", corev1.PodSpec{}.SwaggerDoc()["readinessGates"]),
}

func podRow(obj runtime.Object, now time.Time) []interface{} {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	s := PodSummary(pod)
	restarts := strconv.Itoa(s.Restarts)
	if s.Restarts != 0 && !s.LastRestart.IsZero() {
		restarts = fmt.Sprintf("%d (%s ago)", s.Restarts, age(s.LastRestart, now))
	}
	ip := podIP(pod)
	if ip == "" {
		ip = none
	}
	return []interface{}{
		pod.Name,
		fmt.Sprintf("%d/%d", s.Ready, s.Total),
		s.Status,
		restarts,
		age(pod.CreationTimestamp, now),
		ip,
		orNone(pod.Spec.NodeName),
		orNone(pod.Status.NominatedNodeName),
		readinessGates(pod),
	}
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func podIP(pod *corev1.Pod) string {
	if len(pod.Status.PodIPs) > 0 {
		return pod.Status.PodIPs[0].IP
	}
	return pod.Status.PodIP
}

func readinessGates(pod *corev1.Pod) string {
	if len(pod.Spec.ReadinessGates) == 0 {
		return none
	}
	met := 0
	for _, g := range pod.Spec.ReadinessGates {
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType {
				if c.Status == corev1.ConditionTrue {
					met++
				}
				break
			}
		}
	}
	return fmt.Sprintf("%d/%d", met, len(pod.Spec.ReadinessGates))
}

// PodStatusSummary is what `kubectl get pods` shows of a pod's state.
type PodStatusSummary struct {
	Ready, Total int
	// Status is the STATUS column: the phase, or the most telling container
	// reason (ContainerCreating, CrashLoopBackOff, Init:0/1, OOMKilled,
	// Completed, Terminating ...).
	Status      string
	Restarts    int
	LastRestart metav1.Time
}

// PodSummary computes the READY, STATUS and RESTARTS columns of a pod as
// kubectl shows them. Sidecars (init containers with restartPolicy Always)
// count as containers once started.
func PodSummary(pod *corev1.Pod) PodStatusSummary {
	var s PodStatusSummary
	s.Total = len(pod.Spec.Containers)
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	sidecar := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecar[c.Name] = true
			s.Total++
		}
	}

	var sidecarRestarts int
	var lastSidecarRestart metav1.Time
	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		s.Restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && s.LastRestart.Before(&t.FinishedAt) {
			s.LastRestart = t.FinishedAt
		}
		if sidecar[cs.Name] {
			sidecarRestarts += int(cs.RestartCount)
			if t := cs.LastTerminationState.Terminated; t != nil && lastSidecarRestart.Before(&t.FinishedAt) {
				lastSidecarRestart = t.FinishedAt
			}
		}
		term := cs.State.Terminated
		switch {
		case term != nil && term.ExitCode == 0:
			continue
		case sidecar[cs.Name] && cs.Started != nil && *cs.Started:
			if cs.Ready {
				s.Ready++
			}
			continue
		case term != nil:
			switch {
			case term.Reason != "":
				reason = "Init:" + term.Reason
			case term.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", term.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", term.ExitCode)
			}
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing || podConditionTrue(pod, corev1.PodInitialized) {
		s.Restarts = sidecarRestarts
		s.LastRestart = lastSidecarRestart
		running := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := pod.Status.ContainerStatuses[i]
			s.Restarts += int(cs.RestartCount)
			if t := cs.LastTerminationState.Terminated; t != nil && s.LastRestart.Before(&t.FinishedAt) {
				s.LastRestart = t.FinishedAt
			}
			switch term := cs.State.Terminated; {
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
				reason = cs.State.Waiting.Reason
			case term != nil && term.Reason != "":
				reason = term.Reason
			case term != nil && term.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", term.Signal)
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", term.ExitCode)
			case cs.Ready && cs.State.Running != nil:
				running = true
				s.Ready++
			}
		}
		// A pod with a finished container and another still running is
		// Running (or NotReady), not Completed.
		if reason == "Completed" && running {
			reason = "NotReady"
			if podConditionTrue(pod, corev1.PodReady) {
				reason = "Running"
			}
		}
	}

	if pod.DeletionTimestamp != nil {
		switch {
		case pod.Status.Reason == "NodeLost":
			reason = "Unknown"
		case pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed:
			reason = "Terminating"
		}
	}
	s.Status = reason
	return s
}

func podConditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
