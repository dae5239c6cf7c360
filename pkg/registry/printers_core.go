package registry

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

var namespaceColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Status", "string", "The status of the namespace"),
	ageColumn,
}

func namespaceRow(obj runtime.Object, now time.Time) []interface{} {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil
	}
	return []interface{}{ns.Name, string(ns.Status.Phase), age(ns.CreationTimestamp, now)}
}

var serviceColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Type", "string", corev1.ServiceSpec{}.SwaggerDoc()["type"]),
	column("Cluster-IP", "string", corev1.ServiceSpec{}.SwaggerDoc()["clusterIP"]),
	column("External-IP", "string", corev1.ServiceSpec{}.SwaggerDoc()["externalIPs"]),
	column("Port(s)", "string", corev1.ServiceSpec{}.SwaggerDoc()["ports"]),
	ageColumn,
	wideColumn("Selector", "string", corev1.ServiceSpec{}.SwaggerDoc()["selector"]),
}

func serviceRow(obj runtime.Object, now time.Time) []interface{} {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil
	}
	clusterIP := none
	if len(svc.Spec.ClusterIPs) > 0 {
		clusterIP = svc.Spec.ClusterIPs[0]
	} else if svc.Spec.ClusterIP != "" {
		clusterIP = svc.Spec.ClusterIP
	}
	ports := servicePorts(svc.Spec.Ports)
	if ports == "" {
		ports = none
	}
	return []interface{}{
		svc.Name, string(svc.Spec.Type), clusterIP, serviceExternalIP(svc), ports,
		age(svc.CreationTimestamp, now),
		labels.FormatLabels(svc.Spec.Selector),
	}
}

// servicePorts prints ports as "80/TCP", or "80:30080/TCP" with a node port.
func servicePorts(ports []corev1.ServicePort) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		if p.NodePort > 0 {
			parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		} else {
			parts[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		}
	}
	return strings.Join(parts, ",")
}

func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return none
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, svc.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return unknown
}

var endpointsColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Endpoints", "string", corev1.Endpoints{}.SwaggerDoc()["subsets"]),
	ageColumn,
}

func endpointsRow(obj runtime.Object, now time.Time) []interface{} {
	ep, ok := obj.(*corev1.Endpoints)
	if !ok {
		return nil
	}
	return []interface{}{ep.Name, formatEndpoints(ep), age(ep.CreationTimestamp, now)}
}

// formatEndpoints lists the first three ip:port pairs and counts the rest.
func formatEndpoints(ep *corev1.Endpoints) string {
	const max = 3
	var list []string
	count := 0
	add := func(s string) {
		count++
		if len(list) < max {
			list = append(list, s)
		}
	}
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	return joinWithMore(list, count, max, none)
}

// joinWithMore joins list, saying how many of count were left out
// ("1.2.3.4:80,... + 2 more..."), or returns empty when there is nothing.
func joinWithMore(list []string, count, max int, empty string) string {
	s := strings.Join(list, ",")
	if count > max {
		return fmt.Sprintf("%s + %d more...", s, count-max)
	}
	if s == "" {
		return empty
	}
	return s
}

var nodeColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Status", "string", "The status of the node"),
	column("Roles", "string", "The roles of the node"),
	ageColumn,
	column("Version", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"]),
	wideColumn("Internal-IP", "string", corev1.NodeStatus{}.SwaggerDoc()["addresses"]),
	wideColumn("External-IP", "string", corev1.NodeStatus{}.SwaggerDoc()["addresses"]),
	wideColumn("OS-Image", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"]),
	wideColumn("Kernel-Version", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"]),
	wideColumn("Container-Runtime", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"]),
}

func nodeRow(obj runtime.Object, now time.Time) []interface{} {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil
	}
	var status []string
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = append(status, "Ready")
			} else {
				status = append(status, "NotReady")
			}
			break
		}
	}
	if len(status) == 0 {
		status = append(status, "Unknown")
	}
	if node.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	roles := strings.Join(nodeRoles(node), ",")
	if roles == "" {
		roles = none
	}
	info := node.Status.NodeInfo
	orUnknown := func(s string) string {
		if s == "" {
			return unknown
		}
		return s
	}
	return []interface{}{
		node.Name, strings.Join(status, ","), roles, age(node.CreationTimestamp, now), info.KubeletVersion,
		nodeAddress(node, corev1.NodeInternalIP), nodeAddress(node, corev1.NodeExternalIP),
		orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion),
	}
}

// nodeRoles reads roles from node-role.kubernetes.io/<role> label keys and
// the older kubernetes.io/role label value, sorted.
func nodeRoles(node *corev1.Node) []string {
	set := map[string]bool{}
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if role := strings.TrimPrefix(k, "node-role.kubernetes.io/"); role != "" {
				set[role] = true
			}
		case k == "kubernetes.io/role" && v != "":
			set[v] = true
		}
	}
	roles := make([]string, 0, len(set))
	for r := range set {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return roles
}

