package apiserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestSpecEqualAndSameObject(t *testing.T) {
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", ResourceVersion: "5", Labels: map[string]string{"a": "1"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}}
	tests := []struct {
		name            string
		cur             runtime.Object
		change          func(runtime.Object)
		specEqual, same bool
	}{
		{"nothing", base, func(runtime.Object) {}, true, true},
		{"resourceVersion and managedFields only", base, func(o runtime.Object) {
			p := o.(*corev1.Pod)
			p.ResourceVersion = "9"
			p.ManagedFields = nil
		}, true, true},
		{"label", base, func(o runtime.Object) { o.(*corev1.Pod).Labels["a"] = "2" }, true, false},
		{"status", base, func(o runtime.Object) { o.(*corev1.Pod).Status.Phase = corev1.PodRunning }, true, false},
		{"spec", base, func(o runtime.Object) { o.(*corev1.Pod).Spec.NodeName = "n1" }, false, false},
		{"empty and nil are the same", base, func(o runtime.Object) { o.(*corev1.Pod).Spec.Volumes = []corev1.Volume{} }, true, true},
		{"configmap data is its spec", cm, func(o runtime.Object) { o.(*corev1.ConfigMap).Data["k"] = "w" }, false, false},
		{"configmap label", cm, func(o runtime.Object) { o.(*corev1.ConfigMap).Labels = map[string]string{"x": "y"} }, true, false},
	}
	for _, tt := range tests {
		next := tt.cur.DeepCopyObject()
		tt.change(next)
		before := next.DeepCopyObject()
		if got := specEqual(next, tt.cur); got != tt.specEqual {
			t.Errorf("%s: specEqual = %v, want %v", tt.name, got, tt.specEqual)
		}
		if got := sameObject(next, tt.cur); got != tt.same {
			t.Errorf("%s: sameObject = %v, want %v", tt.name, got, tt.same)
		}
		m := mustMeta(next)
		if bm := mustMeta(before); m.GetResourceVersion() != bm.GetResourceVersion() || len(m.GetManagedFields()) != len(bm.GetManagedFields()) {
			t.Errorf("%s: sameObject did not restore resourceVersion/managedFields", tt.name)
		}
	}
}
