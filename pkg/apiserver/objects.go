package apiserver

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-org/skiff/pkg/watchcache"
)

// Objects are kept in etcd as Kubernetes' protobuf encoding: compact and
// several times faster to decode than JSON.

func decoderOf(r *resource) watchcache.Decoder {
	gvk := r.GroupVersionKind()
	return func(data []byte, rev int64) (runtime.Object, error) {
		obj := r.New()
		out, _, err := protoSerializer.Decode(data, &gvk, obj)
		if err != nil {
			return nil, err
		}
		out.GetObjectKind().SetGroupVersionKind(gvk)
		m, err := meta.Accessor(out)
		if err != nil {
			return nil, err
		}
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
		return out, nil
	}
}

// encodeForStorage encodes obj without its resourceVersion, which etcd's
// revision supplies.
func encodeForStorage(r *resource, obj runtime.Object) ([]byte, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersionKind())
	var buf bytes.Buffer
	err = protoSerializer.Encode(obj, &buf)
	m.SetResourceVersion(rv)
	return buf.Bytes(), err
}

func setRV(obj runtime.Object, rev int64) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
}

func mustMeta(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(fmt.Sprintf("apiserver: %T has no object metadata", obj))
	}
	return m
}

// statusField returns the addressable Status field of a typed object, if any.
func statusField(obj runtime.Object) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("Status")
	return f, f.IsValid() && f.CanSet()
}

// copyStatus sets dst's status to src's.
func copyStatus(dst, src runtime.Object) {
	d, ok1 := statusField(dst)
	s, ok2 := statusField(src)
	if ok1 && ok2 {
		d.Set(s)
	}
}

// clearStatus resets obj's status to its zero value.
func clearStatus(obj runtime.Object) {
	if f, ok := statusField(obj); ok {
		f.Set(reflect.Zero(f.Type()))
	}
}

// specEqual reports whether a and b differ only in metadata and status,
// which decides whether metadata.generation moves.
func specEqual(a, b runtime.Object) bool {
	a, b = a.DeepCopyObject(), b.DeepCopyObject()
	for _, o := range []runtime.Object{a, b} {
		clearStatus(o)
		v := reflect.ValueOf(o).Elem()
		if f := v.FieldByName("ObjectMeta"); f.IsValid() {
			f.Set(reflect.Zero(f.Type()))
		}
		if f := v.FieldByName("TypeMeta"); f.IsValid() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return apiequality.Semantic.DeepEqual(a, b)
}

// sameObject reports whether an update would change nothing worth storing
// (managedFields timestamps aside).
func sameObject(a, b runtime.Object) bool {
	a, b = a.DeepCopyObject(), b.DeepCopyObject()
	for _, o := range []runtime.Object{a, b} {
		m := mustMeta(o)
		m.SetManagedFields(nil)
		m.SetResourceVersion("")
	}
	return apiequality.Semantic.DeepEqual(a, b)
}
