package apiserver

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-org/skiff/pkg/registry"
)

var priorityClassesGVR = schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}

// admit does what Kubernetes' default admission plugins do to new pods:
// the default ServiceAccount, the not-ready/unreachable tolerations, and the
// priority of the pod's PriorityClass.
func (s *Server) admit(ctx context.Context, res *resource, obj, old runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok || old != nil {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	registry.AddDefaultTolerations(pod, s.cfg.DefaultTolerationSeconds)
	pcRes := s.lookup(priorityClassesGVR)
	if pcRes == nil {
		return nil
	}
	if name := pod.Spec.PriorityClassName; name != "" {
		e, ok := pcRes.cache.Get(pcRes.key("", name))
		if !ok {
			return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
				Message: fmt.Sprintf("pods %q is forbidden: no PriorityClass with name %s was found", pod.Name, name)}}
		}
		pc := e.Object.(*schedulingv1.PriorityClass)
		setPriority(pod, pc)
		return nil
	}
	entries, _, err := pcRes.cache.List(ctx, pcRes.prefix, 0, nil)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if pc := e.Object.(*schedulingv1.PriorityClass); pc.GlobalDefault {
			pod.Spec.PriorityClassName = pc.Name
			setPriority(pod, pc)
			return nil
		}
	}
	if pod.Spec.Priority == nil {
		zero := int32(0)
		pod.Spec.Priority = &zero
	}
	return nil
}

func setPriority(pod *corev1.Pod, pc *schedulingv1.PriorityClass) {
	v := pc.Value
	pod.Spec.Priority = &v
	if pc.PreemptionPolicy != nil {
		p := *pc.PreemptionPolicy
		pod.Spec.PreemptionPolicy = &p
	}
}
