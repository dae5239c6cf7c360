package registry

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Scale's status.selector is the selector in label-query form, as
// `kubectl scale` and autoscalers read it.
func labelSelectorQuery(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	return s.String()
}

var deploymentScale = &ScaleSpec{
	Get: func(obj runtime.Object) (int32, int32, string) {
		d, ok := obj.(*appsv1.Deployment)
		if !ok {
			return 0, 0, ""
		}
		return replicasOr1(d.Spec.Replicas), d.Status.Replicas, labelSelectorQuery(d.Spec.Selector)
	},
	SetReplicas: func(obj runtime.Object, n int32) {
		if d, ok := obj.(*appsv1.Deployment); ok {
			d.Spec.Replicas = &n
		}
	},
}

var replicaSetScale = &ScaleSpec{
	Get: func(obj runtime.Object) (int32, int32, string) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return 0, 0, ""
		}
		return replicasOr1(rs.Spec.Replicas), rs.Status.Replicas, labelSelectorQuery(rs.Spec.Selector)
	},
	SetReplicas: func(obj runtime.Object, n int32) {
		if rs, ok := obj.(*appsv1.ReplicaSet); ok {
			rs.Spec.Replicas = &n
		}
	},
}

var rcScale = &ScaleSpec{
	Get: func(obj runtime.Object) (int32, int32, string) {
		rc, ok := obj.(*corev1.ReplicationController)
		if !ok {
			return 0, 0, ""
		}
		return replicasOr1(rc.Spec.Replicas), rc.Status.Replicas, labels.SelectorFromSet(rc.Spec.Selector).String()
	},
	SetReplicas: func(obj runtime.Object, n int32) {
		if rc, ok := obj.(*corev1.ReplicationController); ok {
			rc.Spec.Replicas = &n
		}
	},
}