func nodeAddress(node *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range node.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return none
}

var configMapColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Data", "string", corev1.ConfigMap{}.SwaggerDoc()["data"]),
	ageColumn,
}

func configMapRow(obj runtime.Object, now time.Time) []interface{} {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil
	}
	return []interface{}{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp, now)}
}

var secretColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Type", "string", corev1.Secret{}.SwaggerDoc()["type"]),
	column("Data", "string", corev1.Secret{}.SwaggerDoc()["data"]),
	ageColumn,
}

func secretRow(obj runtime.Object, now time.Time) []interface{} {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return nil
	}
	return []interface{}{s.Name, string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp, now)}
}

var serviceAccountColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Secrets", "string", corev1.ServiceAccount{}.SwaggerDoc()["secrets"]),
	ageColumn,
}

func serviceAccountRow(obj runtime.Object, now time.Time) []interface{} {
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		return nil
	}
	return []interface{}{sa.Name, int64(len(sa.Secrets)), age(sa.CreationTimestamp, now)}
}

var rcColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Desired", "integer", corev1.ReplicationControllerSpec{}.SwaggerDoc()["replicas"]),
	column("Current", "integer", corev1.ReplicationControllerStatus{}.SwaggerDoc()["replicas"]),
	column("Ready", "integer", corev1.ReplicationControllerStatus{}.SwaggerDoc()["readyReplicas"]),
	ageColumn,
	wideColumn("Containers", "string", "Names of each container in the template."),
	wideColumn("Images", "string", "Images referenced by each container in the template."),
	wideColumn("Selector", "string", corev1.ReplicationControllerSpec{}.SwaggerDoc()["selector"]),
}

func rcRow(obj runtime.Object, now time.Time) []interface{} {
	rc, ok := obj.(*corev1.ReplicationController)
	if !ok {
		return nil
	}
	var names, images string
	if rc.Spec.Template != nil {
		names, images = containersAndImages(rc.Spec.Template.Spec.Containers)
	}
	return []interface{}{
		rc.Name, int64(replicasOr1(rc.Spec.Replicas)), int64(rc.Status.Replicas), int64(rc.Status.ReadyReplicas),
		age(rc.CreationTimestamp, now), names, images, labels.FormatLabels(rc.Spec.Selector),
	}
}

func replicasOr1(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func containersAndImages(cs []corev1.Container) (names, images string) {
	n := make([]string, len(cs))
	im := make([]string, len(cs))
	for i, c := range cs {
		n[i], im[i] = c.Name, c.Image
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// Events of both groups print alike; Kubernetes puts LAST SEEN first and the
// name last (wide only).
var eventColumns = []metav1.TableColumnDefinition{
	column("Last Seen", "string", corev1.Event{}.SwaggerDoc()["lastTimestamp"]),
	column("Type", "string", corev1.Event{}.SwaggerDoc()["type"]),
	column("Reason", "string", corev1.Event{}.SwaggerDoc()["reason"]),
	column("Object", "string", corev1.Event{}.SwaggerDoc()["involvedObject"]),
	wideColumn("Subobject", "string", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"]),
	wideColumn("Source", "string", corev1.Event{}.SwaggerDoc()["source"]),
	column("Message", "string", corev1.Event{}.SwaggerDoc()["message"]),
	wideColumn("First Seen", "string", corev1.Event{}.SwaggerDoc()["firstTimestamp"]),
	wideColumn("Count", "string", corev1.Event{}.SwaggerDoc()["count"]),
	{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
}

func coreEventRow(obj runtime.Object, now time.Time) []interface{} {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return nil
	}
	return eventRow(ev, now)
}

func eventRow(ev *corev1.Event, now time.Time) []interface{} {
	first := age(ev.FirstTimestamp, now)
	if ev.FirstTimestamp.IsZero() {
		first = microAge(ev.EventTime, now)
	}
	last := age(ev.LastTimestamp, now)
	if ev.LastTimestamp.IsZero() {
		last = first
	}
	count := ev.Count
	if ev.Series != nil {
		last = microAge(ev.Series.LastObservedTime, now)
		count = ev.Series.Count
	} else if count == 0 {
		count = 1
	}
	target := strings.ToLower(ev.InvolvedObject.Kind)
	if ev.InvolvedObject.Name != "" {
		target += "/" + ev.InvolvedObject.Name
	}
	source := firstNonEmpty(ev.Source.Component, ev.ReportingController)
	if host := firstNonEmpty(ev.Source.Host, ev.ReportingInstance); host != "" {
		source += ", " + host
	}
	return []interface{}{
		last, ev.Type, ev.Reason, target, ev.InvolvedObject.FieldPath, source,
		strings.TrimSpace(ev.Message), first, int64(count), ev.Name,
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
