package registry

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAllResourcesComplete(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for _, r := range All() {
		key := r.Group + "/" + r.Resource
		if seen[key] {
			t.Errorf("resource %s listed twice", key)
		}
		seen[key] = true
		if r.Version != "v1" || r.Kind == "" || r.SingularName != strings.ToLower(r.Kind) && r.Kind != "Endpoints" {
			t.Errorf("%s: version %q kind %q singular %q", key, r.Version, r.Kind, r.SingularName)
		}
		if r.New == nil || r.NewList == nil || r.Default == nil || r.Validate == nil || r.Row == nil || r.Fields == nil {
			t.Fatalf("%s: missing strategy function", key)
		}
		obj := r.New()
		if got := reflect.TypeOf(obj).Elem().Name(); got != r.Kind {
			t.Errorf("%s: New() is %s, want %s", key, got, r.Kind)
		}
		if got := reflect.TypeOf(r.NewList()).Elem().Name(); got != r.Kind+"List" {
			t.Errorf("%s: NewList() is %s, want %sList", key, got, r.Kind)
		}
		// An empty object must survive every strategy function.
		m, _ := meta.Accessor(obj)
		m.SetName("x")
		m.SetCreationTimestamp(metav1.NewTime(now.Add(-time.Minute)))
		if r.PrepareForCreate != nil {
			r.PrepareForCreate(obj)
		}
		r.Default(obj)
		_ = r.Validate(obj, nil)
		_ = r.Validate(obj, obj.DeepCopyObject())
		row := r.Row(obj, now)
		if len(row) != len(r.Columns) {
			t.Errorf("%s: Row has %d cells, Columns %d", key, len(row), len(r.Columns))
		}
		nameCol := -1
		for i, c := range r.Columns {
			if c.Format == "name" {
				nameCol = i
			}
			if c.Description == "" {
				t.Errorf("%s: column %q has no description", key, c.Name)
			}
		}
		if nameCol < 0 || row[nameCol] != "x" {
			t.Errorf("%s: name column %d, cell %v", key, nameCol, row)
		}
		if r.Kind != "Event" && nameCol != 0 {
			t.Errorf("%s: name is column %d, want 0", key, nameCol)
		}
		f := r.Fields(obj)
		if f["metadata.name"] != "x" {
			t.Errorf("%s: Fields = %v, want metadata.name=x", key, f)
		}
		if _, ok := f["metadata.namespace"]; ok != r.Namespaced {
			t.Errorf("%s: Fields has metadata.namespace = %v, want %v", key, ok, r.Namespaced)
		}
		if Lookup(r.Group, r.Resource) != r {
			t.Errorf("Lookup(%q, %q) did not find it", r.Group, r.Resource)
		}
	}
	if len(seen) != 17 {
		t.Errorf("All() has %d resources, want 17", len(seen))
	}
}

func TestResourceNames(t *testing.T) {
	tests := []struct {
		group, resource string
		kind            string
		namespaced      bool
		short           string
		all             bool
		status          bool
		scale           bool
	}{
		{"", "namespaces", "Namespace", false, "ns", false, true, false},
		{"", "pods", "Pod", true, "po", true, true, false},
		{"", "services", "Service", true, "svc", true, true, false},
		{"", "endpoints", "Endpoints", true, "ep", false, false, false},
		{"", "replicationcontrollers", "ReplicationController", true, "rc", true, true, true},
		{"", "nodes", "Node", false, "no", false, true, false},
		{"", "events", "Event", true, "ev", false, false, false},
		{"", "configmaps", "ConfigMap", true, "cm", false, false, false},
		{"", "secrets", "Secret", true, "", false, false, false},
		{"", "serviceaccounts", "ServiceAccount", true, "sa", false, false, false},
		{"apps", "deployments", "Deployment", true, "deploy", true, true, true},
		{"apps", "replicasets", "ReplicaSet", true, "rs", true, true, true},
		{"batch", "jobs", "Job", true, "", true, true, false},
		{"coordination.k8s.io", "leases", "Lease", true, "", false, false, false},
		{"discovery.k8s.io", "endpointslices", "EndpointSlice", true, "", false, false, false},
		{"events.k8s.io", "events", "Event", true, "ev", false, false, false},
		{"scheduling.k8s.io", "priorityclasses", "PriorityClass", false, "pc", false, false, false},
	}
	for _, tt := range tests {
		r := Lookup(tt.group, tt.resource)
		if r == nil {
			t.Errorf("Lookup(%q, %q) = nil", tt.group, tt.resource)
			continue
		}
		short := strings.Join(r.ShortNames, ",")
		all := len(r.Categories) == 1 && r.Categories[0] == "all"
		if r.Kind != tt.kind || r.Namespaced != tt.namespaced || short != tt.short || all != tt.all || r.Status != tt.status || (r.Scale != nil) != tt.scale {
			t.Errorf("Lookup(%q, %q) = kind %s namespaced %v short %q all %v status %v scale %v, want %+v",
				tt.group, tt.resource, r.Kind, r.Namespaced, short, all, r.Status, r.Scale != nil, tt)
		}
	}
	if Lookup("apps", "daemonsets") != nil {
		t.Errorf("Lookup(apps, daemonsets) != nil")
	}
}

func TestColumnNames(t *testing.T) {
	tests := map[string]string{
		"/pods":                             "Name Ready Status Restarts Age | IP Node Nominated Node Readiness Gates",
		"apps/deployments":                  "Name Ready Up-to-date Available Age | Containers Images Selector",
		"apps/replicasets":                  "Name Desired Current Ready Age | Containers Images Selector",
		"/replicationcontrollers":           "Name Desired Current Ready Age | Containers Images Selector",
		"batch/jobs":                        "Name Status Completions Duration Age | Containers Images Selector",
		"/services":                         "Name Type Cluster-IP External-IP Port(s) Age | Selector",
		"/nodes":                            "Name Status Roles Age Version | Internal-IP External-IP OS-Image Kernel-Version Container-Runtime",
		"/namespaces":                       "Name Status Age",
		"/configmaps":                       "Name Data Age",
		"/secrets":                          "Name Type Data Age",
		"/endpoints":                        "Name Endpoints Age",
		"/events":                           "Last Seen Type Reason Object Message | Subobject Source First Seen Count Name",
		"events.k8s.io/events":              "Last Seen Type Reason Object Message | Subobject Source First Seen Count Name",
		"coordination.k8s.io/leases":        "Name Holder Age",
		"discovery.k8s.io/endpointslices":   "Name AddressType Ports Endpoints Age",
		"/serviceaccounts":                  "Name Secrets Age",
		"scheduling.k8s.io/priorityclasses": "Name Value Global-Default Age PreemptionPolicy",
	}
	keys := make([]string, 0, len(tests))
	for k := range tests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, res, _ := strings.Cut(k, "/")
		r := Lookup(g, res)
		var normal, wide []string
		for _, c := range r.Columns {
			if c.Priority == 0 {
				normal = append(normal, c.Name)
			} else {
				wide = append(wide, c.Name)
			}
		}
		got := strings.Join(normal, " ")
		if len(wide) > 0 {
			got += " | " + strings.Join(wide, " ")
		}
		if got != tests[k] {
			t.Errorf("%s columns = %q, want %q", k, got, tests[k])
		}
	}
}
