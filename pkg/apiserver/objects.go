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
	stored, newStored := gvk, r.New
	if st := r.Storage; st != nil {
		stored, newStored = st.GroupVersion().WithKind(st.Kind), st.New
	}
	return func(data []byte, rev int64) (runtime.Object, error) {
		out, _, err := protoSerializer.Decode(data, &stored, newStored())
		if err != nil {
			return nil, err
		}
		if r.Storage != nil {
			out = r.Storage.From(out)
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
	defer m.SetResourceVersion(rv)
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersionKind())
	if st := r.Storage; st != nil {
		// The converted object shares obj's metadata, so it has no
		// resourceVersion either.
		obj = st.To(obj)
		obj.GetObjectKind().SetGroupVersionKind(st.GroupVersion().WithKind(st.Kind))
	}
	var buf bytes.Buffer
	err = protoSerializer.Encode(obj, &buf)
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
// which decides whether metadata.generation moves. It compares the other
// top-level fields in place: copying whole objects to blank their metadata
// cost as much as the rest of a pod update.
func specEqual(a, b runtime.Object) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	if va.Type() != vb.Type() {
		return false
	}
	t := va.Type()
	for i := range t.NumField() {
		switch t.Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		if !apiequality.Semantic.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return false
		}
	}
	return true
}

// sameObject reports whether storing next over cur would change nothing
// worth storing (managedFields timestamps aside). next must be the caller's
// own copy: its managedFields and resourceVersion are swapped for cur's
// during the comparison and put back, so that neither object is copied.
func sameObject(next, cur runtime.Object) bool {
	nm, cm := mustMeta(next), mustMeta(cur)
	mf, rv := nm.GetManagedFields(), nm.GetResourceVersion()
	nm.SetManagedFields(cm.GetManagedFields())
	nm.SetResourceVersion(cm.GetResourceVersion())
	same := apiequality.Semantic.DeepEqual(next, cur)
	nm.SetManagedFields(mf)
	nm.SetResourceVersion(rv)
	return same
}
