package rootcacert

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestPlan(t *testing.T) {
	now := metav1.Now()
	active := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}, Status: v1.NamespaceStatus{Phase: v1.NamespaceActive}}
	terminating := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}, Status: v1.NamespaceStatus{Phase: v1.NamespaceTerminating}}
	deleted := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", DeletionTimestamp: &now}}
	published := func(mutate func(*v1.ConfigMap)) *v1.ConfigMap {
		cm := ConfigMap("ns", []byte(testCA))
		cm.ResourceVersion = "7"
		if mutate != nil {
			mutate(cm)
		}
		return cm
	}
	// fixed is what an update of a published ConfigMap that mutate spoilt
	// writes: the CA and description back, the rest as it was.
	fixed := func(mutate func(*v1.ConfigMap)) *v1.ConfigMap {
		cm := published(mutate)
		cm.Data = map[string]string{DataKey: testCA}
		cm.BinaryData = nil
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[DescriptionAnnotation] = Description
		return cm
	}
	editData := func(cm *v1.ConfigMap) { cm.Data[DataKey] = "not a CA" }
	extraKey := func(cm *v1.ConfigMap) { cm.Data["extra"] = "x" }
	noData := func(cm *v1.ConfigMap) { cm.Data = nil }
	binary := func(cm *v1.ConfigMap) { cm.BinaryData = map[string][]byte{"blob": {1}} }
	noAnnotations := func(cm *v1.ConfigMap) { cm.Annotations = nil }
	otherDescription := func(cm *v1.ConfigMap) {
		cm.Annotations[DescriptionAnnotation] = "mine"
		cm.Annotations["team"] = "a"
		cm.Labels = map[string]string{"app": "x"}
	}
	userLabels := func(cm *v1.ConfigMap) {
		cm.Labels = map[string]string{"app": "x"}
		cm.Annotations["team"] = "a"
	}
	beingDeleted := func(cm *v1.ConfigMap) {
		cm.DeletionTimestamp = &now
		editData(cm)
	}

	tests := []struct {
		name       string
		ns         *v1.Namespace
		cur        *v1.ConfigMap
		want       *v1.ConfigMap
		wantCreate bool
	}{
		{"missing", active, nil, ConfigMap("ns", []byte(testCA)), true},
		{"up to date", active, published(nil), nil, false},
		{"user labels and annotations are left alone", active, published(userLabels), nil, false},
		{"data edited", active, published(editData), fixed(editData), false},
		{"extra key", active, published(extraKey), fixed(extraKey), false},
		{"data removed", active, published(noData), fixed(noData), false},
		{"binary data added", active, published(binary), fixed(binary), false},
		{"annotations removed", active, published(noAnnotations), fixed(noAnnotations), false},
		{"description changed", active, published(otherDescription), fixed(otherDescription), false},
		{"configmap being deleted", active, published(beingDeleted), nil, false},
		{"namespace terminating, missing", terminating, nil, nil, false},
		{"namespace terminating, data edited", terminating, published(editData), nil, false},
		{"namespace deleted, missing", deleted, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before *v1.ConfigMap
			if tt.cur != nil {
				before = tt.cur.DeepCopy()
			}
			got, create := Plan(tt.ns, tt.cur, []byte(testCA))
			if !reflect.DeepEqual(got, tt.want) || create != tt.wantCreate {
				t.Errorf("Plan() = %+v, %v, want %+v, %v", got, create, tt.want, tt.wantCreate)
			}
			if !reflect.DeepEqual(tt.cur, before) {
				t.Errorf("Plan() changed its input to %+v", tt.cur)
			}
		})
	}
}

func TestHandlerFilter(t *testing.T) {
	cm := func(name string) *v1.ConfigMap {
		return &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	}
	tests := []struct {
		obj  any
		want bool
	}{
		{cm(ConfigMapName), true},
		{cm("other"), false},
		{cache.DeletedFinalStateUnknown{Key: "ns/" + ConfigMapName, Obj: cm(ConfigMapName)}, true},
		{cache.DeletedFinalStateUnknown{Key: "ns/other", Obj: cm("other")}, false},
		{&v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: ConfigMapName}}, false},
	}
	for _, tt := range tests {
		if got := isPublished(tt.obj); got != tt.want {
			t.Errorf("isPublished(%T %v) = %v, want %v", tt.obj, tt.obj, got, tt.want)
		}
	}
}
