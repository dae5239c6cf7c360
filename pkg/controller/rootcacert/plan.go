// Package rootcacert publishes the cluster CA into every namespace as the
// ConfigMap kube-root-ca.crt, as Kubernetes' root CA certificate publisher
// does. A pod's service-account volume mounts ca.crt from it, so that the
// pod can verify the API server's serving certificate when it talks to
// kubernetes.default.svc; client-go's in-cluster config reads it from there.
package rootcacert

import (
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The published ConfigMap: its name, its one data key and its description.
const (
	ConfigMapName         = "kube-root-ca.crt"
	DataKey               = "ca.crt"
	DescriptionAnnotation = "kubernetes.io/description"
	Description           = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
)

// ConfigMap is the kube-root-ca.crt ConfigMap namespace should hold.
func ConfigMap(namespace string, caPEM []byte) *v1.ConfigMap {
	return &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ConfigMapName,
			Namespace:   namespace,
			Annotations: map[string]string{DescriptionAnnotation: Description},
		},
		Data: map[string]string{DataKey: string(caPEM)},
	}
}

// Plan decides what namespace ns needs, given its current kube-root-ca.crt
// (nil when there is none) and the CA to publish. It returns the ConfigMap
// to write, nil when nothing is to be done; create says whether to create it
// or to update cur. An update keeps the labels and other annotations a user
// added and puts back the data and the description.
func Plan(ns *v1.Namespace, cur *v1.ConfigMap, caPEM []byte) (want *v1.ConfigMap, create bool) {
	if ns.DeletionTimestamp != nil || ns.Status.Phase == v1.NamespaceTerminating {
		return nil, false // creating into a terminating namespace is refused anyway
	}
	if cur == nil {
		return ConfigMap(ns.Name, caPEM), true
	}
	if cur.DeletionTimestamp != nil {
		return nil, false // its delete event brings the namespace back to us
	}
	if upToDate(cur, caPEM) {
		return nil, false
	}
	want = cur.DeepCopy()
	want.Data = map[string]string{DataKey: string(caPEM)}
	want.BinaryData = nil
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	want.Annotations[DescriptionAnnotation] = Description
	return want, false
}

// upToDate reports whether cm holds exactly the CA under DataKey, nothing
// else, and the description.
func upToDate(cm *v1.ConfigMap, caPEM []byte) bool {
	got, ok := cm.Data[DataKey]
	return ok && len(cm.Data) == 1 && len(cm.BinaryData) == 0 &&
		got == string(caPEM) &&
		cm.Annotations[DescriptionAnnotation] == Description
}
