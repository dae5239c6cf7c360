// Package registry describes every resource the API server serves: its name,
// scope and kind, and the small per-resource strategy (defaulting, validation,
// table columns, selectable fields) that the one generic REST handler in
// package apiserver applies. Adding a resource means adding one Resource here.
package registry

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resource is everything the generic handler needs to serve one resource.
// The handler itself takes care of what is common to all resources: object
// metadata (name, generateName, uid, creationTimestamp, resourceVersion,
// generation bumps on spec changes, namespace existence), optimistic
// concurrency, and keeping status and spec apart between the main resource and
// its status subresource.
type Resource struct {
	// GroupVersionResource is where the resource is served; Group is "" for core/v1.
	schema.GroupVersionResource
	Kind         string // e.g. "Deployment"
	SingularName string // e.g. "deployment"
	Namespaced   bool
	ShortNames   []string // e.g. ["deploy"]
	Categories   []string // e.g. ["all"]

	// New and NewList return empty typed objects (&appsv1.Deployment{} ...).
	New     func() runtime.Object
	NewList func() runtime.Object

	// Status is true when the resource has a /status subresource. Then a write
	// to the main resource keeps the stored status, and a write to /status
	// keeps everything but status (and metadata labels/annotations may change).
	Status bool
	// Scale describes the /scale subresource, nil when there is none.
	Scale *ScaleSpec

	// Default fills unset fields with Kubernetes' defaults. It is called on
	// every create and update (including status updates) before validation.
	Default func(obj runtime.Object)
	// Validate checks obj and returns one error per bad field, worded and with
	// paths as Kubernetes words them. old is nil on create. Metadata (name,
	// labels, annotations) is validated by the handler, not here.
	Validate func(obj, old runtime.Object) field.ErrorList
	// PrepareForCreate, when set, adjusts a new object before defaulting
	// (e.g. a Pod's status.phase becomes Pending, a Namespace gets the
	// kubernetes finalizer). The handler already clears status for resources
	// with a status subresource.
	PrepareForCreate func(obj runtime.Object)
	// PrepareForUpdate, when set, carries over from old what a client may
	// leave out of an update but must not lose (a Service's allocated
	// clusterIP, a Namespace's spec.finalizers). It is called before Default
	// on updates of the main resource; nil means nothing to carry over.
	PrepareForUpdate func(obj, old runtime.Object)

	// Columns are the columns of `kubectl get` for this resource, in
	// Kubernetes' order; those with Priority 1 appear only with -o wide.
	// Row returns the cells of one object, one per column; now is passed in
	// for the AGE column (a duration string such as "5m", as Kubernetes prints).
	Columns []metav1.TableColumnDefinition
	Row     func(obj runtime.Object, now time.Time) []interface{}

	// Fields returns the fields a field selector may match, including
	// metadata.name and metadata.namespace.
	Fields func(obj runtime.Object) fields.Set

	// Storage, when set, keeps this resource's objects as another resource's:
	// both serve the same stored objects, each converting on the way in and
	// out, as Kubernetes keeps events.k8s.io/v1 events as core/v1 events.
	Storage *StorageForm
}

// StorageForm is the resource, and its Go type, that objects are kept as.
type StorageForm struct {
	schema.GroupVersionResource
	Kind string
	New  func() runtime.Object
	// To converts a served object to the stored type, From back; both may
	// share the object's metadata with their input.
	To, From func(runtime.Object) runtime.Object
}

// ScaleSpec says where the scale subresource reads and writes its numbers.
type ScaleSpec struct {
	// Replicas returns spec.replicas, status.replicas and the label selector
	// (as a string, e.g. "app=web") of obj.
	Get func(obj runtime.Object) (specReplicas, statusReplicas int32, selector string)
	// SetReplicas sets spec.replicas of obj.
	SetReplicas func(obj runtime.Object, replicas int32)
}

// GroupVersionKind returns the kind the resource is served as.
func (r *Resource) GroupVersionKind() schema.GroupVersionKind {
	return r.GroupVersion().WithKind(r.Kind)
}
