package openapi

import (
	"reflect"
	"strings"
	"testing"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/kube-openapi/pkg/util/proto"
	"k8s.io/kube-openapi/pkg/util/proto/validation"
	"sigs.k8s.io/yaml"

	"github.com/skiff-org/skiff/pkg/registry"
)

// v2Models parses the v2 document as client-go's tools do (kubectl's
// client-side validation, helm, and tools building a GVK parser).
func v2Models(t *testing.T) proto.Models {
	t.Helper()
	doc, err := openapiv2.ParseDocument(testDocuments(t).v2.json)
	if err != nil {
		t.Fatalf("ParseDocument: %v", err)
	}
	models, err := proto.NewOpenAPIData(doc)
	if err != nil {
		t.Fatalf("NewOpenAPIData: %v", err)
	}
	return models
}

// TestClientSideValidation validates manifests against the v2 schema as
// kubectl does when the server cannot validate fields itself.
func TestClientSideValidation(t *testing.T) {
	models := v2Models(t)
	tests := []struct {
		name     string
		def      string
		manifest string
		wantErr  string // "" for valid
	}{
		{"valid deployment", "io.k8s.api.apps.v1.Deployment", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{containerPort: 80, name: http}]
        resources: {limits: {cpu: 500m, memory: 128Mi}, requests: {cpu: 0.25}}
        env: [{name: A, value: b}]
`, ""},
		{"unknown field", "io.k8s.api.apps.v1.Deployment", `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicaz: 2, selector: {}, template: {}}
`, `unknown field "replicaz"`},
		{"wrong type", "io.k8s.api.core.v1.Pod", `
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: i, ports: [{containerPort: eighty}]}]}
`, `got "string", expected "integer"`},
		{"missing required field", "io.k8s.api.core.v1.Pod", `
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{image: i}]}
`, `missing required field "name"`},
		{"service target port by name", "io.k8s.api.core.v1.Service", `
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80, targetPort: http}]}
`, ""},
	}
	for _, tt := range tests {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(tt.manifest), &obj); err != nil {
			t.Fatal(err)
		}
		s := models.LookupModel(tt.def)
		if s == nil {
			t.Fatalf("no model %s", tt.def)
		}
		errs := validation.ValidateModel(obj, s, tt.def)
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		got := strings.Join(msgs, "; ")
		switch {
		case tt.wantErr == "" && got != "":
			t.Errorf("%s: ValidateModel = %q, want no errors", tt.name, got)
		case tt.wantErr != "" && !strings.Contains(got, tt.wantErr):
			t.Errorf("%s: ValidateModel = %q, want an error about %q", tt.name, got, tt.wantErr)
		}
	}
}

// TestGVKParser builds the structured-merge-diff parser tools such as
// Argo CD derive from /openapi/v2; it fails on a GVK claimed twice.
func TestGVKParser(t *testing.T) {
	p, err := managedfields.NewGVKParser(v2Models(t), false)
	if err != nil {
		t.Fatalf("NewGVKParser: %v", err)
	}
	for _, k := range []k8sschema.GroupVersionKind{
		{Group: "apps", Version: "v1", Kind: "Deployment"},
		{Version: "v1", Kind: "Pod"},
		{Version: "v1", Kind: "DeleteOptions"},
	} {
		if p.Type(k) == nil {
			t.Errorf("GvkParser.Type(%v) = nil, want a type", k)
		}
	}
}

// TestOptionalFieldsExist keeps the table of optional fields in step with
// k8s.io/api: each entry must name a field of a described type that is
// serialized without omitempty (otherwise the entry is stale).
func TestOptionalFieldsExist(t *testing.T) {
	types := map[string]reflect.Type{}
	var collect func(reflect.Type)
	collect = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map || rt.Kind() == reflect.Array {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct {
			return
		}
		name := definitionName(rt)
		if _, ok := types[name]; ok {
			return
		}
		types[name] = rt
		for i := 0; i < rt.NumField(); i++ {
			collect(rt.Field(i).Type)
		}
	}
	for _, r := range registry.All() {
		collect(reflect.TypeOf(r.New()))
	}
	for _, r := range testResources() {
		collect(reflect.TypeOf(r.New()))
	}
	for key := range optionalFields {
		i := strings.LastIndex(key, ".")
		def, field := key[:i], key[i+1:]
		rt, ok := types[def]
		if !ok {
			continue // a type of a resource not served yet
		}
		found := false
		for j := 0; j < rt.NumField(); j++ {
			name, opts, _ := strings.Cut(rt.Field(j).Tag.Get("json"), ",")
			if name == field {
				found = true
				if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
					t.Errorf("optionalFields[%q]: the field has omitempty now; drop the entry", key)
				}
			}
		}
		if !found {
			t.Errorf("optionalFields[%q]: %s has no field %q", key, def, field)
		}
	}
}
