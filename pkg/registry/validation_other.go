package registry

import (
	"fmt"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func validateLeaseObj(obj, _ runtime.Object) field.ErrorList {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(specPath.Child("leaseDurationSeconds"), *d, "must be greater than 0"))
	}
	if t := l.Spec.LeaseTransitions; t != nil && *t < 0 {
		errs = append(errs, field.Invalid(specPath.Child("leaseTransitions"), *t, "must be greater than or equal to 0"))
	}
	return errs
}

// EndpointSlice limits.
const (
	maxSliceEndpoints = 1000
	maxSliceAddresses = 100
	maxSlicePorts     = 20000
)

var supportedAddressTypes = []discoveryv1.AddressType{discoveryv1.AddressTypeFQDN, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}

func validateEndpointSliceObj(obj, old runtime.Object) field.ErrorList {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	atPath := field.NewPath("addressType")
	switch {
	case es.AddressType == "":
		errs = append(errs, field.Required(atPath, ""))
	case !contains(supportedAddressTypes, es.AddressType):
		errs = append(errs, field.NotSupported(atPath, es.AddressType, supportedAddressTypes))
	}
	epPath := field.NewPath("endpoints")
	if len(es.Endpoints) > maxSliceEndpoints {
		errs = append(errs, field.TooMany(epPath, len(es.Endpoints), maxSliceEndpoints))
	}
	for i, e := range es.Endpoints {
		idx := epPath.Index(i)
		ap := idx.Child("addresses")
		switch {
		case len(e.Addresses) == 0:
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		case len(e.Addresses) > maxSliceAddresses:
			errs = append(errs, field.TooMany(ap, len(e.Addresses), maxSliceAddresses))
		}
		for j, a := range e.Addresses {
			errs = append(errs, validateSliceAddress(es.AddressType, a, ap.Index(j))...)
		}
		if e.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*e.Hostname) {
				errs = append(errs, field.Invalid(idx.Child("hostname"), *e.Hostname, msg))
			}
		}
		if e.NodeName != nil {
			for _, msg := range validation.IsDNS1123Subdomain(*e.NodeName) {
				errs = append(errs, field.Invalid(idx.Child("nodeName"), *e.NodeName, msg))
			}
		}
		errs = append(errs, metav1validation.ValidateLabels(e.DeprecatedTopology, idx.Child("deprecatedTopology"))...)
	}
	portsPath := field.NewPath("ports")
	if len(es.Ports) > maxSlicePorts {
		errs = append(errs, field.TooMany(portsPath, len(es.Ports), maxSlicePorts))
	}
	names := sets.New[string]()
	for i, p := range es.Ports {
		idx := portsPath.Index(i)
		if p.Name != nil && *p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(*p.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), *p.Name, msg))
			}
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if names.Has(name) {
			errs = append(errs, field.Duplicate(idx.Child("name"), name))
		}
		names.Insert(name)
		if p.Protocol == nil {
			errs = append(errs, field.Required(idx.Child("protocol"), ""))
		} else {
			errs = append(errs, validateProtocol(*p.Protocol, idx.Child("protocol"))...)
		}
		if p.Port != nil {
			for _, msg := range validation.IsInRange(int(*p.Port), 0, 65535) {
				errs = append(errs, field.Invalid(idx.Child("port"), *p.Port, msg))
			}
		}
	}
	if o, ok := old.(*discoveryv1.EndpointSlice); ok && o != nil {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(es.AddressType, o.AddressType, atPath)...)
	}
	return errs
}

func validateSliceAddress(t discoveryv1.AddressType, a string, fldPath *field.Path) field.ErrorList {
	switch t {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		errs := validation.IsValidIP(fldPath, a)
		if len(errs) > 0 {
			return errs
		}
		isV4 := !strings.Contains(a, ":")
		if t == discoveryv1.AddressTypeIPv4 && !isV4 {
			return field.ErrorList{field.Invalid(fldPath, a, "must be an IPv4 address")}
		}
		if t == discoveryv1.AddressTypeIPv6 && isV4 {
			return field.ErrorList{field.Invalid(fldPath, a, "must be an IPv6 address")}
		}
	case discoveryv1.AddressTypeFQDN:
		return validation.IsFullyQualifiedDomainName(fldPath, a)
	}
	return nil
}

func validateEventsV1Obj(obj, _ runtime.Object) field.ErrorList {
	ev, ok := obj.(*eventsv1.Event)
	if !ok {
		return nil
	}
	return validateStrictEvent(coreEventFromV1(ev))
}

// validateStrictEvent is the full check that events.k8s.io/v1 events get:
// new-style events must carry eventTime, a type, who reported them and
// what they did, and may not use the deprecated fields.
func validateStrictEvent(ev *corev1.Event) field.ErrorList {
	errs := validateLegacyEvent(ev, "reportingController")
	if ev.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
		errs = append(errs, validateReporting(ev, "reportingController")...)
	}
	if ev.Type != corev1.EventTypeNormal && ev.Type != corev1.EventTypeWarning {
		errs = append(errs, field.Invalid(field.NewPath("type"), "", fmt.Sprintf("has invalid value: %v", ev.Type)))
	}
	if !ev.FirstTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("firstTimestamp"), "", "needs to be unset"))
	}
	if !ev.LastTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("lastTimestamp"), "", "needs to be unset"))
	}
	if ev.Count != 0 {
		errs = append(errs, field.Invalid(field.NewPath("count"), "", "needs to be unset"))
	}
	if ev.Source.Component != "" || ev.Source.Host != "" {
		errs = append(errs, field.Invalid(field.NewPath("source"), "", "needs to be unset"))
	}
	if s := ev.Series; s != nil {
		if s.Count < 2 {
			errs = append(errs, field.Invalid(field.NewPath("series.count"), "", "should be at least 2"))
		}
		if s.LastObservedTime.IsZero() {
			errs = append(errs, field.Required(field.NewPath("series.lastObservedTime"), ""))
		}
	}
	if ev.Reason == "" {
		errs = append(errs, field.Required(field.NewPath("reason"), ""))
	} else if len(ev.Reason) > eventReasonMax {
		errs = append(errs, field.Invalid(field.NewPath("reason"), "", fmt.Sprintf("can have at most %v characters", eventReasonMax)))
	}
	if len(ev.Message) > eventNoteMax {
		errs = append(errs, field.Invalid(field.NewPath("note"), "", fmt.Sprintf("can have at most %v characters", eventNoteMax)))
	}
	return errs
}

