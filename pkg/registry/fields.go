package registry

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

// metaFields is what every object offers to field selectors: its name and,
// for namespaced objects, its namespace (Kubernetes offers no
// metadata.namespace on cluster-scoped resources).
func metaFields(obj runtime.Object, namespaced bool) fields.Set {
	m, err := meta.Accessor(obj)
	if err != nil {
		return fields.Set{}
	}
	s := fields.Set{"metadata.name": m.GetName()}
	if namespaced {
		s["metadata.namespace"] = m.GetNamespace()
	}
	return s
}

// namespacedMetaFields and clusterMetaFields serve resources whose only
// selectable fields are their metadata.
func namespacedMetaFields(obj runtime.Object) fields.Set { return metaFields(obj, true) }

func clusterMetaFields(obj runtime.Object) fields.Set { return metaFields(obj, false) }

func podFields(obj runtime.Object) fields.Set {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return metaFields(obj, true)
	}
	s := metaFields(obj, true)
	s["spec.nodeName"] = pod.Spec.NodeName
	s["spec.restartPolicy"] = string(pod.Spec.RestartPolicy)
	s["spec.schedulerName"] = pod.Spec.SchedulerName
	s["spec.serviceAccountName"] = pod.Spec.ServiceAccountName
	s["spec.hostNetwork"] = strconv.FormatBool(pod.Spec.HostNetwork)
	s["status.phase"] = string(pod.Status.Phase)
	s["status.podIP"] = podIP(pod)
	s["status.nominatedNodeName"] = pod.Status.NominatedNodeName
	return s
}

func nodeFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, false)
	if n, ok := obj.(*corev1.Node); ok {
		s["spec.unschedulable"] = strconv.FormatBool(n.Spec.Unschedulable)
	}
	return s
}

func namespaceFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, false)
	if ns, ok := obj.(*corev1.Namespace); ok {
		s["status.phase"] = string(ns.Status.Phase)
	}
	return s
}

func secretFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, true)
	if sec, ok := obj.(*corev1.Secret); ok {
		s["type"] = string(sec.Type)
	}
	return s
}

func serviceFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, true)
	if svc, ok := obj.(*corev1.Service); ok {
		s["spec.clusterIP"] = svc.Spec.ClusterIP
		s["spec.type"] = string(svc.Spec.Type)
	}
	return s
}

func replicaSetFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, true)
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		s["status.replicas"] = strconv.Itoa(int(rs.Status.Replicas))
	}
	return s
}

func jobFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, true)
	if job, ok := obj.(*batchv1.Job); ok {
		s["status.successful"] = strconv.Itoa(int(job.Status.Succeeded))
	}
	return s
}

func rcFields(obj runtime.Object) fields.Set {
	s := metaFields(obj, true)
	if rc, ok := obj.(*corev1.ReplicationController); ok {
		s["status.replicas"] = strconv.Itoa(int(rc.Status.Replicas))
	}
	return s
}

func coreEventFields(obj runtime.Object) fields.Set {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return metaFields(obj, true)
	}
	return eventFieldSet(ev)
}

// eventsV1Fields offers the core/v1 field names, which Kubernetes accepts for
// both event groups since they share one storage.
func eventsV1Fields(obj runtime.Object) fields.Set {
	ev, ok := obj.(*eventsv1.Event)
	if !ok {
		return metaFields(obj, true)
	}
	return eventFieldSet(coreEventFromV1(ev))
}

func eventFieldSet(ev *corev1.Event) fields.Set {
	s := metaFields(ev, true)
	s["involvedObject.kind"] = ev.InvolvedObject.Kind
	s["involvedObject.namespace"] = ev.InvolvedObject.Namespace
	s["involvedObject.name"] = ev.InvolvedObject.Name
	s["involvedObject.uid"] = string(ev.InvolvedObject.UID)
	s["involvedObject.apiVersion"] = ev.InvolvedObject.APIVersion
	s["involvedObject.resourceVersion"] = ev.InvolvedObject.ResourceVersion
	s["involvedObject.fieldPath"] = ev.InvolvedObject.FieldPath
	s["reason"] = ev.Reason
	s["reportingComponent"] = ev.ReportingController
	s["source"] = firstNonEmpty(ev.Source.Component, ev.ReportingController)
	s["type"] = ev.Type
	return s
}
