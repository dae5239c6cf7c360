package openapi

// optionalFields are the fields of the served types that are serialized
// without omitempty yet documented as optional (+optional); Kubernetes does
// not list them as required. Every other field without omitempty is.
var optionalFields = map[string]bool{
	"io.k8s.api.core.v1.TypedObjectReference.apiGroup":                   true,
	"io.k8s.api.core.v1.TypedLocalObjectReference.apiGroup":              true,
	"io.k8s.api.core.v1.AzureFilePersistentVolumeSource.secretNamespace": true,
	"io.k8s.api.core.v1.ProjectedVolumeSource.sources":                   true,
	"io.k8s.api.core.v1.GRPCAction.service":                              true,
	"io.k8s.api.core.v1.NodeRuntimeHandler.name":                         true,
	"io.k8s.api.core.v1.ContainerImage.names":                            true,
	"io.k8s.api.core.v1.Event.reportingComponent":                        true,
	"io.k8s.api.core.v1.Event.reportingInstance":                         true,
	"io.k8s.api.apps.v1.StatefulSetOrdinals.start":                       true,
	"io.k8s.api.apps.v1.StatefulSetSpec.serviceName":                     true,
	"io.k8s.api.apps.v1.StatefulSetStatus.availableReplicas":             true,
	"io.k8s.api.apps.v1.StatefulSetCondition.type":                       true,
	"io.k8s.api.apps.v1.StatefulSetCondition.status":                     true,
	"io.k8s.api.apps.v1.DeploymentCondition.type":                        true,
	"io.k8s.api.apps.v1.DeploymentCondition.status":                      true,
	"io.k8s.api.apps.v1.DaemonSetCondition.type":                         true,
	"io.k8s.api.apps.v1.DaemonSetCondition.status":                       true,
	"io.k8s.api.apps.v1.ReplicaSetCondition.type":                        true,
	"io.k8s.api.apps.v1.ReplicaSetCondition.status":                      true,
	"io.k8s.api.apps.v1.ControllerRevision.revision":                     true,
	"io.k8s.api.discovery.v1.EndpointSlice.endpoints":                    true,
	"io.k8s.api.discovery.v1.EndpointSlice.ports":                        true,
	"io.k8s.api.scheduling.v1.PriorityClass.value":                       true,
}

// extraDocs describe the hand-written apimachinery types that have no
// generated SwaggerDoc.
var extraDocs = map[string]string{
	"io.k8s.apimachinery.pkg.apis.meta.v1.Time": "Time is a timestamp serialized as an RFC 3339 string " +
		"with second precision, e.g. \"2024-01-02T15:04:05Z\".",
	"io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime is a timestamp serialized as an RFC 3339 " +
		"string with microsecond precision, e.g. \"2024-01-02T15:04:05.000000Z\".",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Duration": "Duration is a length of time written as a Go " +
		"duration string, e.g. \"1h30m\" or \"90s\".",
	"io.k8s.apimachinery.pkg.api.resource.Quantity": "Quantity is a fixed-point number with an optional " +
		"suffix: a binary SI suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal SI suffix (n, u, m, \"\", k, M, G, T, P, E) " +
		"or a decimal exponent (e.g. 1e3). Examples: \"500m\" (half a CPU), \"128Mi\", \"2\". It is written " +
		"back in canonical form, so \"1000m\" reads back as \"1\".",
	"io.k8s.apimachinery.pkg.util.intstr.IntOrString": "IntOrString holds either an integer or a string " +
		"(for example a port number or a port name, or a count or a percentage such as \"25%\"); it is " +
		"serialized as whichever it holds.",
	"io.k8s.apimachinery.pkg.runtime.RawExtension": "RawExtension holds a complete embedded object, " +
		"with its own apiVersion and kind, whose type is not fixed by the enclosing schema.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent": "WatchEvent is one event of a watch stream: " +
		"its type and the object it concerns.",
}