// Priority values.
const (
	// HighestUserDefinablePriority is the largest value a PriorityClass not
	// reserved for the system may have.
	HighestUserDefinablePriority = int32(1000000000)
	// SystemCriticalPriority is where the system classes start.
	SystemCriticalPriority = 2 * HighestUserDefinablePriority
	systemPriorityPrefix   = "system-"
)

// SystemPriorityClasses are the classes the API server creates at start:
// system-cluster-critical and system-node-critical.
func SystemPriorityClasses() []*schedulingv1.PriorityClass {
	mk := func(name string, value int32, desc string) *schedulingv1.PriorityClass {
		pc := &schedulingv1.PriorityClass{Value: value, Description: desc}
		pc.Name = name
		DefaultPriorityClass(pc)
		return pc
	}
	return []*schedulingv1.PriorityClass{
		mk("system-node-critical", SystemCriticalPriority+1000, "Used for system critical pods that must not be moved from their current node."),
		mk("system-cluster-critical", SystemCriticalPriority, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
	}
}

func validatePriorityClassObj(obj, old runtime.Object) field.ErrorList {
	pc, ok := obj.(*schedulingv1.PriorityClass)
	if !ok {
		return nil
	}
	var errs field.ErrorList
	if strings.HasPrefix(pc.Name, systemPriorityPrefix) {
		if err := knownSystemClass(pc); err != "" {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"), "priority class names with '"+systemPriorityPrefix+"' prefix are reserved for system use only. error: "+err))
		}
	} else if pc.Value > HighestUserDefinablePriority {
		errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("maximum allowed value of a user defined priority is %v", HighestUserDefinablePriority)))
	}
	if p := pc.PreemptionPolicy; p != nil && !contains(supportedPreemption, *p) {
		errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *p, supportedPreemption))
	}
	if o, ok := old.(*schedulingv1.PriorityClass); ok && o != nil {
		if pc.Value != o.Value {
			errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
		}
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(pc.PreemptionPolicy, o.PreemptionPolicy, field.NewPath("preemptionPolicy"))...)
	}
	return errs
}

// knownSystemClass says what is wrong with a "system-" class, or "".
func knownSystemClass(pc *schedulingv1.PriorityClass) string {
	for _, s := range SystemPriorityClasses() {
		if s.Name != pc.Name {
			continue
		}
		if s.Value != pc.Value {
			return fmt.Sprintf("value of %v PriorityClass must be %v", s.Name, s.Value)
		}
		if s.GlobalDefault != pc.GlobalDefault {
			return fmt.Sprintf("globalDefault of %v PriorityClass must be %v", s.Name, s.GlobalDefault)
		}
		return ""
	}
	return fmt.Sprintf("%v is not a known system priority class", pc.Name)
}

// ValidateGlobalDefault rejects a second globalDefault PriorityClass; the
// handler calls it on create and update with the classes already stored.
func ValidateGlobalDefault(pc *schedulingv1.PriorityClass, existing []*schedulingv1.PriorityClass) field.ErrorList {
	if !pc.GlobalDefault {
		return nil
	}
	for _, e := range existing {
		if e.GlobalDefault && e.Name != pc.Name {
			return field.ErrorList{field.Forbidden(field.NewPath("globalDefault"), fmt.Sprintf("PriorityClass %v is already marked as default. Only one default can exist", e.Name))}
		}
	}
	return nil
}

// ApplyPriority sets a new pod's priority from its PriorityClass as the
// Priority admission does: pc is the named class, or the global default
// class when the pod names none (nil when there is none). It returns an
// error message when the pod names a class that does not exist (pc nil).
func ApplyPriority(pod *corev1.Pod, pc *schedulingv1.PriorityClass) field.ErrorList {
	if pc == nil {
		if pod.Spec.PriorityClassName != "" {
			return field.ErrorList{field.NotFound(field.NewPath("spec", "priorityClassName"), pod.Spec.PriorityClassName)}
		}
		pod.Spec.Priority = ptrTo(int32(0))
		return nil
	}
	if pod.Spec.PriorityClassName == "" && !pc.GlobalDefault {
		pod.Spec.Priority = ptrTo(int32(0))
		return nil
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != pc.Value {
		return field.ErrorList{field.Forbidden(field.NewPath("spec", "priority"), "the integer value of priority ("+fmt.Sprint(*pod.Spec.Priority)+") must not be provided in pod spec; priority admission controller computed "+fmt.Sprint(pc.Value)+" from the given PriorityClass name")}
	}
	if pod.Spec.PriorityClassName == "" {
		pod.Spec.PriorityClassName = pc.Name
	}
	pod.Spec.Priority = ptrTo(pc.Value)
	if pc.PreemptionPolicy != nil {
		pod.Spec.PreemptionPolicy = ptrTo(*pc.PreemptionPolicy)
	}
	return nil
}
