package replicaset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// owner is the part of a ReplicaSet or ReplicationController the controller
// works on; both kinds convert to it, so one loop serves both.
type owner struct {
	obj      runtime.Object
	meta     *metav1.ObjectMeta
	replicas int32
	selector labels.Selector // nil when empty: matches nothing
	template *v1.PodTemplateSpec
	minReady int32
	status   appsv1.ReplicaSetStatus
}

// kind adapts one API kind to the controller.
type kind struct {
	name         string // for logs and the queue
	component    string // event source
	gvk          schema.GroupVersionKind
	informer     cache.SharedIndexInformer
	get          func(ns, name string) (*owner, error)
	list         func(ns string) ([]*owner, error)
	fetch        func(ctx context.Context, ns, name string) (*owner, error) // uncached
	updateStatus func(ctx context.Context, o *owner, st appsv1.ReplicaSetStatus) error
}

func replicaSetKind(client kubernetes.Interface, f informers.SharedInformerFactory) *kind {
	inf := f.Apps().V1().ReplicaSets()
	lister := inf.Lister()
	return &kind{
		name:      "replicaset",
		component: "replicaset-controller",
		gvk:       appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		informer:  inf.Informer(),
		get: func(ns, name string) (*owner, error) {
			rs, err := lister.ReplicaSets(ns).Get(name)
			if err != nil {
				return nil, err
			}
			return fromReplicaSet(rs), nil
		},
		list: func(ns string) ([]*owner, error) {
			rss, err := lister.ReplicaSets(ns).List(labels.Everything())
			out := make([]*owner, 0, len(rss))
			for _, rs := range rss {
				out = append(out, fromReplicaSet(rs))
			}
			return out, err
		},
		fetch: func(ctx context.Context, ns, name string) (*owner, error) {
			rs, err := client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return fromReplicaSet(rs), nil
		},
		updateStatus: func(ctx context.Context, o *owner, st appsv1.ReplicaSetStatus) error {
			rs := o.obj.(*appsv1.ReplicaSet).DeepCopy()
			rs.Status = st
			_, err := client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
			return err
		},
	}
}

func fromReplicaSet(rs *appsv1.ReplicaSet) *owner {
	o := &owner{obj: rs, meta: &rs.ObjectMeta, replicas: 1, template: &rs.Spec.Template,
		minReady: rs.Spec.MinReadySeconds, status: rs.Status}
	if rs.Spec.Replicas != nil {
		o.replicas = *rs.Spec.Replicas
	}
	if sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector); err == nil && !sel.Empty() {
		o.selector = sel
	}
	return o
}

func replicationControllerKind(client kubernetes.Interface, f informers.SharedInformerFactory) *kind {
	inf := f.Core().V1().ReplicationControllers()
	lister := inf.Lister()
	return &kind{
		name:      "replicationcontroller",
		component: "replication-controller",
		gvk:       v1.SchemeGroupVersion.WithKind("ReplicationController"),
		informer:  inf.Informer(),
		get: func(ns, name string) (*owner, error) {
			rc, err := lister.ReplicationControllers(ns).Get(name)
			if err != nil {
				return nil, err
			}
			return fromRC(rc), nil
		},
		list: func(ns string) ([]*owner, error) {
			rcs, err := lister.ReplicationControllers(ns).List(labels.Everything())
			out := make([]*owner, 0, len(rcs))
			for _, rc := range rcs {
				out = append(out, fromRC(rc))
			}
			return out, err
		},
		fetch: func(ctx context.Context, ns, name string) (*owner, error) {
			rc, err := client.CoreV1().ReplicationControllers(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return fromRC(rc), nil
		},
		updateStatus: func(ctx context.Context, o *owner, st appsv1.ReplicaSetStatus) error {
			rc := o.obj.(*v1.ReplicationController).DeepCopy()
			rc.Status = toRCStatus(st)
			_, err := client.CoreV1().ReplicationControllers(rc.Namespace).UpdateStatus(ctx, rc, metav1.UpdateOptions{})
			return err
		},
	}
}

func fromRC(rc *v1.ReplicationController) *owner {
	o := &owner{obj: rc, meta: &rc.ObjectMeta, replicas: 1, template: rc.Spec.Template,
		minReady: rc.Spec.MinReadySeconds, status: fromRCStatus(rc.Status)}
	if rc.Spec.Replicas != nil {
		o.replicas = *rc.Spec.Replicas
	}
	if len(rc.Spec.Selector) > 0 {
		o.selector = labels.SelectorFromSet(rc.Spec.Selector)
	}
	if o.template == nil {
		o.template = &v1.PodTemplateSpec{}
	}
	return o
}

func fromRCStatus(s v1.ReplicationControllerStatus) appsv1.ReplicaSetStatus {
	out := appsv1.ReplicaSetStatus{Replicas: s.Replicas, FullyLabeledReplicas: s.FullyLabeledReplicas,
		ReadyReplicas: s.ReadyReplicas, AvailableReplicas: s.AvailableReplicas, ObservedGeneration: s.ObservedGeneration}
	for _, c := range s.Conditions {
		out.Conditions = append(out.Conditions, appsv1.ReplicaSetCondition{Type: appsv1.ReplicaSetConditionType(c.Type),
			Status: c.Status, LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message})
	}
	return out
}

func toRCStatus(s appsv1.ReplicaSetStatus) v1.ReplicationControllerStatus {
	out := v1.ReplicationControllerStatus{Replicas: s.Replicas, FullyLabeledReplicas: s.FullyLabeledReplicas,
		ReadyReplicas: s.ReadyReplicas, AvailableReplicas: s.AvailableReplicas, ObservedGeneration: s.ObservedGeneration}
	for _, c := range s.Conditions {
		out.Conditions = append(out.Conditions, v1.ReplicationControllerCondition{Type: v1.ReplicationControllerConditionType(c.Type),
			Status: c.Status, LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message})
	}
	return out
}

// statusEqual compares statuses semantically (time precision differs
// between the cache and fresh values).
func statusEqual(a, b appsv1.ReplicaSetStatus) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}
