package openapi

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-org/skiff/pkg/registry"
)

// testResources are a few resources built here, so the tests do not depend
// on the registry's full list.
func testResources() []*registry.Resource {
	res := func(group, version, plural, kind string, namespaced bool, newObj, newList func() runtime.Object) *registry.Resource {
		return &registry.Resource{
			GroupVersionResource: k8sschema.GroupVersionResource{Group: group, Version: version, Resource: plural},
			Kind:                 kind, Namespaced: namespaced, New: newObj, NewList: newList,
		}
	}
	deploy := res("apps", "v1", "deployments", "Deployment", true,
		func() runtime.Object { return &appsv1.Deployment{} }, func() runtime.Object { return &appsv1.DeploymentList{} })
	deploy.Status = true
	deploy.Scale = &registry.ScaleSpec{}
	pods := res("", "v1", "pods", "Pod", true,
		func() runtime.Object { return &corev1.Pod{} }, func() runtime.Object { return &corev1.PodList{} })
	pods.Status = true
	ns := res("", "v1", "namespaces", "Namespace", false,
		func() runtime.Object { return &corev1.Namespace{} }, func() runtime.Object { return &corev1.NamespaceList{} })
	ns.Status = true
	svc := res("", "v1", "services", "Service", true,
		func() runtime.Object { return &corev1.Service{} }, func() runtime.Object { return &corev1.ServiceList{} })
	svc.Status = true
	return []*registry.Resource{
		ns, pods, svc,
		res("", "v1", "configmaps", "ConfigMap", true,
			func() runtime.Object { return &corev1.ConfigMap{} }, func() runtime.Object { return &corev1.ConfigMapList{} }),
		deploy,
	}
}
