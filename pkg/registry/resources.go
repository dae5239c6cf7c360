package registry

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// all is built once: the Resources are read-only after construction.
var all = buildAll()

// All returns every served resource, core group first. Callers must not
// modify the returned Resources.
func All() []*Resource { return all }

// Lookup returns the served resource with the given group and plural name
// (e.g. "apps", "deployments"), or nil.
func Lookup(group, resource string) *Resource {
	for _, r := range all {
		if r.Group == group && r.Resource == resource {
			return r
		}
	}
	return nil
}

func gvr(group, version, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
}

func buildAll() []*Resource {
	return []*Resource{
		namespaces(),
		pods(),
		services(),
		endpoints(),
		replicationControllers(),
		nodes(),
		coreEvents(),
		configMaps(),
		secrets(),
		serviceAccounts(),
		deployments(),
		replicaSets(),
		jobs(),
		leases(),
		endpointSlices(),
		eventsV1(),
		priorityClasses(),
	}
}

// typed adapts a function over one concrete type to the runtime.Object
// signature of Resource; other types are ignored.
func typed[T runtime.Object](f func(T)) func(runtime.Object) {
	return func(obj runtime.Object) {
		if t, ok := obj.(T); ok {
			f(t)
		}
	}
}

func namespaces() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "namespaces"),
		Kind:                 "Namespace", SingularName: "namespace",
		ShortNames:       []string{"ns"},
		New:              func() runtime.Object { return &corev1.Namespace{} },
		NewList:          func() runtime.Object { return &corev1.NamespaceList{} },
		Status:           true,
		Default:          typed(DefaultNamespace),
		Validate:         validateNamespaceObj,
		PrepareForCreate: typed(prepareNamespace),
		PrepareForUpdate: prepareNamespaceUpdate,
		Columns:          namespaceColumns,
		Row:              namespaceRow,
		Fields:           namespaceFields,
	}
}

func pods() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "pods"),
		Kind:                 "Pod", SingularName: "pod", Namespaced: true,
		ShortNames:       []string{"po"},
		Categories:       []string{"all"},
		New:              func() runtime.Object { return &corev1.Pod{} },
		NewList:          func() runtime.Object { return &corev1.PodList{} },
		Status:           true,
		Default:          typed(DefaultPod),
		Validate:         validatePodObj,
		PrepareForCreate: typed(preparePod),
		Columns:          podColumns,
		Row:              podRow,
		Fields:           podFields,
	}
}

func services() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "services"),
		Kind:                 "Service", SingularName: "service", Namespaced: true,
		ShortNames:       []string{"svc"},
		Categories:       []string{"all"},
		New:              func() runtime.Object { return &corev1.Service{} },
		NewList:          func() runtime.Object { return &corev1.ServiceList{} },
		Status:           true,
		Default:          typed(DefaultService),
		Validate:         validateServiceObj,
		PrepareForCreate: typed(prepareService),
		PrepareForUpdate: prepareServiceUpdate,
		Columns:          serviceColumns,
		Row:              serviceRow,
		Fields:           serviceFields,
	}
}

func endpoints() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "endpoints"),
		Kind:                 "Endpoints", SingularName: "endpoints", Namespaced: true,
		ShortNames: []string{"ep"},
		New:        func() runtime.Object { return &corev1.Endpoints{} },
		NewList:    func() runtime.Object { return &corev1.EndpointsList{} },
		Default:    typed(DefaultEndpoints),
		Validate:   validateEndpointsObj,
		Columns:    endpointsColumns,
		Row:        endpointsRow,
		Fields:     namespacedMetaFields,
	}
}

func replicationControllers() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "replicationcontrollers"),
		Kind:                 "ReplicationController", SingularName: "replicationcontroller", Namespaced: true,
		ShortNames: []string{"rc"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &corev1.ReplicationController{} },
		NewList:    func() runtime.Object { return &corev1.ReplicationControllerList{} },
		Status:     true,
		Scale:      rcScale,
		Default:    typed(DefaultReplicationController),
		Validate:   validateRCObj,
		Columns:    rcColumns,
		Row:        rcRow,
		Fields:     rcFields,
	}
}

func nodes() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "nodes"),
		Kind:                 "Node", SingularName: "node",
		ShortNames: []string{"no"},
		New:        func() runtime.Object { return &corev1.Node{} },
		NewList:    func() runtime.Object { return &corev1.NodeList{} },
		Status:     true,
		Default:    typed(DefaultNode),
		Validate:   validateNodeObj,
		Columns:    nodeColumns,
		Row:        nodeRow,
		Fields:     nodeFields,
	}
}

func coreEvents() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "events"),
		Kind:                 "Event", SingularName: "event", Namespaced: true,
		ShortNames: []string{"ev"},
		New:        func() runtime.Object { return &corev1.Event{} },
		NewList:    func() runtime.Object { return &corev1.EventList{} },
		Default:    typed(DefaultEvent),
		Validate:   validateCoreEventObj,
		Columns:    eventColumns,
		Row:        coreEventRow,
		Fields:     coreEventFields,
	}
}

func configMaps() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "configmaps"),
		Kind:                 "ConfigMap", SingularName: "configmap", Namespaced: true,
		ShortNames: []string{"cm"},
		New:        func() runtime.Object { return &corev1.ConfigMap{} },
		NewList:    func() runtime.Object { return &corev1.ConfigMapList{} },
		Default:    func(runtime.Object) {},
		Validate:   validateConfigMapObj,
		Columns:    configMapColumns,
		Row:        configMapRow,
		Fields:     namespacedMetaFields,
	}
}

