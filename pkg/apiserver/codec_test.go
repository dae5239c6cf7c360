package apiserver

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDecodeDeleteOptions(t *testing.T) {
	for _, body := range []string{
		`{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/v1","propagationPolicy":"Foreground"}`,
		`{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground"}`,
		`{"propagationPolicy":"Foreground"}`,
		"kind: DeleteOptions\napiVersion: v1\npropagationPolicy: Foreground\n",
	} {
		o := &metav1.DeleteOptions{}
		ct := mediaJSON
		if body[0] != '{' {
			ct = mediaYAML
		}
		err := decodePlain([]byte(body), ct, metav1.SchemeGroupVersion.WithKind("DeleteOptions"), o)
		if err != nil || o.PropagationPolicy == nil || *o.PropagationPolicy != metav1.DeletePropagationForeground {
			t.Errorf("decodePlain(%s) = %v, %v; want Foreground", body, o.PropagationPolicy, err)
		}
	}
}
