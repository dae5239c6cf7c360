package apiserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPartialOf(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "b", Labels: map[string]string{"x": "y"}}}
	p := partialOf(sa)
	if p.Name != "a" || p.Namespace != "b" || p.Labels["x"] != "y" || p.Kind != "PartialObjectMetadata" || p.APIVersion != "meta.k8s.io/v1" {
		t.Errorf("partialOf(%v) = %+v", sa.ObjectMeta, p)
	}
}