func secrets() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "secrets"),
		Kind:                 "Secret", SingularName: "secret", Namespaced: true,
		New:      func() runtime.Object { return &corev1.Secret{} },
		NewList:  func() runtime.Object { return &corev1.SecretList{} },
		Default:  typed(DefaultSecret),
		Validate: validateSecretObj,
		Columns:  secretColumns,
		Row:      secretRow,
		Fields:   secretFields,
	}
}

func serviceAccounts() *Resource {
	return &Resource{
		GroupVersionResource: gvr("", "v1", "serviceaccounts"),
		Kind:                 "ServiceAccount", SingularName: "serviceaccount", Namespaced: true,
		ShortNames: []string{"sa"},
		New:        func() runtime.Object { return &corev1.ServiceAccount{} },
		NewList:    func() runtime.Object { return &corev1.ServiceAccountList{} },
		Default:    func(runtime.Object) {},
		Validate:   validateServiceAccountObj,
		Columns:    serviceAccountColumns,
		Row:        serviceAccountRow,
		Fields:     namespacedMetaFields,
	}
}

func deployments() *Resource {
	return &Resource{
		GroupVersionResource: gvr("apps", "v1", "deployments"),
		Kind:                 "Deployment", SingularName: "deployment", Namespaced: true,
		ShortNames: []string{"deploy"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &appsv1.Deployment{} },
		NewList:    func() runtime.Object { return &appsv1.DeploymentList{} },
		Status:     true,
		Scale:      deploymentScale,
		Default:    typed(DefaultDeployment),
		Validate:   validateDeploymentObj,
		Columns:    deploymentColumns,
		Row:        deploymentRow,
		Fields:     namespacedMetaFields,
	}
}

func replicaSets() *Resource {
	return &Resource{
		GroupVersionResource: gvr("apps", "v1", "replicasets"),
		Kind:                 "ReplicaSet", SingularName: "replicaset", Namespaced: true,
		ShortNames: []string{"rs"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList:    func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Status:     true,
		Scale:      replicaSetScale,
		Default:    typed(DefaultReplicaSet),
		Validate:   validateReplicaSetObj,
		Columns:    replicaSetColumns,
		Row:        replicaSetRow,
		Fields:     replicaSetFields,
	}
}

func jobs() *Resource {
	return &Resource{
		GroupVersionResource: gvr("batch", "v1", "jobs"),
		Kind:                 "Job", SingularName: "job", Namespaced: true,
		Categories:       []string{"all"},
		New:              func() runtime.Object { return &batchv1.Job{} },
		NewList:          func() runtime.Object { return &batchv1.JobList{} },
		Status:           true,
		Default:          typed(DefaultJob),
		Validate:         validateJobObj,
		PrepareForCreate: typed(prepareJob),
		Columns:          jobColumns,
		Row:              jobRow,
		Fields:           jobFields,
	}
}

func leases() *Resource {
	return &Resource{
		GroupVersionResource: gvr("coordination.k8s.io", "v1", "leases"),
		Kind:                 "Lease", SingularName: "lease", Namespaced: true,
		New:      func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:  func() runtime.Object { return &coordinationv1.LeaseList{} },
		Default:  func(runtime.Object) {},
		Validate: validateLeaseObj,
		Columns:  leaseColumns,
		Row:      leaseRow,
		Fields:   namespacedMetaFields,
	}
}

func endpointSlices() *Resource {
	return &Resource{
		GroupVersionResource: gvr("discovery.k8s.io", "v1", "endpointslices"),
		Kind:                 "EndpointSlice", SingularName: "endpointslice", Namespaced: true,
		New:      func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:  func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Default:  typed(DefaultEndpointSlice),
		Validate: validateEndpointSliceObj,
		Columns:  endpointSliceColumns,
		Row:      endpointSliceRow,
		Fields:   namespacedMetaFields,
	}
}

func eventsV1() *Resource {
	return &Resource{
		GroupVersionResource: gvr("events.k8s.io", "v1", "events"),
		Kind:                 "Event", SingularName: "event", Namespaced: true,
		ShortNames: []string{"ev"},
		New:        func() runtime.Object { return &eventsv1.Event{} },
		NewList:    func() runtime.Object { return &eventsv1.EventList{} },
		Default:    func(runtime.Object) {},
		Validate:   validateEventsV1Obj,
		Columns:    eventColumns,
		Row:        eventsV1Row,
		Fields:     eventsV1Fields,
		Storage: &StorageForm{
			GroupVersionResource: gvr("", "v1", "events"), Kind: "Event",
			New:  func() runtime.Object { return &corev1.Event{} },
			To:   func(obj runtime.Object) runtime.Object { return coreEventFromV1(obj.(*eventsv1.Event)) },
			From: func(obj runtime.Object) runtime.Object { return eventV1FromCore(obj.(*corev1.Event)) },
		},
	}
}

func priorityClasses() *Resource {
	return &Resource{
		GroupVersionResource: gvr("scheduling.k8s.io", "v1", "priorityclasses"),
		Kind:                 "PriorityClass", SingularName: "priorityclass",
		ShortNames: []string{"pc"},
		New:        func() runtime.Object { return &schedulingv1.PriorityClass{} },
		NewList:    func() runtime.Object { return &schedulingv1.PriorityClassList{} },
		Default:    typed(DefaultPriorityClass),
		Validate:   validatePriorityClassObj,
		Columns:    priorityClassColumns,
		Row:        priorityClassRow,
		Fields:     clusterMetaFields,
	}
}
