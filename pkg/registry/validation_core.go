package registry

import (
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxDataSize is the most a ConfigMap or Secret may hold (1 MiB).
const MaxDataSize = 1024 * 1024

func validateNamespaceObj(obj, _ runtime.Object) field.ErrorList {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	for i, f := range ns.Spec.Finalizers {
		p := field.NewPath("spec", "finalizers").Index(i)
		for _, msg := range validation.IsQualifiedName(string(f)) {
			errs = append(errs, field.Invalid(p, f, msg))
		}
		if !strings.Contains(string(f), "/") && f != FinalizerKubernetes {
			errs = append(errs, field.Invalid(p, f, "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	if ph := ns.Status.Phase; ph != "" && ph != corev1.NamespaceActive && ph != corev1.NamespaceTerminating {
		errs = append(errs, field.NotSupported(field.NewPath("status", "phase"), ph, []corev1.NamespacePhase{corev1.NamespaceActive, corev1.NamespaceTerminating}))
	}
	return errs
}

// validateDataKeys checks the keys of a ConfigMap's or Secret's data and
// adds up the size of the values.
func validateDataKeys[V string | []byte](data map[string]V, fldPath *field.Path) (field.ErrorList, int) {
	var errs field.ErrorList
	size := 0
	for _, k := range sortedKeys(data) {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(fldPath.Key(k), k, msg))
		}
		size += len(data[k])
	}
	return errs, size
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

func validateConfigMapObj(obj, old runtime.Object) field.ErrorList {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil
	}
	errs, size := validateDataKeys(cm.Data, field.NewPath("data"))
	binErrs, binSize := validateDataKeys(cm.BinaryData, field.NewPath("binaryData"))
	errs = append(errs, binErrs...)
	for _, k := range sortedKeys(cm.Data) {
		if _, dup := cm.BinaryData[k]; dup {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of key present in binaryData"))
		}
	}
	if size+binSize > MaxDataSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", MaxDataSize))
	}
	if o, ok := old.(*corev1.ConfigMap); ok && o != nil && o.Immutable != nil && *o.Immutable {
		if cm.Immutable == nil || !*cm.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(cm.Data, o.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(cm.BinaryData, o.BinaryData) {
			errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

func validateSecretObj(obj, old runtime.Object) field.ErrorList {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return nil
	}
	dataPath := field.NewPath("data")
	errs, size := validateDataKeys(s.Data, dataPath)
	if size > MaxDataSize {
		errs = append(errs, field.TooLong(dataPath, "", MaxDataSize))
	}
	has := func(k string) bool { _, ok := s.Data[k]; return ok }
	jsonKey := func(k string) {
		b, ok := s.Data[k]
		if !ok {
			errs = append(errs, field.Required(dataPath.Key(k), ""))
			return
		}
		if err := json.Unmarshal(b, &map[string]interface{}{}); err != nil {
			errs = append(errs, field.Invalid(dataPath.Key(k), "<secret contents redacted>", err.Error()))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		jsonKey(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		jsonKey(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		if !has(corev1.BasicAuthUsernameKey) && !has(corev1.BasicAuthPasswordKey) {
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthUsernameKey), ""))
			errs = append(errs, field.Required(dataPath.Key(corev1.BasicAuthPasswordKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			errs = append(errs, field.Required(dataPath.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		if !has(corev1.TLSCertKey) {
			errs = append(errs, field.Required(dataPath.Key(corev1.TLSCertKey), ""))
		}
		if !has(corev1.TLSPrivateKeyKey) {
			errs = append(errs, field.Required(dataPath.Key(corev1.TLSPrivateKeyKey), ""))
		}
	}
	if o, ok := old.(*corev1.Secret); ok && o != nil {
		if s.Type != o.Type {
			errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
		}
		if o.Immutable != nil && *o.Immutable {
			if s.Immutable == nil || !*s.Immutable {
				errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
			}
			if !reflect.DeepEqual(s.Data, o.Data) {
				errs = append(errs, field.Forbidden(dataPath, "field is immutable when `immutable` is set"))
			}
		}
	}
	return errs
}

func validateServiceAccountObj(obj, _ runtime.Object) field.ErrorList {
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	for i, ref := range sa.ImagePullSecrets {
		if ref.Name == "" {
			errs = append(errs, field.Required(field.NewPath("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	return errs
}

func validateNodeObj(obj, old runtime.Object) field.ErrorList {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	cidrsPath := specPath.Child("podCIDRs")
	for i, c := range n.Spec.PodCIDRs {
		errs = append(errs, validation.IsValidCIDR(cidrsPath.Index(i), c)...)
	}
	if len(n.Spec.PodCIDRs) > 2 || len(n.Spec.PodCIDRs) == 2 && sameFamily(n.Spec.PodCIDRs[0], n.Spec.PodCIDRs[1]) {
		errs = append(errs, field.Invalid(cidrsPath, n.Spec.PodCIDRs, "may specify no more than one CIDR for each IP family"))
	}
	if n.Spec.PodCIDR != "" && len(n.Spec.PodCIDRs) > 0 && n.Spec.PodCIDR != n.Spec.PodCIDRs[0] {
		errs = append(errs, field.Invalid(specPath.Child("podCIDR"), n.Spec.PodCIDR, "must match the first value of `podCIDRs`"))
	}
	errs = append(errs, validateTaints(n.Spec.Taints, specPath.Child("taints"))...)
	for name, q := range n.Status.Capacity {
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(field.NewPath("status", "capacity").Key(string(name)), q.String(), "must be greater than or equal to 0"))
		}
	}
	for name, q := range n.Status.Allocatable {
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(field.NewPath("status", "allocatable").Key(string(name)), q.String(), "must be greater than or equal to 0"))
		}
	}
	if o, ok := old.(*corev1.Node); ok && o != nil {
		if len(o.Spec.PodCIDRs) > 0 && !equality.Semantic.DeepEqual(o.Spec.PodCIDRs, n.Spec.PodCIDRs) {
			errs = append(errs, field.Forbidden(cidrsPath, "node updates may not change podCIDR except from \"\" to valid"))
		}
		if o.Spec.ProviderID != "" && o.Spec.ProviderID != n.Spec.ProviderID {
			errs = append(errs, field.Forbidden(specPath.Child("providerID"), "node updates may not change providerID except from \"\" to valid"))
		}
	}
	return errs
}

func sameFamily(a, b string) bool {
	ipa, _, err1 := net.ParseCIDR(a)
	ipb, _, err2 := net.ParseCIDR(b)
	return err1 == nil && err2 == nil && (ipa.To4() == nil) == (ipb.To4() == nil)
}

func validateTaints(taints []corev1.Taint, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	type key struct {
		k string
		e corev1.TaintEffect
	}
	seen := map[key]bool{}
	for i, t := range taints {
		idx := fldPath.Index(i)
		errs = append(errs, metav1validation.ValidateLabelName(t.Key, idx.Child("key"))...)
		for _, msg := range validation.IsValidLabelValue(t.Value) {
			errs = append(errs, field.Invalid(idx.Child("value"), t.Value, msg))
		}
		switch {
		case t.Effect == "":
			errs = append(errs, field.Required(idx.Child("effect"), ""))
		case !contains(supportedTaintEffects, t.Effect):
			errs = append(errs, field.NotSupported(idx.Child("effect"), t.Effect, supportedTaintEffects))
		}
		k := key{t.Key, t.Effect}
		if seen[k] {
			errs = append(errs, field.Duplicate(idx, t))
		}
		seen[k] = true
	}
	return errs
}

func validateEndpointsObj(obj, _ runtime.Object) field.ErrorList {
	ep, ok := obj.(*corev1.Endpoints)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	for i, ss := range ep.Subsets {
		sp := field.NewPath("subsets").Index(i)
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			errs = append(errs, field.Required(sp, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j, a := range ss.Addresses {
			errs = append(errs, validateEndpointAddress(a, sp.Child("addresses").Index(j))...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, validateEndpointAddress(a, sp.Child("notReadyAddresses").Index(j))...)
		}
		for j, p := range ss.Ports {
			pp := sp.Child("ports").Index(j)
			if len(ss.Ports) > 1 && p.Name == "" {
				errs = append(errs, field.Required(pp.Child("name"), ""))
			} else if p.Name != "" {
				for _, msg := range validation.IsDNS1123Label(p.Name) {
					errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
				}
			}
			for _, msg := range validation.IsValidPortNum(int(p.Port)) {
				errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
			}
			errs = append(errs, validateProtocol(p.Protocol, pp.Child("protocol"))...)
		}
	}
	return errs
}

// validateEndpointAddress checks one address. Unlike Kubernetes, loopback
// addresses are allowed: a one-host skiff (and every test cluster) advertises
// the API server on 127.0.0.1, and pods without their own network namespace
// share the host's addresses.
func validateEndpointAddress(a corev1.EndpointAddress, fldPath *field.Path) field.ErrorList {
	errs := validation.IsValidIP(fldPath.Child("ip"), a.IP)
	if len(errs) == 0 {
		ip := net.ParseIP(a.IP)
		switch {
		case ip.IsUnspecified():
			errs = append(errs, field.Invalid(fldPath.Child("ip"), a.IP, "may not be unspecified (0.0.0.0)"))
		case ip.IsLinkLocalUnicast():
			errs = append(errs, field.Invalid(fldPath.Child("ip"), a.IP, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
		case ip.IsLinkLocalMulticast():
			errs = append(errs, field.Invalid(fldPath.Child("ip"), a.IP, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
		}
	}
	if a.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(a.Hostname) {
			errs = append(errs, field.Invalid(fldPath.Child("hostname"), a.Hostname, msg))
		}
	}
	if a.NodeName != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*a.NodeName) {
			errs = append(errs, field.Invalid(fldPath.Child("nodeName"), *a.NodeName, msg))
		}
	}
	return errs
}

// Event field limits.
const (
	eventReasonMax   = 128
	eventActionMax   = 128
	eventNoteMax     = 1024
	eventInstanceMax = 128
)

func validateCoreEventObj(obj, _ runtime.Object) field.ErrorList {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return nil
	}
	return validateLegacyEvent(ev, "reportingComponent")
}

// validateLegacyEvent is the lenient check that core/v1 events get, for
// compatibility with old clients: the involved object's namespace must
// match the event's, and events with an eventTime (new-style) must say who
// reported them and what they did.
func validateLegacyEvent(ev *corev1.Event, reportingField string) field.ErrorList {
	var errs field.ErrorList
	nsPath := field.NewPath("involvedObject", "namespace")
	if ev.EventTime.IsZero() {
		if ev.InvolvedObject.Namespace == "" {
			if ev.Namespace != "" && ev.Namespace != "default" {
				errs = append(errs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
			}
		} else if ev.Namespace != ev.InvolvedObject.Namespace {
			errs = append(errs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
		}
	} else {
		if ev.InvolvedObject.Namespace == "" && ev.Namespace != "default" && ev.Namespace != "kube-system" {
			errs = append(errs, field.Invalid(nsPath, ev.InvolvedObject.Namespace, "does not match event.namespace"))
		}
		errs = append(errs, validateReporting(ev, reportingField)...)
	}
	for _, msg := range validation.IsDNS1123Subdomain(ev.Namespace) {
		errs = append(errs, field.Invalid(field.NewPath("namespace"), ev.Namespace, msg))
	}
	return errs
}

func validateReporting(ev *corev1.Event, reportingField string) field.ErrorList {
	var errs field.ErrorList
	if ev.ReportingController == "" {
		errs = append(errs, field.Required(field.NewPath(reportingField), ""))
	} else {
		for _, msg := range validation.IsQualifiedName(ev.ReportingController) {
			errs = append(errs, field.Invalid(field.NewPath(reportingField), ev.ReportingController, msg))
		}
	}
	if ev.ReportingInstance == "" {
		errs = append(errs, field.Required(field.NewPath("reportingInstance"), ""))
	} else if len(ev.ReportingInstance) > eventInstanceMax {
		errs = append(errs, field.Invalid(field.NewPath("reportingInstance"), "", fmt.Sprintf("can have at most %v characters", eventInstanceMax)))
	}
	if ev.Action == "" {
		errs = append(errs, field.Required(field.NewPath("action"), ""))
	} else if len(ev.Action) > eventActionMax {
		errs = append(errs, field.Invalid(field.NewPath("action"), "", fmt.Sprintf("can have at most %v characters", eventActionMax)))
	}
	return errs
}
