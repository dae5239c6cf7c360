package registry

import (
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var leaseColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Holder", "string", coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]),
	ageColumn,
}

func leaseRow(obj runtime.Object, now time.Time) []interface{} {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return nil
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return []interface{}{l.Name, holder, age(l.CreationTimestamp, now)}
}

var endpointSliceColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("AddressType", "string", discoveryv1.EndpointSlice{}.SwaggerDoc()["addressType"]),
	column("Ports", "string", discoveryv1.EndpointSlice{}.SwaggerDoc()["ports"]),
	column("Endpoints", "string", discoveryv1.EndpointSlice{}.SwaggerDoc()["endpoints"]),
	ageColumn,
}

func endpointSliceRow(obj runtime.Object, now time.Time) []interface{} {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil
	}
	const max = 3
	var ports []string
	for _, p := range es.Ports {
		if len(ports) < max {
			s := "*"
			if p.Port != nil {
				s = strconv.Itoa(int(*p.Port))
			} else if p.Name != nil {
				s = *p.Name
			}
			ports = append(ports, s)
		}
	}
	var addrs []string
	count := 0
	for _, e := range es.Endpoints {
		for _, a := range e.Addresses {
			count++
			if len(addrs) < max {
				addrs = append(addrs, a)
			}
		}
	}
	return []interface{}{
		es.Name, string(es.AddressType),
		joinWithMore(ports, len(es.Ports), max, "<unset>"),
		joinWithMore(addrs, count, max, "<unset>"),
		age(es.CreationTimestamp, now),
	}
}

var priorityClassColumns = []metav1.TableColumnDefinition{
	nameColumn,
	column("Value", "integer", schedulingv1.PriorityClass{}.SwaggerDoc()["value"]),
	column("Global-Default", "boolean", schedulingv1.PriorityClass{}.SwaggerDoc()["globalDefault"]),
	ageColumn,
	column("PreemptionPolicy", "string", schedulingv1.PriorityClass{}.SwaggerDoc()["preemptionPolicy"]),
}

func priorityClassRow(obj runtime.Object, now time.Time) []interface{} {
	pc, ok := obj.(*schedulingv1.PriorityClass)
	if !ok {
		return nil
	}
	policy := ""
	if pc.PreemptionPolicy != nil {
		policy = string(*pc.PreemptionPolicy)
	}
	return []interface{}{pc.Name, int64(pc.Value), pc.GlobalDefault, age(pc.CreationTimestamp, now), policy}
}

func eventsV1Row(obj runtime.Object, now time.Time) []interface{} {
	ev, ok := obj.(*eventsv1.Event)
	if !ok {
		return nil
	}
	return eventRow(coreEventFromV1(ev), now)
}

// coreEventFromV1 maps an events.k8s.io/v1 Event onto the core/v1 shape;
// both are stored as one type, so they print, select and validate alike.
func coreEventFromV1(ev *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{
		ObjectMeta:          ev.ObjectMeta,
		InvolvedObject:      ev.Regarding,
		Reason:              ev.Reason,
		Message:             ev.Note,
		Source:              ev.DeprecatedSource,
		FirstTimestamp:      ev.DeprecatedFirstTimestamp,
		LastTimestamp:       ev.DeprecatedLastTimestamp,
		Count:               ev.DeprecatedCount,
		Type:                ev.Type,
		EventTime:           ev.EventTime,
		Related:             ev.Related,
		ReportingController: ev.ReportingController,
		ReportingInstance:   ev.ReportingInstance,
		Action:              ev.Action,
	}
	if ev.Series != nil {
		out.Series = &corev1.EventSeries{Count: ev.Series.Count, LastObservedTime: ev.Series.LastObservedTime}
	}
	return out
}

// eventV1FromCore is the events.k8s.io/v1 view of a stored core/v1 Event.
func eventV1FromCore(ev *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{
		ObjectMeta:               ev.ObjectMeta,
		Regarding:                ev.InvolvedObject,
		Reason:                   ev.Reason,
		Note:                     ev.Message,
		DeprecatedSource:         ev.Source,
		DeprecatedFirstTimestamp: ev.FirstTimestamp,
		DeprecatedLastTimestamp:  ev.LastTimestamp,
		DeprecatedCount:          ev.Count,
		Type:                     ev.Type,
		EventTime:                ev.EventTime,
		Related:                  ev.Related,
		ReportingController:      ev.ReportingController,
		ReportingInstance:        ev.ReportingInstance,
		Action:                   ev.Action,
	}
	if ev.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: ev.Series.Count, LastObservedTime: ev.Series.LastObservedTime}
	}
	return out
}
