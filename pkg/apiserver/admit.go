package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/skiff-org/skiff/pkg/registry"
)

var priorityClassesGVR = schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}

// admit does what Kubernetes' default admission plugins do to new pods:
// the default ServiceAccount and its token volume, the not-ready/unreachable
// tolerations, and the priority of the pod's PriorityClass.
func (s *Server) admit(ctx context.Context, res *resource, obj, old runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok || old != nil {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	s.mountServiceAccount(ctx, pod)
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

// serviceAccountMountPath is where in-cluster clients (client-go's
// InClusterConfig) find their token, CA and namespace.
const serviceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// mountServiceAccount gives a new pod the kube-api-access-XXXXX volume
// Kubernetes gives it: a token for its service account (asked for by the
// kubelet, bound to the pod), the cluster CA from kube-root-ca.crt and the
// namespace, mounted read-only in every container. The pod or its service
// account can opt out with automountServiceAccountToken: false. Kubernetes
// refuses a pod whose service account does not exist; skiff admits it
// without the volume, since the token could not be issued.
func (s *Server) mountServiceAccount(ctx context.Context, pod *corev1.Pod) {
	if s.cfg.ServiceAccountTokens == nil || pod.Spec.AutomountServiceAccountToken != nil && !*pod.Spec.AutomountServiceAccountToken {
		return
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return
	}
	// The cache first; etcd when the account is too new for the cache.
	saRes := s.lookup(serviceAccountsGVR)
	var obj runtime.Object
	if e, ok := saRes.cache.Get(saRes.key(pod.Namespace, pod.Spec.ServiceAccountName)); ok {
		obj = e.Object
	} else if o, err := s.getObject(ctx, saRes, pod.Namespace, pod.Spec.ServiceAccountName, ""); err == nil {
		obj = o
	} else {
		return
	}
	if sa := obj.(*corev1.ServiceAccount); pod.Spec.AutomountServiceAccountToken == nil && sa.AutomountServiceAccountToken != nil && !*sa.AutomountServiceAccountToken {
		return
	}
	name := "kube-api-access-" + utilrand.String(5)
	mounted := false
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			c := &list[i]
			if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == serviceAccountMountPath }) {
				continue
			}
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: serviceAccountMountPath, ReadOnly: true})
			mounted = true
		}
	}
	if !mounted {
		return
	}
	expiry, mode := int64(3607), int32(0o644)
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &expiry, Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}})
}
