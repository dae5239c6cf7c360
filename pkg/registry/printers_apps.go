package registry

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var deploymentColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Ready", "string", "Number of the pod with ready state"),
	column("Up-to-date", "string", appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"]),
	column("Available", "string", appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"]),
	ageColumn,
	wideColumn("Containers", "string", "Names of each container in the template."),
	wideColumn("Images", "string", "Images referenced by each container in the template."),
	wideColumn("Selector", "string", appsv1.DeploymentSpec{}.SwaggerDoc()["selector"]),
}

func deploymentRow(obj runtime.Object, now time.Time) []interface{} {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return nil
	}
	names, images := containersAndImages(d.Spec.Template.Spec.Containers)
	return []interface{}{
		d.Name,
		fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicasOr1(d.Spec.Replicas)),
		int64(d.Status.UpdatedReplicas),
		int64(d.Status.AvailableReplicas),
		age(d.CreationTimestamp, now),
		names, images, selectorString(d.Spec.Selector),
	}
}

// selectorString prints a label selector as kubectl does ("app=web",
// "<none>" for an empty one, "<error>" for one that cannot be parsed).
func selectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return "<error>"
	}
	if str := s.String(); str != "" {
		return str
	}
	return none
}

var replicaSetColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Desired", "integer", appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"]),
	column("Current", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"]),
	column("Ready", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"]),
	ageColumn,
	wideColumn("Containers", "string", "Names of each container in the template."),
	wideColumn("Images", "string", "Images referenced by each container in the template."),
	wideColumn("Selector", "string", appsv1.ReplicaSetSpec{}.SwaggerDoc()["selector"]),
}

func replicaSetRow(obj runtime.Object, now time.Time) []interface{} {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return nil
	}
	names, images := containersAndImages(rs.Spec.Template.Spec.Containers)
	return []interface{}{
		rs.Name, int64(replicasOr1(rs.Spec.Replicas)), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas),
		age(rs.CreationTimestamp, now), names, images, selectorString(rs.Spec.Selector),
	}
}
